"""`python -m melasma timeline`: a patient's course (or the cohort's) from the rater store."""

from __future__ import annotations

import argparse

from melasma.cli.settings_flags import add_store_arguments, open_store
from melasma.followup import FollowupError, cohort_responders, load_patients, outcome, patient_timeline
from melasma.followup.outcomes import WINDOW_EDGES

HELP = ("follow patients over time: each visit's consensus MASI, change from baseline, MASI-50 / MASI-75 "
        "(one patient with --patient, else the cohort and its responders per visit window); figures and "
        "CSV files to --out")


def _edges(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated weeks like 0,6,10,14, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--patient", help="one patient's visits (default: every patient, and the cohort)")
    parser.add_argument("--out", help="folder for the timeline PNG(s) and CSV files")
    parser.add_argument("--windows", type=_edges, default=None,
                        help="visit window edges in weeks after baseline (default 0,6,10,14,20,28,52)")
    parser.add_argument("--checkpoint", help="also show this checkpoint's severity (and MASI, for a regression "
                        "head) per visit: a run folder with model.safetensors + model.json")
    parser.add_argument("--measure", action="store_true",
                        help="also show the image-derived MASI of the face-region analysis per visit")
    add_store_arguments(parser)


def _fmt(value: object, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import pandas as pd

    # deferred: loads matplotlib; --help stays instant
    from melasma.followup.export import visit_frame, write_long_csv, write_patient_record

    settings, store = open_store(args)
    patients = load_patients(store, settings)
    if args.checkpoint or args.measure:
        # deferred: imports torch; only --checkpoint and --measure need it
        from melasma.followup.model import checkpoint_scores, image_derived_masi
        from melasma.inference import Predictor

        chosen = [patients[args.patient]] if args.patient in patients else list(patients.values())
        ids = [i for patient in chosen for visit in patient.visits for i in visit.image_ids]
        model = checkpoint_scores(Predictor.from_checkpoint(args.checkpoint), settings.photos_dir, ids) \
            if args.checkpoint else None
        measured = image_derived_masi(settings.photos_dir, ids) if args.measure else None
        patients = load_patients(store, settings, model, measured)
    if not patients:
        raise FollowupError(f"no patient has dated photos in {settings.data_dir}: ingest photos with "
                            "--patient-id and --visit-date, or with visits-ingest")
    out = Path(args.out) if args.out else None
    if args.patient is not None:
        patient = patient_timeline(patients, args.patient)
        table = visit_frame(patient)
        columns = ["visit_date", "status", "masi", "masi_low", "masi_high", "mmasi", "change", "percent_change",
                   "masi50", "masi75", "treatment"]
        columns += ["model_severity", "model_masi"] if args.checkpoint else []
        columns += ["image_masi"] if args.measure else []
        shown = table[columns]
        shown = shown.astype(object).where(shown.notna(), "-")
        print(shown.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
        if out is not None:
            record = write_patient_record(patient, outcome(patient), out)
            print(f"wrote {record.figure} and {record.table}")
        return 0
    rows, outcomes = [], []
    for patient in patients.values():
        try:
            result = outcome(patient)
        except FollowupError as error:
            rows.append({"patient": patient.patient_id, "visits": len(patient.visits), "note": str(error)})
            continue
        outcomes.append(result)
        rows.append({
            "patient": patient.patient_id, "visits": len(patient.visits),
            "baseline": _fmt(result.baseline.masi), "latest": _fmt(result.latest.masi),
            "change": _fmt(result.latest.change, "+.1f"), "percent": _fmt(result.latest.percent, "+.0f"),
            "MASI-50": _fmt(result.masi50, ""), "MASI-75": _fmt(result.masi75, ""), "note": "",
        })
        if out is not None:
            write_patient_record(patient, result, out)
    print(pd.DataFrame(rows).fillna("").to_string(index=False))
    print()
    print("responders per visit window (weeks after baseline; Wilson 95 % CI)")
    windows = [w for w in cohort_responders(outcomes, args.windows or WINDOW_EDGES) if w.patients]
    if not windows:
        print("  no scored follow-up visit falls in these windows")
    for window in windows:
        shares = "; ".join(
            f"{name} {window.responders[name]}/{window.patients} = {window.share(name) or 0:.0%}"
            f" [{low:.0%}, {high:.0%}]" for name, (low, high) in window.intervals.items())
        print(f"  ({window.start_week:g}, {window.end_week:g}]: {shares}")
    if out is not None:
        path = write_long_csv(patients.values(), out / "followup_long.csv")
        print(f"wrote {path} and {len(outcomes)} patient record(s) to {out}")
    return 0
