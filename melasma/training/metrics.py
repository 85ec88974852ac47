"""The study's test metrics and more, with 95% bootstrap confidence intervals.

Point estimates come from scikit-learn. The bootstrap draws multinomial resampling weights and
computes every metric for all resamples of a chunk at once from weighted counts (sparse one-hot
products and one sort of the scores, no Python loop over resamples); with unit weights it reproduces
the scikit-learn values exactly. Time is O(N log N) and memory O(N) for N images (a chunk of
resamples holds at most `CHUNK_ELEMENTS` weights), so a million predictions are fine.

ECE has no interval: it is biased upwards (binning noise adds to |accuracy - confidence|), and a
percentile bootstrap of it misses the true value most of the time at the study's sizes (see
tests/test_metrics.py). A subgroup of fewer than `MIN_SUBGROUP_N` images gets no estimate ("too few").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import sparse
from sklearn import metrics as skm

from melasma.masi import SEVERITIES
from melasma.stats.agreement import icc, icc_ci

ECE_BINS = 15
#: Metrics reported without a bootstrap interval (the percentile bootstrap does not cover them).
NO_INTERVAL: frozenset[str] = frozenset({"ece"})
#: Fewest images of a subgroup for which accuracy and macro AUC are estimated.
MIN_SUBGROUP_N = 10
#: Most resampling weights (resamples x images) held at once by the bootstrap.
CHUNK_ELEMENTS = 1 << 22


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE: sum over equal-width confidence bins (lo, hi] of |accuracy - confidence| x bin share."""
    y_true, probs = np.asarray(y_true), np.asarray(probs, dtype=float)
    confidence = probs.max(1)
    bins = _bins(confidence, n_bins)
    conf_sum = np.bincount(bins, weights=confidence, minlength=n_bins)
    correct = np.bincount(bins, weights=(probs.argmax(1) == y_true).astype(float), minlength=n_bins)
    return float(np.abs(correct - conf_sum).sum() / len(y_true))


