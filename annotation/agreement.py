"""Rater agreement: the six Shrout & Fleiss (1979) ICC forms with McGraw & Wong (1996) F-based
confidence intervals, ordinal agreement on severity bins, and the dashboard numbers.

`ratings` arrays are (n targets x k raters), complete (no NaN). Forms: "1,1" one-way random,
"2,1" two-way random absolute agreement, "3,1" two-way mixed consistency, and their "k" forms for
the mean of the k raters.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations

import krippendorff
import numpy as np
from scipy.stats import f as f_dist
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import cohen_kappa_score

from annotation.store import RatingStore
from annotation.workflow import ConsensusRow, consensus_rows, progress
from melasma.masi import REGION_WEIGHTS, REGIONS, SEVERITIES, region_score, severity
from melasma.settings import Settings

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


def _region_score(scores: dict[str, dict[str, int]], region: str) -> float:
    return float(region_score(**scores[region]))


def rating_table(rows: Sequence[ConsensusRow], k: int) -> tuple[np.ndarray, list[str]]:
    """(n x k) MASI table of fully rated images and its column names.

    Columns are raters when every image was rated by the same k raters, else rating slots.
    """
    sets = {tuple(r.rater for r in row.ratings[:k]) for row in rows}
    names = list(next(iter(sets))) if len(sets) == 1 else [f"slot {i + 1}" for i in range(k)]
    table = np.array([[r.masi for r in row.ratings[:k]] for row in rows], dtype=np.float64)
    return table.reshape(len(rows), k), names


def _finite(value: float) -> float | None:
    return round(float(value), 4) if math.isfinite(value) else None


@dataclass(frozen=True)
class IccEstimate:
    """One ICC with its 95 % CI (None where it cannot be computed, e.g. perfect agreement's CI)."""

    icc: float | None
    ci_low: float | None
    ci_high: float | None

    def to_json(self) -> dict[str, float | None]:
        return {"icc": self.icc, "ci_low": self.ci_low, "ci_high": self.ci_high}


def _estimate(table: np.ndarray, form: str) -> IccEstimate:
    value = icc(table, form)
    low, high = icc_ci(table, form)
    return IccEstimate(*(_finite(x) for x in (value, low, high)))


@dataclass(frozen=True)
class QueuedPhoto:
    """A closed photo waiting for a coordinator, and why."""

    image_id: str
    masi: float
    spread: float
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class AgreementReport:
    """The dashboard's numbers; the ICCs and bin statistics only from 2 fully rated photos on."""

    images: int
    complete: int
    ratings_per_image: int
    progress: dict[str, dict[str, int]]
    adjudication_queue: tuple[QueuedPhoto, ...]
    columns: tuple[str, ...] = ()
    masi_icc: dict[str, IccEstimate] = field(default_factory=dict)  # "2,1" and "2,k"
    region_icc: dict[str, IccEstimate] = field(default_factory=dict)  # ICC(2,1) of A x (D + H)
    weighted_kappa: float | None = None
    krippendorff_alpha: float | None = None
    fleiss_kappa: float | None = None
    note: str = ""

    def to_json(self) -> dict[str, object]:
        """The `/agreement` API answer and the CLI's JSON."""
        report: dict[str, object] = {
            "images": self.images, "complete": self.complete, "ratings_per_image": self.ratings_per_image,
            "progress": self.progress,
            "adjudication_queue": [{"image_id": q.image_id, "masi": q.masi, "spread": q.spread,
                                    "reasons": list(q.reasons)} for q in self.adjudication_queue],
        }
        if self.note:
            return report | {"note": self.note}
        return report | {
            "columns": list(self.columns),
            "masi_icc": {form: e.to_json() for form, e in self.masi_icc.items()},
            "region_icc": {region: e.to_json() | {"weight": REGION_WEIGHTS[region]}
                           for region, e in self.region_icc.items()},
            "bins": {"weighted_kappa": self.weighted_kappa, "krippendorff_alpha": self.krippendorff_alpha,
                     "fleiss_kappa": self.fleiss_kappa},
        }


def agreement_report(store: RatingStore, settings: Settings) -> AgreementReport:
    """The dashboard numbers (only fully rated images are used)."""
    k = settings.ratings_per_image
    rows = consensus_rows(store, settings)
    basics = AgreementReport(
        images=len(store.rating_counts()), complete=len(rows), ratings_per_image=k,
        progress=progress(store, settings),
        adjudication_queue=tuple(QueuedPhoto(row.image.id, row.consensus.masi, row.consensus.spread, row.reasons)
                                 for row in rows if row.status == "disputed"),
    )
    if len(rows) < 2:
        return replace(basics, note="agreement needs at least 2 fully rated images")
    table, columns = rating_table(rows, k)
    region_icc = {
        region: _estimate(np.array([[_region_score(r.scores, region) for r in row.ratings[:k]] for row in rows]),
                          "2,1")
        for region in REGIONS
    }
    bins = np.vectorize(lambda v: SEVERITIES.index(severity(v)))(table)
    return replace(basics, columns=tuple(columns), masi_icc={form: _estimate(table, form) for form in ("2,1", "2,k")},
                   region_icc=region_icc, weighted_kappa=_finite(mean_weighted_kappa(bins)),
                   krippendorff_alpha=_finite(ordinal_alpha(bins)), fleiss_kappa=_finite(fleiss_kappa(bins)))


@dataclass(frozen=True)
class MachineAgreement:
    """How the image-derived MASI (a non-human "rater") agrees with the human consensus."""

    compared: int  # complete photos with a machine score
    without_score: int  # complete photos the machine could not score (no usable face)
    icc: float | None  # ICC(2,1) of machine vs consensus, absolute agreement
    ci_low: float | None
    ci_high: float | None
    pearson_r: float | None
    bias: float | None  # mean of machine - consensus
    mae: float | None

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def machine_table(rows: Sequence[ConsensusRow], machine: Mapping[str, float | None]) -> np.ndarray:
    """(n x 2) table of [consensus MASI, machine MASI] for complete photos that have a machine score."""
    pairs = [(row.label_masi, machine[row.image.id]) for row in rows if machine.get(row.image.id) is not None]
    return np.array(pairs, dtype=np.float64).reshape(len(pairs), 2)


def machine_agreement(rows: Sequence[ConsensusRow], machine: Mapping[str, float | None]) -> MachineAgreement:
    """ICC(2,1), Pearson r, bias and MAE of machine vs consensus MASI over the complete photos."""
    table = machine_table(rows, machine)
    compared = table.shape[0]
    if compared < 2:
        return MachineAgreement(compared, len(rows) - compared, None, None, None, None, None, None)
    value = icc(table, "2,1")
    low, high = icc_ci(table, "2,1")
    difference = table[:, 1] - table[:, 0]
    spread = table.std(axis=0)
    r = float(np.corrcoef(table.T)[0, 1]) if (spread > 0).all() else math.nan
    return MachineAgreement(compared, len(rows) - compared, _finite(value), _finite(low), _finite(high),
                            _finite(r), _finite(difference.mean()), _finite(np.abs(difference).mean()))
