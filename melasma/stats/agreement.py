"""Agreement statistics: the six Shrout & Fleiss (1979) ICC forms with McGraw & Wong (1996) F-based
confidence intervals, and ordinal / nominal agreement on severity bins (pure numpy, scipy, sklearn).

`ratings` arrays are (n targets x k raters), complete (no NaN). Forms: "1,1" one-way random,
"2,1" two-way random absolute agreement, "3,1" two-way mixed consistency, and their "k" forms for
the mean of the k raters. Used by the rater dashboard (`annotation.agreement`) and by the study
metrics of a MASI regressor (`melasma.training.metrics`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import krippendorff
import numpy as np
from scipy.stats import f as f_dist
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import cohen_kappa_score

from melasma.masi import SEVERITIES

FORMS: tuple[str, ...] = ("1,1", "2,1", "3,1", "1,k", "2,k", "3,k")


@dataclass(frozen=True)
class MeanSquares:
    """Two-way ANOVA of an (n x k) ratings table."""

    n: int
    k: int
    msr: float  # between targets (rows)
    msc: float  # between raters (columns)
    mse: float  # residual
    msw: float  # within targets (one-way)


def mean_squares(ratings: np.ndarray | Sequence[Sequence[float]]) -> MeanSquares:
    """The ANOVA mean squares of a complete (n targets x k raters) table, n >= 2 and k >= 2."""
    table = np.asarray(ratings, dtype=np.float64)
    if table.ndim != 2 or table.shape[0] < 2 or table.shape[1] < 2:
        raise ValueError(
            f"ratings must be an (n targets x k raters) table with n, k >= 2, got shape {table.shape}"
        )
    if not np.isfinite(table).all():
        raise ValueError("ratings must be complete: every target rated by every rater, no NaN")
    n, k = table.shape
    grand = table.mean()
    ss_total = float(((table - grand) ** 2).sum())
    ss_rows = float(k * ((table.mean(axis=1) - grand) ** 2).sum())
    ss_cols = float(n * ((table.mean(axis=0) - grand) ** 2).sum())
    ss_error = ss_total - ss_rows - ss_cols
    return MeanSquares(
        n=n, k=k, msr=ss_rows / (n - 1), msc=ss_cols / (k - 1),
        mse=ss_error / ((n - 1) * (k - 1)), msw=(ss_total - ss_rows) / (n * (k - 1)),
    )


def _check_form(form: str) -> str:
    if form not in FORMS:
        raise ValueError(f"ICC form must be one of {', '.join(FORMS)}, got {form!r}")
    return form


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator != 0 else math.nan


def _icc(ms: MeanSquares, form: str) -> float:
    n, k, msr, msc, mse, msw = ms.n, ms.k, ms.msr, ms.msc, ms.mse, ms.msw
    return {
        "1,1": lambda: _ratio(msr - msw, msr + (k - 1) * msw),
        "2,1": lambda: _ratio(msr - mse, msr + (k - 1) * mse + k * (msc - mse) / n),
        "3,1": lambda: _ratio(msr - mse, msr + (k - 1) * mse),
        "1,k": lambda: _ratio(msr - msw, msr),
        "2,k": lambda: _ratio(msr - mse, msr + (msc - mse) / n),
        "3,k": lambda: _ratio(msr - mse, msr),
    }[form]()


def icc(ratings: np.ndarray | Sequence[Sequence[float]], form: str = "2,1") -> float:
    """The intraclass correlation of one Shrout & Fleiss form (NaN when the table has no variance)."""
    return _icc(mean_squares(ratings), _check_form(form))


def icc_ci(
    ratings: np.ndarray | Sequence[Sequence[float]], form: str = "2,1", alpha: float = 0.05
) -> tuple[float, float]:
    """The (1 - alpha) confidence interval of an ICC (Shrout & Fleiss 1979; McGraw & Wong 1996)."""
    _check_form(form)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    ms = mean_squares(ratings)
    n, k = ms.n, ms.k
    q = 1 - alpha / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        if form[0] in "13":
            within = ms.msw if form[0] == "1" else ms.mse
            df2 = n * (k - 1) if form[0] == "1" else (n - 1) * (k - 1)
            f_obs = _ratio(ms.msr, within)
            f_low = f_obs / f_dist.ppf(q, n - 1, df2)
            f_high = f_obs * f_dist.ppf(q, df2, n - 1)
            if form.endswith(",1"):
                low, high = (f_low - 1) / (f_low + k - 1), (f_high - 1) / (f_high + k - 1)
            else:
                low, high = 1 - 1 / f_low, 1 - 1 / f_high
            return float(low), float(high)
        # Two-way random, absolute agreement: Satterthwaite degrees of freedom (McGraw & Wong).
        rho = _icc(ms, "2,1")
        f_cols = _ratio(ms.msc, ms.mse)
        a = k * rho * f_cols + n * (1 + (k - 1) * rho) - k * rho
        v = ((k - 1) * (n - 1) * a**2) / (
            (n - 1) * k**2 * rho**2 * f_cols**2 + (n * (1 + (k - 1) * rho) - k * rho) ** 2
        )
        f_low = f_dist.ppf(q, n - 1, v)
        f_high = f_dist.ppf(q, v, n - 1)
        shared = k * ms.msc + (k * n - k - n) * ms.mse
        low = n * (ms.msr - f_low * ms.mse) / (f_low * shared + n * ms.msr)
        high = n * (f_high * ms.msr - ms.mse) / (shared + n * f_high * ms.msr)
        if form == "2,k":
            low, high = low * k / (1 + low * (k - 1)), high * k / (1 + high * (k - 1))
    return float(low), float(high)


def mean_weighted_kappa(bins: np.ndarray | Sequence[Sequence[int]]) -> float:
    """Mean pairwise quadratic-weighted Cohen's kappa over the columns (raters) of a bin table."""
    table = np.asarray(bins)
    if table.ndim != 2 or table.shape[1] < 2:
        raise ValueError("bins must be an (n targets x k raters) table with k >= 2")
    labels = list(range(len(SEVERITIES)))
    with warnings.catch_warnings():  # kappa is undefined (NaN) when a pair used one bin only
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        values = [
            cohen_kappa_score(table[:, a], table[:, b], labels=labels, weights="quadratic")
            for a, b in combinations(range(table.shape[1]), 2)
        ]
    return float(np.nanmean(values)) if not np.isnan(values).all() else math.nan