def _bins(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin i holds confidences in (i / n, (i + 1) / n], as Guo et al. 2017."""
    edges = np.linspace(0, 1, n_bins + 1)
    return np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


def _group_sums(weights: np.ndarray, index: np.ndarray, n_groups: int, values: np.ndarray | None = None) -> np.ndarray:
    """(B, n_groups): each row of `weights` (B, N) summed per group `index` (N,), times `values`
    (N,) when given; a sparse one-hot product, so memory stays O(B N)."""
    n = len(index)
    data = np.ones(n) if values is None else np.asarray(values, dtype=float)
    onehot = sparse.csr_matrix((data, (index, np.arange(n))), shape=(n_groups, n))
    return np.asarray(onehot @ weights.T).T


def _weighted_auc(weights: np.ndarray, scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """One-vs-rest ROC AUC (Mann-Whitney, ties count half) under each row of sample weights: one
    sort of the scores, weights summed per run of tied scores (O(N log N), memory O(B N))."""
    order = np.argsort(scores, kind="stable")
    ranked = scores[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])  # first position of each tie run
    w = weights[:, order]
    hit = positive[order]
    pos = np.add.reduceat(w * hit, starts, axis=1)  # (B, distinct scores)
    neg = np.add.reduceat(w * ~hit, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    total = pos.sum(1) * neg.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, (pos * (below + 0.5 * neg)).sum(1) / total, np.nan)


def _weighted(weights: np.ndarray, y: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Every metric under each row of `weights` (B, N); returns name -> (B,) array."""
    k = probs.shape[1]
    pred = probs.argmax(1)
    confusion = _group_sums(weights, y * k + pred, k * k).reshape(-1, k, k)  # (B, true, predicted)
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
    bins = _bins(confidence, n_bins)
    conf_sum = _group_sums(weights, bins, n_bins, confidence)
    correct = _group_sums(weights, bins, n_bins, (pred == y).astype(float))
    out["ece"] = np.abs(correct - conf_sum).sum(1) / n
    aucs = [_weighted_auc(weights, probs[:, c], y == c) for c in range(k)]
    for c, auc in enumerate(aucs):
        out[f"auc_{c}"] = auc
    with np.errstate(invalid="ignore"):
        stacked = np.stack(aucs, 1)
        defined = ~np.isnan(stacked)
        out["auc_macro"] = np.where(defined.any(1), np.nansum(stacked, 1) / np.maximum(defined.sum(1), 1), np.nan)
    return out


def _resampled(rng: np.random.Generator, n: int, n_resamples: int, metric: Any) -> list[Any]:
    """`metric(weights)` for chunks of multinomial resampling weights (at most `CHUNK_ELEMENTS`
    weights per chunk; the draws are those of one `rng.multinomial` call for all resamples)."""
    rows = max(1, CHUNK_ELEMENTS // max(n, 1))
    out = []
    for start in range(0, n_resamples, rows):
        size = min(rows, n_resamples - start)
        out.append(metric(rng.multinomial(n, np.full(n, 1 / n), size=size).astype(float)))
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
    """Percentile bootstrap CIs (resampling images with replacement, seeded) of every metric but
    those in `NO_INTERVAL`."""
    y_true, probs = np.asarray(y_true), np.asarray(probs, dtype=float)
    if n_resamples < 1:
        return {}
    chunks = _resampled(np.random.default_rng(seed), len(y_true), n_resamples,
                        lambda weights: _weighted(weights, y_true, probs))
    tail = (1 - level) / 2 * 100
    out: dict[str, tuple[float, float]] = {}
    for key in chunks[0]:
        name = f"auc_{classes[int(key[4:])]}" if key[4:].isdigit() else key
        if name in NO_INTERVAL:
            continue
        values = np.concatenate([chunk[key] for chunk in chunks])
        finite = values[np.isfinite(values)]
        low, high = np.percentile(finite, [tail, 100 - tail]) if len(finite) else (float("nan"), float("nan"))
        out[name] = (float(low), float(high))
    return out


@dataclass(frozen=True)
class Evaluation:
    """One model's test metrics: point estimates (`metrics`, name -> value), their 95% bootstrap
    CIs (`ci95`), the confusion matrix (rows true, columns predicted), class support and notes
    about undefined values; `cutoffs` for a regression head's derived bins (None for a classifier)."""

    n: int
    classes: tuple[str, ...]
    support: dict[str, int]
    metrics: dict[str, float]
    ci95: dict[str, tuple[float, float]]
    bootstrap_resamples: int
    confusion_matrix: list[list[int]]
    notes: tuple[str, ...]
    cutoffs: tuple[float, float] | None = None

    def with_note(self, note: str) -> Evaluation:
        """The same evaluation with one more note."""
        return replace(self, notes=(*self.notes, note))

    def to_json(self) -> dict[str, Any]:
        """The keys metrics.json and `evaluate --out` have always held (`cutoffs` only for a regression head)."""
        out: dict[str, Any] = {
            "n": self.n, "classes": list(self.classes), "support": dict(self.support), "metrics": dict(self.metrics),
            "ci95": dict(self.ci95), "bootstrap_resamples": self.bootstrap_resamples,
            "confusion_matrix": self.confusion_matrix, "notes": list(self.notes),
        }
        if self.cutoffs is not None:
            out["cutoffs"] = list(self.cutoffs)
        return out


def evaluate_predictions(labels: ArrayLike, scores: ArrayLike, classes: Sequence[str] = SEVERITIES,
                         n_resamples: int = 1000, seed: int = 0) -> Evaluation:
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
    return Evaluation(
        n=len(y_true), classes=tuple(classes),
        support={name: int((y_true == c).sum()) for c, name in enumerate(classes)},
        metrics=values, ci95=bootstrap_ci(y_true, probs, classes, n_resamples, seed),
        bootstrap_resamples=int(n_resamples), confusion_matrix=confusion.tolist(), notes=tuple(notes),
    )


@dataclass(frozen=True)
class SubgroupResult:
    """Accuracy and macro AUC with 95% bootstrap CIs for the images of one group (e.g. a skin type);
    NaN throughout (`too_few`) below `MIN_SUBGROUP_N` images."""

    group: str
    n: int
    accuracy: float
    accuracy_ci95: tuple[float, float]
    auc_macro: float
    auc_macro_ci95: tuple[float, float]
    too_few: bool = False


def subgroup_metrics(labels: ArrayLike, scores: ArrayLike, groups: Sequence[str | None],
                     classes: Sequence[str] = SEVERITIES, n_resamples: int = 1000,
                     seed: int = 0) -> list[SubgroupResult]:
    """Per-group accuracy and macro AUC (classes with a defined AUC) with CIs; images without a
    group are left out; a group of fewer than `MIN_SUBGROUP_N` images is listed with its n only
    (`too_few`); an empty list when no image has a group."""
    y_true, probs = np.asarray(labels, dtype=int), np.asarray(scores, dtype=float)
    names = np.array(["" if g is None or (isinstance(g, float) and math.isnan(g)) else str(g) for g in groups],
                     dtype=object)
    results = []
    nan = (float("nan"), float("nan"))
    for group in sorted(set(names) - {""}):
        rows = names == group
        if rows.sum() < MIN_SUBGROUP_N:
            results.append(SubgroupResult(group, int(rows.sum()), nan[0], nan, nan[0], nan, too_few=True))
            continue
        values, _ = point_metrics(y_true[rows], probs[rows], classes)
        ci = bootstrap_ci(y_true[rows], probs[rows], classes, n_resamples, seed)
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
                        classes: Sequence[str] = SEVERITIES, n_resamples: int = 1000, seed: int = 0) -> Evaluation:
    """A MASI regressor's metrics as `evaluate_predictions`: `mae` with a bootstrap CI, `icc`
    (ICC(2,1) of predicted vs consensus MASI, F-based CI from `melasma.stats.agreement`), and the
    `BIN_METRICS` of the bins derived from the predicted MASI with `cutoffs` (true bins from the
    consensus MASI with the same cut-offs)."""
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
        draws = _resampled(np.random.default_rng(seed), len(true), n_resamples,
                           lambda weights: weights @ errors / len(true))
        low, high = np.percentile(np.concatenate(draws), [2.5, 97.5])
        ci["mae"] = (float(low), float(high))
    if math.isfinite(metrics["icc"]):
        ci["icc"] = icc_ci(pair, "2,1")
    else:
        notes.append("ICC is undefined: no variance in the predicted and consensus MASI")
    return Evaluation(
        n=len(true), classes=tuple(classes),
        support={name: int((y_true == c).sum()) for c, name in enumerate(classes)},
        metrics=metrics, ci95=ci, bootstrap_resamples=int(n_resamples),
        confusion_matrix=skm.confusion_matrix(y_true, y_pred, labels=list(range(len(classes)))).tolist(),
        notes=tuple(notes), cutoffs=(cutoffs[0], cutoffs[1]),
    )
