"""Follow-up exports: a long CSV (one row per patient x visit x region) for the whole cohort, and a
per-patient clinic record (timeline PNG + one row per visit CSV). Text cells are escaped against
spreadsheet formula injection as the annotation export does."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from annotation.export import escape_frame
from melasma.followup.figures import save_figure, timeline_figure
from melasma.followup.outcomes import Outcome, VisitChange, outcome
from melasma.followup.visits import Patient, Visit
from melasma.masi import REGION_WEIGHTS, REGIONS

VISIT_COLUMNS: tuple[str, ...] = (
    "patient_id", "visit_date", "days_from_baseline", "status", "photos", "treatment", "notes", "masi",
    "mmasi", "masi_low", "masi_high", "change", "percent_change", "masi50", "masi75", "model_severity",
    "model_masi", "image_masi",
)
LONG_COLUMNS: tuple[str, ...] = (*VISIT_COLUMNS, "region", "weight", "region_share", "region_change")


def _changes(patient: Patient) -> tuple[Visit | None, dict[object, VisitChange]]:
    scored = patient.scored_visits
    if len(scored) < 2:
        return (scored[0] if scored else None), {}
    result = outcome(patient)
    return result.baseline, {c.visit_date: c for c in result.changes}


def _visit_record(visit: Visit, baseline: Visit | None, change: VisitChange | None) -> dict[str, object]:
    is_baseline = baseline is not None and visit.visit_date == baseline.visit_date
    return {
        "patient_id": visit.patient_id, "visit_date": visit.visit_date.isoformat(),
        "days_from_baseline": (visit.visit_date - baseline.visit_date).days if baseline else None,
        "status": visit.status, "photos": len(visit.image_ids), "treatment": visit.treatment,
        "notes": visit.notes, "masi": visit.masi, "mmasi": visit.mmasi, "masi_low": visit.masi_low,
        "masi_high": visit.masi_high,
        "change": 0.0 if is_baseline else (change.change if change else None),
        "percent_change": 0.0 if is_baseline else (change.percent if change else None),
        "masi50": change.levels["MASI-50"] if change else None,
        "masi75": change.levels["MASI-75"] if change else None,
        "model_severity": visit.model.severity if visit.model else None,
        "model_masi": visit.model.masi if visit.model else None, "image_masi": visit.image_masi,
    }


def visit_frame(patient: Patient) -> pd.DataFrame:
    """One row per visit with each region's share as `<region>` columns (the clinic record's CSV)."""
    baseline, changes = _changes(patient)
    rows = []
    for visit in patient.visits:
        record = _visit_record(visit, baseline, changes.get(visit.visit_date))
        record.update({region: visit.regions.get(region) for region in REGIONS})
        rows.append(record)
    return pd.DataFrame(rows, columns=[*VISIT_COLUMNS, *REGIONS])


def long_frame(patients: Iterable[Patient]) -> pd.DataFrame:
    """One row per patient x visit x region (open visits carry no numbers)."""
    rows = []
    for patient in patients:
        baseline, changes = _changes(patient)
        for visit in patient.visits:
            change = changes.get(visit.visit_date)
            record = _visit_record(visit, baseline, change)
            for region in REGIONS:
                rows.append({**record, "region": region, "weight": REGION_WEIGHTS[region],
                             "region_share": visit.regions.get(region),
                             "region_change": change.regions[region] if change else None})
    return pd.DataFrame(rows, columns=list(LONG_COLUMNS))


def write_long_csv(patients: Iterable[Patient], path: str | Path) -> Path:
    """The cohort's long CSV, escaped; returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    escape_frame(long_frame(patients)).to_csv(path, index=False)
    return path


@dataclass(frozen=True)
class PatientRecord:
    """The files of one patient's clinic record."""

    figure: Path
    table: Path


def file_stem(patient_id: str) -> str:
    """A patient id made safe for a file name: letters, digits, `-` and `_` kept, anything else `_`
    (an id may hold `/` or `..`)."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in patient_id)


def write_patient_record(patient: Patient, result: Outcome, out_dir: str | Path) -> PatientRecord:
    """`<patient>_timeline.png` and `<patient>_visits.csv` under `out_dir` (file names keep only
    letters, digits, `-` and `_` of the id)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = file_stem(patient.patient_id)
    figure = save_figure(timeline_figure(patient, result), out / f"{stem}_timeline.png")
    table = out / f"{stem}_visits.csv"
    escape_frame(visit_frame(patient)).to_csv(table, index=False)
    return PatientRecord(figure, table)

