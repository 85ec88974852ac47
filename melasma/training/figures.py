"""Figures of one trained model (matplotlib, no GUI): learning curves, ROC curves, confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from sklearn.metrics import roc_curve


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def learning_curves(history: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Loss and accuracy per epoch, train vs validation (the study's Figure 2)."""
    fig = Figure(figsize=(9, 3.6))
    for ax, metric in zip(fig.subplots(1, 2), ("loss", "acc")):
        for split, style in (("train", "-o"), ("val", "-s")):
            ax.plot(history["epoch"], history[f"{split}_{metric}"], style, ms=3,
                    label="training" if split == "train" else "validation")
        ax.set(xlabel="epoch", ylabel="loss" if metric == "loss" else "accuracy", title=f"{title} {metric}".strip())
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, Path(path))


def roc_curves(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str], path: str | Path,
               title: str = "") -> Path:
    """One-vs-rest ROC curve per class with its AUC (the study's Figure 3)."""
    fig = Figure(figsize=(4.6, 4.2))
    ax = fig.subplots()
    for c, name in enumerate(classes):
        positive = np.asarray(y_true) == c
        if positive.all() or not positive.any():
            continue  # undefined for a class absent from (or alone in) the evaluated images
        fpr, tpr, _ = roc_curve(positive, np.asarray(probs)[:, c])
        ax.plot(fpr, tpr, label=f"{name} (AUC {np.trapezoid(tpr, fpr):.2f})")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"{title} ROC".strip())
    ax.legend(loc="lower right")
    return _save(fig, Path(path))


def confusion_matrix(counts: ArrayLike, classes: Sequence[str], path: str | Path,
                     title: str = "") -> Path:
    """Counts of true (rows) vs predicted (columns) classes."""
    matrix = np.asarray(counts)
    fig = Figure(figsize=(4.2, 3.8))
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center",
                color="white" if count > matrix.max() / 2 else "black")
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xticklabels=classes,
           yticklabels=classes, xlabel="predicted", ylabel="true", title=f"{title} confusion".strip())
    return _save(fig, Path(path))
