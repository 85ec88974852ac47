"""Synthetic follow-up data: each simulated patient seen at N visits, responding to a treatment by a
known amount, every photo scored by the three simulated raters of `melasma.data.synthetic`.

Each patient gets a baseline (moderate or severe, sometimes mild), a treatment and a response r
(drawn around `MEAN_RESPONSE`, clipped to 0-0.95): at visit t of N the true MASI is brought down to
at most baseline x (1 - r x t / (N - 1)) by lowering the per-region items one step at a time from the
previous visit's (area, darkness or homogeneity: the step that lands closest above the target), so
items never rise between visits. Visits are `VISIT_DAYS` apart (+-3 days). The face keeps the patient's
look; pose and lighting change per photo, as in a clinic.

Files: `images/<patient>_<date>.jpg` (the folder pattern of `annotation.visit_manifest`), `visits.csv`
(the ingest manifest: image, patient_id, visit_date, treatment, notes) and `labels.csv` (truth, each
rater's items, the consensus MASI, the target and response). `load_into_store` ingests the manifest
and stores the simulated raters' scores, so the timeline has something to show.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

from melasma.data.synthetic import (
    ITEM_COLUMNS,
    Scores,
    check_size,
    item_values,
    rate,
    render,
    sample_appearance,
    sample_true_scores,
    write_csv,
    write_labels,
)
from melasma.errors import UserError
from melasma.masi import ITEM_RANGES, REGIONS, consensus, masi

TREATMENTS: tuple[str, ...] = ("tranexamic acid 250 mg twice daily", "hydroquinone 4 % cream",
                               "triple combination cream")
MEAN_RESPONSE = 0.6
RESPONSE_SD = 0.25
VISIT_DAYS = 28
FIRST_DAY = date(2026, 1, 5)
VISIT_COLUMNS: tuple[str, ...] = ("image", "patient_id", "visit_date", "treatment", "notes")
LABEL_COLUMNS: tuple[str, ...] = (
    "image", "patient_id", "visit_date", "visit", "treatment", "response", "target_masi", "true_masi",
    "masi", *ITEM_COLUMNS,
)


def _candidates(scores: Scores) -> list[Scores]:
    """Every score set one item step lower (area to 0 clears the region)."""
    moves = []
    for region in REGIONS:
        item = scores[region]
        if item["area"] == 0:
            continue
        for name in ITEM_RANGES:
            floor = 0 if name == "area" else 1
            if item[name] > floor:
                lower = {r: dict(s) for r, s in scores.items()}
                lower[region][name] -= 1
                if lower[region]["area"] == 0:
                    lower[region] = {"area": 0, "darkness": 0, "homogeneity": 0}
                moves.append(lower)
    return moves


def shrink(scores: Scores, target: float) -> Scores:
    """Lower items one step at a time until the MASI is at most `target`: each step takes the move
    that stays closest above the target, or, when every move goes below it, the one closest under."""
    current = {r: dict(s) for r, s in scores.items()}
    while masi(current) > target + 1e-9:
        moves = _candidates(current)
        above = [m for m in moves if masi(m) >= target - 1e-9]
        current = min(above, key=masi) if above else max(moves, key=masi)
    return current


@dataclass(frozen=True)
class PatientCourse:
    """One simulated patient: treatment, response and the true scores at each visit."""

    patient_id: str
    treatment: str
    response: float
    dates: tuple[date, ...]
    targets: tuple[float, ...]
    truth: tuple[Scores, ...]


def simulate_course(rng: np.random.Generator, patient_id: str, visits: int) -> PatientCourse:
    """Baseline scores, a response and the true scores of every visit."""
    severity = str(rng.choice(("mild", "moderate", "severe"), p=(0.15, 0.45, 0.4)))
    baseline = sample_true_scores(rng, severity)
    response = float(np.clip(rng.normal(MEAN_RESPONSE, RESPONSE_SD), 0.0, 0.95))
    start = FIRST_DAY + timedelta(days=int(rng.integers(0, 120)))
    dates = [start] + [start + timedelta(days=VISIT_DAYS * t + int(rng.integers(-3, 4)))
                       for t in range(1, visits)]
    base_masi = masi(baseline)
    targets = [round(base_masi * (1 - response * t / (visits - 1)), 10) for t in range(visits)]
    truth = [baseline]
    for target in targets[1:]:
        truth.append(shrink(truth[-1], target))
    treatment = TREATMENTS[int(rng.integers(len(TREATMENTS)))]
    return PatientCourse(patient_id, treatment, response, tuple(dates), tuple(targets), tuple(truth))


def generate(
    out_dir: str | Path, patients: int = 12, visits: int = 4, seed: int = 0, size: int = 256,
    rater_noise: bool = True,
) -> Path:
    """Write the photos, `visits.csv` and `labels.csv` under `out_dir`; returns visits.csv.

    `rater_noise=False` makes the three raters score the truth exactly (consensus = true MASI)."""
    if visits < 2:
        raise UserError(f"a follow-up needs at least 2 visits per patient, got {visits}")
    if patients < 1:
        raise UserError(f"patients must be at least 1, got {patients}")
    check_size(size)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    visit_rows, label_rows = [], []
    for p in range(patients):
        rng = np.random.default_rng([seed, p])
        course = simulate_course(rng, f"P{p:03d}", visits)
        look = sample_appearance(rng)
        for t, (day, target, true) in enumerate(zip(course.dates, course.targets, course.truth)):
            image_rng = np.random.default_rng([seed, p, t])
            raters = [rate(image_rng, true, k) if rater_noise else true for k in range(3)]
            pixels, _ = render(image_rng, look, true, size)
            name = f"images/{course.patient_id}_{day.isoformat()}.jpg"
            Image.fromarray(pixels).save(out / name, quality=90)
            notes = "baseline, before treatment" if t == 0 else f"visit {t + 1}"
            visit_rows.append({"image": name, "patient_id": course.patient_id, "visit_date": day.isoformat(),
                               "treatment": course.treatment, "notes": notes})
            label_rows.append({
                "image": name, "patient_id": course.patient_id, "visit_date": day.isoformat(), "visit": t,
                "treatment": course.treatment, "response": round(course.response, 6), "target_masi": target,
                "true_masi": masi(true), "masi": consensus(raters).masi, **item_values(true, raters),
            })
    write_labels(out, LABEL_COLUMNS, label_rows)
    return write_csv(out / "visits.csv", VISIT_COLUMNS, visit_rows)
