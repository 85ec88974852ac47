"""Rater agreement on the store: the dashboard numbers (ICC of MASI and of each region with CIs,
ordinal agreement on severity bins, the adjudication queue) and the machine rater's agreement with the
consensus. The statistics themselves are `melasma.stats.agreement`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from annotation.store import RatingStore
from annotation.workflow import ConsensusRow, consensus_rows, progress
from melasma.masi import REGION_WEIGHTS, REGIONS, SEVERITIES, region_score, severity
from melasma.settings import Settings
from melasma.stats.agreement import fleiss_kappa, icc, icc_ci, mean_weighted_kappa, ordinal_alpha


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
