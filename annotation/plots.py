"""Rater-vs-rater MASI scatter plots (matplotlib `Figure` objects, no pyplot global state)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
from matplotlib.figure import Figure

from melasma.masi import DEFAULT_CUTOFFS, SCALE_MAX


def rater_scatter(table: np.ndarray, names: Sequence[str], scale: str = "masi") -> Figure:
    """One panel per rater pair: each point an image, the diagonal perfect agreement, dotted
    lines the severity cut-offs. `table` is (n images x k raters)."""
    table = np.asarray(table, dtype=np.float64)
    if table.ndim != 2 or table.shape[1] != len(names) or table.shape[1] < 2:
        raise ValueError("table must be (n images x k raters) with one name per rater, k >= 2")
    pairs = list(combinations(range(table.shape[1]), 2))
    top = SCALE_MAX[scale]
    figure = Figure(figsize=(3.6 * len(pairs), 3.6), layout="constrained")
    for axis, (a, b) in zip(figure.subplots(1, len(pairs), squeeze=False)[0], pairs):
        axis.plot([0, top], [0, top], color="0.6", linewidth=1)
        for cut in DEFAULT_CUTOFFS[scale]:
            axis.axvline(cut, color="0.8", linestyle=":", linewidth=1)
            axis.axhline(cut, color="0.8", linestyle=":", linewidth=1)
        axis.scatter(table[:, a], table[:, b], s=18, alpha=0.7, color="tab:blue")
        axis.set(xlim=(0, top), ylim=(0, top), xlabel=f"{names[a]} {scale.upper()}",
                 ylabel=f"{names[b]} {scale.upper()}", aspect="equal")
    figure.suptitle(f"Rater vs rater {scale.upper()} ({table.shape[0]} fully rated images)")
    return figure


def machine_scatter(table: np.ndarray) -> Figure:
    """Machine (image-derived) MASI against the human consensus: `table` is (n x 2) [consensus, machine]."""
    table = np.asarray(table, dtype=np.float64).reshape(-1, 2)
    top = SCALE_MAX["masi"]
    figure = Figure(figsize=(3.8, 3.8), layout="constrained")
    axis = figure.subplots()
    axis.plot([0, top], [0, top], color="0.6", linewidth=1)
    for cut in DEFAULT_CUTOFFS["masi"]:
        axis.axvline(cut, color="0.8", linestyle=":", linewidth=1)
        axis.axhline(cut, color="0.8", linestyle=":", linewidth=1)
    axis.scatter(table[:, 0], table[:, 1], s=18, alpha=0.7, color="tab:orange")
    axis.set(xlim=(0, top), ylim=(0, top), xlabel="consensus MASI (raters)", ylabel="image-derived MASI",
             aspect="equal", title=f"Machine vs consensus ({table.shape[0]} photos)")
    return figure
