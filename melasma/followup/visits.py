"""A patient's visits, built from the rater store: consensus MASI / mMASI, the raters' range,
per-region scores and the rating status of every visit, ordered by date.

A visit is one patient on one date. Photos of the same patient and date (several views) are one
visit: its MASI is the mean over its photos. A visit is `complete` when every photo has all its
ratings and none is disputed or waiting for a re-rating, `needs adjudication` when a photo is
disputed or waits for a re-rating (its consensus is shown, but outcomes leave it out), `open` while a
photo still lacks ratings (no numbers: nothing of a photo someone may still rate is revealed).
Photos without a patient id or visit date are not part of any course.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from statistics import fmean
from typing import Literal

from annotation.store import RatingStore
from annotation.visit_notes import VisitNote, VisitNotes
from annotation.workflow import ConsensusRow, consensus_rows
from melasma.errors import UserError
from melasma.masi import REGION_WEIGHTS, REGIONS, region_score, severity
from melasma.settings import Settings

Status = Literal["open", "complete", "needs adjudication"]
STATUSES: tuple[Status, ...] = ("complete", "needs adjudication", "open")


class FollowupError(UserError):
    """A follow-up request that cannot be answered (unknown patient, too few scored visits...)."""


@dataclass(frozen=True)
class ModelScore:
    """What a checkpoint says about a visit's photos (mean over them): severity and, for a
    regression head, the MASI."""

    severity: str
    masi: float | None = None


@dataclass(frozen=True)
class Visit:
    """One patient on one date: consensus numbers (None while open) and what the photos show."""

    patient_id: str
    visit_date: date
    image_ids: tuple[str, ...]
    status: Status
    masi: float | None = None  # the label MASI (adjudicated, else the raters' mean), mean over photos
    mmasi: float | None = None
    masi_low: float | None = None  # lowest single rater's MASI over the visit's photos
    masi_high: float | None = None
    #: region -> weight x mean A x (D + H): the region's share of the MASI (the four sum to `masi`
    #: unless a coordinator adjudicated or all raters marked a region not visible)
    regions: dict[str, float] = field(default_factory=dict)
    treatment: str | None = None
    notes: str | None = None
    model: ModelScore | None = None
    image_masi: float | None = None  # the face-region analysis's MASI, mean over the photos it measured

    @property
    def scored(self) -> bool:
        """Whether the visit counts for outcomes: every photo closed and none disputed."""
        return self.status == "complete" and self.masi is not None


@dataclass(frozen=True)
class Patient:
    """A patient's visits in date order, and when treatment started (first visit naming one)."""

    patient_id: str
    visits: tuple[Visit, ...]

    @property
    def scored_visits(self) -> tuple[Visit, ...]:
        return tuple(v for v in self.visits if v.scored)

    @property
    def treatment_start(self) -> date | None:
        return next((v.visit_date for v in self.visits if v.treatment), None)

    @property
    def treatment(self) -> str | None:
        return next((v.treatment for v in self.visits if v.treatment), None)


def _region_share(row: ConsensusRow, region: str) -> float:
    values = [region_score(**r.scores[region]) for r in row.ratings]
    return REGION_WEIGHTS[region] * fmean(values)


def _status(rows: list[ConsensusRow | None]) -> Status:
    if any(row is None for row in rows):
        return "open"
    if any(row.status in ("disputed", "re-rating") for row in rows if row is not None):
        return "needs adjudication"
    return "complete"


def _join(values: list[str | None]) -> str | None:
    unique = list(dict.fromkeys(v for v in values if v))
    return "; ".join(unique) if unique else None


def _mean_model(scores: list[ModelScore]) -> ModelScore | None:
    """The visit's model score: the mean MASI (and its bin) when the checkpoint gives one, else the
    most frequent severity over the visit's photos (ties: the first photo's)."""
    if not scores:
        return None
    masis = [s.masi for s in scores if s.masi is not None]
    if masis:
        value = round(fmean(masis), 10)
        return ModelScore(severity(value), value)
    names = [s.severity for s in scores]
    return ModelScore(max(names, key=names.count))


def _visit(
    patient_id: str, day: date, image_ids: list[str], rows: Mapping[str, ConsensusRow],
    notes: Mapping[str, VisitNote], model: Mapping[str, ModelScore], measured: Mapping[str, float],
) -> Visit:
    found = [rows.get(i) for i in image_ids]
    status = _status(found)
    treatment = _join([notes[i].treatment if i in notes else None for i in image_ids])
    text = _join([notes[i].notes if i in notes else None for i in image_ids])
    model_score = _mean_model([model[i] for i in image_ids if i in model])
    derived = [measured[i] for i in image_ids if i in measured]
    visit = Visit(patient_id, day, tuple(image_ids), status, treatment=treatment, notes=text, model=model_score,
                  image_masi=round(fmean(derived), 10) if derived else None)
    if status == "open":
        return visit
    closed = [row for row in found if row is not None]
    per_rater = [m for row in closed for m in row.consensus.per_rater]
    return replace(
        visit,
        masi=round(fmean(row.label_masi for row in closed), 10),
        mmasi=round(fmean(row.consensus.mmasi for row in closed), 10),
        masi_low=min(per_rater), masi_high=max(per_rater),
        regions={r: round(fmean(_region_share(row, r) for row in closed), 10) for r in REGIONS},
    )


def load_patients(
    store: RatingStore, settings: Settings, model: Mapping[str, ModelScore] | None = None,
    measured: Mapping[str, float] | None = None,
) -> dict[str, Patient]:
    """Every patient with at least one dated photo, by id (sorted), visits in date order.

    `model` maps photo ids to a checkpoint's scores, `measured` to the image-derived MASI (both
    optional; see `melasma.followup.model`)."""
    rows = {row.image.id: row for row in consensus_rows(store, settings)}
    notes = VisitNotes(store).all()
    grouped: dict[str, dict[date, list[str]]] = defaultdict(lambda: defaultdict(list))
    for image in store.images():
        if image.patient_id and image.visit_date:
            grouped[image.patient_id][date.fromisoformat(image.visit_date)].append(image.id)
    return {
        pid: Patient(pid, tuple(_visit(pid, day, ids, rows, notes, model or {}, measured or {})
                                for day, ids in sorted(grouped[pid].items())))
        for pid in sorted(grouped)
    }


def patient_timeline(patients: Mapping[str, Patient], patient_id: str) -> Patient:
    """The patient with at least two scored visits on different dates, or FollowupError saying
    exactly what is missing (unknown patient, one visit, all photos on one date, no consensus)."""
    patient = patients.get(patient_id)
    if patient is None:
        known = ", ".join(list(patients)[:10]) or "none yet"
        raise FollowupError(f"unknown patient {patient_id!r} (patients with dated photos: {known})")
    photos = sum(len(v.image_ids) for v in patient.visits)
    if len(patient.visits) == 1:
        day = patient.visits[0].visit_date.isoformat()
        if photos > 1:
            raise FollowupError(f"patient {patient_id}: all {photos} photos have the same visit date {day}; "
                                "a timeline needs visits on at least two dates")
        raise FollowupError(f"patient {patient_id} has one visit ({day}); a timeline needs at least two")
    scored = patient.scored_visits
    if len(scored) < 2:
        waiting = ", ".join(f"{v.visit_date} {v.status}" for v in patient.visits if not v.scored)
        raise FollowupError(f"patient {patient_id}: {len(scored)} of {len(patient.visits)} visits have a "
                            f"complete consensus; a timeline needs two (waiting: {waiting})")
    return patient
