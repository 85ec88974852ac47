"""The study's test metrics and more, with 95% bootstrap confidence intervals.

Point estimates come from scikit-learn. The bootstrap draws multinomial resampling weights and
computes every metric for all resamples at once from weighted counts (matrix products, no Python
loop over resamples); with unit weights it reproduces the scikit-learn values exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn import metrics as skm

from melasma.masi import SEVERITIES

ECE_BINS = 15


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE: sum over equal-width confidence bins (lo, hi] of |accuracy - confidence| x bin share."""
    return float(_weighted(np.ones((1, len(y_true))), np.asarray(y_true), np.asarray(probs), n_bins)["ece"][0])


def _bins(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin i holds confidences in (i / n, (i + 1) / n], as Guo et al. 2017."""
    edges = np.linspace(0, 1, n_bins + 1)
    return np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


def _weighted_auc(weights: np.ndarray, scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """One-vs-rest ROC AUC (Mann-Whitney, ties count half) under each row of sample weights."""
    values, group = np.unique(scores, return_inverse=True)
    onehot = np.zeros((len(scores), len(values)))
    onehot[np.arange(len(scores)), group] = 1
    pos = (weights * positive) @ onehot  # (B, groups) positive weight at each distinct score
    neg = (weights * ~positive) @ onehot
    below = np.cumsum(neg, axis=1) - neg
    total = pos.sum(1) * neg.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, (pos * (below + 0.5 * neg)).sum(1) / total, np.nan)


def _weighted(weights: np.ndarray, y: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Every metric under each row of `weights` (B, N); returns name -> (B,) array."""
    k = probs.shape[1]
    pred = probs.argmax(1)
    pairs = np.zeros((len(y), k * k))
    pairs[np.arange(len(y)), y * k + pred] = 1
    confusion = (weights @ pairs).reshape(-1, k, k)  # (B, true, predicted)
    n = confusion.sum((1, 2))
    tp = np.diagonal(confusion, axis1=1, axis2=2)
    support, predicted = confusion.sum(2), confusion.sum(1)
    precision, recall = _safe_divide(tp, predicted), _safe_divide(tp, support)
    f1 = _safe_divide(2 * tp, predicted + support)
    share = support / n[:, None]
    out = {
        "accuracy": tp.sum(1) / n,
        "precision_weighted": (precision * share).sum(1), "recall_weighted": (recall * share).sum(1),
        "f1_weighted": (f1 * share).sum(1),
        "precision_macro": precision.mean(1), "recall_macro": recall.mean(1), "f1_macro": f1.mean(1),
    }
    grid = np.arange(k)
    disagreement = (grid[:, None] - grid[None, :]) ** 2
    expected = support[:, :, None] * predicted[:, None, :] / n[:, None, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["kappa_quadratic"] = 1 - (confusion * disagreement).sum((1, 2)) / (expected * disagreement).sum((1, 2))
    confidence = probs.max(1)
    bins = np.zeros((len(y), n_bins))
    bins[np.arange(len(y)), _bins(confidence, n_bins)] = 1
    conf_sum = weights @ (bins * confidence[:, None])
    correct = weights @ (bins * (pred == y)[:, None])
    out["ece"] = np.abs(correct - conf_sum).sum(1) / n
    aucs = [_weighted_auc(weights, probs[:, c], y == c) for c in range(k)]
    for c, auc in enumerate(aucs):
        out[f"auc_{c}"] = auc
    with np.errstate(invalid="ignore"):
        stacked = np.stack(aucs, 1)
        defined = ~np.isnan(stacked)
        out["auc_macro"] = np.where(defined.any(1), np.nansum(stacked, 1) / np.maximum(defined.sum(1), 1), np.nan)
    return out


def point_metrics(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> tuple[dict[str, float], list[str]]:
    """Scikit-learn point estimates (name -> value) and notes about undefined values."""
    y_true, probs = np.asarray(y_true), np.asarray(probs)
    labels = list(range(len(classes)))
    pred = probs.argmax(1)
    values: dict[str, float] = {"accuracy": skm.accuracy_score(y_true, pred)}
    for average in ("weighted", "macro"):
        p, r, f, _ = skm.precision_recall_fscore_support(y_true, pred, labels=labels, average=average,
                                                         zero_division=0)
        values.update({f"precision_{average}": p, f"recall_{average}": r, f"f1_{average}": f})
    notes: list[str] = []
    aucs = []
    for c, name in enumerate(classes):
        positive = y_true == c
        if positive.all() or not positive.any():
            values[f"auc_{name}"] = float("nan")
            notes.append(f"AUC for {name} is undefined: the evaluated images are "
                         f"{'all' if positive.all() else 'never'} {name}")
        else:
            values[f"auc_{name}"] = skm.roc_auc_score(positive, probs[:, c])
            aucs.append(values[f"auc_{name}"])
    values["auc_macro"] = float(np.mean(aucs)) if aucs else float("nan")
    if len(aucs) < len(classes) and aucs:
        notes.append(f"macro AUC averages the {len(aucs)} classes with a defined AUC")
    if len(set(y_true.tolist()) | set(pred.tolist())) > 1:
        values["kappa_quadratic"] = skm.cohen_kappa_score(y_true, pred, labels=labels, weights="quadratic")
    else:
        values["kappa_quadratic"] = float("nan")
        notes.append("quadratic kappa is undefined: one class only in labels and predictions")
    values["ece"] = expected_calibration_error(y_true, probs)
    return {key: float(value) for key, value in values.items()}, notes


def bootstrap_ci(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str], n_resamples: int = 1000,
                 seed: int = 0, level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap CIs of every metric (resampling images with replacement), seeded."""
    y_true, probs = np.asarray(y_true), np.asarray(probs, dtype=float)
    if n_resamples < 1:
        return {}
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(len(y_true), np.full(len(y_true), 1 / len(y_true)), size=n_resamples)
    draws = _weighted(weights.astype(float), y_true, probs)
    tail = (1 - level) / 2 * 100
    out: dict[str, tuple[float, float]] = {}
    for key, values in draws.items():
        name = f"auc_{classes[int(key[4:])]}" if key[4:].isdigit() else key
        finite = values[np.isfinite(values)]
        low, high = np.percentile(finite, [tail, 100 - tail]) if len(finite) else (float("nan"), float("nan"))
        out[name] = (float(low), float(high))
    return out


def evaluate_predictions(labels: ArrayLike, scores: ArrayLike, classes: Sequence[str] = SEVERITIES,
                         n_resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Metrics, 95% CIs, confusion matrix, support and notes for one model's predictions (true class
    indices, probabilities (n, classes))."""
    y_true = np.asarray(labels, dtype=int)
    probs = np.asarray(scores, dtype=float)
    if probs.ndim != 2 or probs.shape != (len(y_true), len(classes)) or len(y_true) == 0:
        raise ValueError(f"need probabilities shaped (n, {len(classes)}) for n > 0 labels, got {probs.shape}")
    if y_true.min() < 0 or y_true.max() >= len(classes):
        raise ValueError(f"labels must lie in 0..{len(classes) - 1}")
    values, notes = point_metrics(y_true, probs, classes)
    confusion = skm.confusion_matrix(y_true, probs.argmax(1), labels=list(range(len(classes))))
    return {
        "n": len(y_true),
        "classes": list(classes),
        "support": {name: int((y_true == c).sum()) for c, name in enumerate(classes)},
        "metrics": values,
        "ci95": bootstrap_ci(y_true, probs, classes, n_resamples, seed),
        "bootstrap_resamples": int(n_resamples),
        "confusion_matrix": confusion.tolist(),
        "notes": notes,
    }


@dataclass(frozen=True)
class SubgroupResult:
    """Accuracy and macro AUC with 95% bootstrap CIs for the images of one group (e.g. a skin type)."""

    group: str
    n: int
    accuracy: float
    accuracy_ci95: tuple[float, float]
    auc_macro: float
    auc_macro_ci95: tuple[float, float]


def subgroup_metrics(labels: ArrayLike, scores: ArrayLike, groups: Sequence[str | None],
                     classes: Sequence[str] = SEVERITIES, n_resamples: int = 1000,
                     seed: int = 0) -> list[SubgroupResult]:
    """Per-group accuracy and macro AUC (classes with a defined AUC) with CIs; images without a
    group are left out; an empty list when no image has one."""
    y_true, probs = np.asarray(labels, dtype=int), np.asarray(scores, dtype=float)
    names = np.array(["" if g is None or (isinstance(g, float) and math.isnan(g)) else str(g) for g in groups],
                     dtype=object)
    results = []
    for group in sorted(set(names) - {""}):
        rows = names == group
        values, _ = point_metrics(y_true[rows], probs[rows], classes)
        ci = bootstrap_ci(y_true[rows], probs[rows], classes, n_resamples, seed)
        nan = (float("nan"), float("nan"))
        results.append(SubgroupResult(group, int(rows.sum()), values["accuracy"], ci.get("accuracy", nan),
                                      values["auc_macro"], ci.get("auc_macro", nan)))
    return results


#: Metrics of a regression head's derived bins (AUC and ECE need probabilities and are left out).
BIN_METRICS: tuple[str, ...] = ("accuracy", "precision_weighted", "recall_weighted", "f1_weighted",
                                "precision_macro", "recall_macro", "f1_macro", "kappa_quadratic")


def masi_bins(masi: np.ndarray, cutoffs: tuple[float, float]) -> np.ndarray:
    """Severity indices of MASI values as `melasma.masi.severity`: mild below the first cut-off,
    severe from the second."""
    return np.searchsorted(np.asarray(cutoffs, dtype=float), np.asarray(masi, dtype=float), side="right")


def evaluate_regression(true_masi: ArrayLike, predicted_masi: ArrayLike, cutoffs: tuple[float, float],
                        classes: Sequence[str] = SEVERITIES, n_resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """A MASI regressor's metrics as `evaluate_predictions`: `mae` with a bootstrap CI, `icc`
    (ICC(2,1) of predicted vs consensus MASI, F-based CI from `annotation.agreement`), and the
    `BIN_METRICS` of the bins derived from the predicted MASI with `cutoffs` (true bins from the
    consensus MASI with the same cut-offs)."""
    from annotation.agreement import icc, icc_ci

    true, predicted = np.asarray(true_masi, dtype=float), np.asarray(predicted_masi, dtype=float)
    if true.shape != predicted.shape or true.ndim != 1 or len(true) < 2 or not np.isfinite(true).all():
        raise ValueError(f"need two equal-length series of at least 2 finite MASI values, got {true.shape} "
                         f"and {predicted.shape}")
    y_true, y_pred = masi_bins(true, cutoffs), masi_bins(predicted, cutoffs)
    onehot = np.eye(len(classes))[y_pred]
    values, _ = point_metrics(y_true, onehot, classes)
    metrics = {name: values[name] for name in BIN_METRICS}
    ci = {name: bounds for name, bounds in bootstrap_ci(y_true, onehot, classes, n_resamples, seed).items()
          if name in BIN_METRICS}
    errors = np.abs(predicted - true)
    metrics["mae"] = float(skm.mean_absolute_error(true, predicted))
    pair = np.column_stack([predicted, true])
    metrics["icc"] = icc(pair, "2,1")
    notes = []
    if n_resamples >= 1:
        weights = np.random.default_rng(seed).multinomial(len(true), np.full(len(true), 1 / len(true)),
                                                          size=n_resamples)
        low, high = np.percentile(weights @ errors / len(true), [2.5, 97.5])
        ci["mae"] = (float(low), float(high))
    if math.isfinite(metrics["icc"]):
        ci["icc"] = icc_ci(pair, "2,1")
    else:
        notes.append("ICC is undefined: no variance in the predicted and consensus MASI")
    return {
        "n": len(true), "classes": list(classes),
        "support": {name: int((y_true == c).sum()) for c, name in enumerate(classes)},
        "metrics": metrics, "ci95": ci, "bootstrap_resamples": int(n_resamples),
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=list(range(len(classes)))).tolist(),
        "notes": notes, "cutoffs": list(cutoffs),
    }