def ordinal_alpha(bins: np.ndarray | Sequence[Sequence[float]]) -> float:
    """Krippendorff's alpha (ordinal) of an (n targets x k raters) bin table; NaN = missing."""
    table = np.asarray(bins, dtype=np.float64)
    if len(np.unique(table[np.isfinite(table)])) < 2:
        return math.nan
    return float(krippendorff.alpha(reliability_data=table.T, level_of_measurement="ordinal"))


def fleiss_kappa(bins: np.ndarray | Sequence[Sequence[int]], n_categories: int = len(SEVERITIES)) -> float:
    """Fleiss' kappa (1971) of an (n targets x k raters) table of category indices 0..n_categories-1,
    every target rated by all k raters: nominal agreement beyond chance (ordering ignored); NaN when
    chance agreement is 1 (one category used throughout)."""
    table = np.asarray(bins, dtype=np.float64)
    if table.ndim != 2 or table.shape[1] < 2 or len(table) < 1:
        raise ValueError("bins must be an (n targets x k raters) table with n >= 1, k >= 2")
    if not np.isfinite(table).all():
        raise ValueError("Fleiss' kappa needs a complete table (every target rated by every rater)")
    raters = table.shape[1]
    counts = (table[:, :, None] == np.arange(n_categories)).sum(1)  # (n, categories) raters per category
    if counts.sum(1).min() != raters:
        raise ValueError(f"bins must be category indices 0..{n_categories - 1}")
    observed = ((counts * (counts - 1)).sum(1) / (raters * (raters - 1))).mean()
    chance = ((counts.sum(0) / counts.sum()) ** 2).sum()
    return float((observed - chance) / (1 - chance)) if chance < 1 else math.nan
