"""A patient's timeline (matplotlib `Figure`, no pyplot state): consensus MASI with the raters'
range as a band, the model's MASI as a second line, treatment start, MASI-50 / MASI-75 lines, and
each region's share of the MASI per visit below."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from melasma.followup.outcomes import LEVELS, Outcome
from melasma.followup.visits import Patient
from melasma.masi import REGIONS, SCALE_MAX

REGION_COLOURS = {"forehead": "#4c72b0", "right_malar": "#dd8452", "left_malar": "#55a868", "chin": "#8172b3"}
LEVEL_STYLES = {"MASI-50": "--", "MASI-75": ":"}


def _plain(text: str) -> str:
    """Text shown as written: matplotlib reads `$...$` as mathematics (and fails on a lone `$`)."""
    return text.replace("$", r"\$")


def _title(patient: Patient, result: Outcome) -> str:
    latest = result.latest
    change = f"{latest.percent:+.0f} %" if latest.percent is not None else f"{latest.change:+.1f}"
    reached = [f"{name} at {day.isoformat()}" for name, day in result.first_reached.items() if day]
    return (f"Patient {_plain(patient.patient_id)}: baseline MASI {result.baseline.masi:.1f}, latest {latest.masi:.1f} "
            f"({change}); " + (", ".join(reached) if reached else "MASI-50 not reached"))


def timeline_figure(patient: Patient, result: Outcome) -> Figure:
    """The timeline of `patient` (visits as dated points) with its outcome's reference lines."""
    closed = [v for v in patient.visits if v.masi is not None]
    scored = [v for v in closed if v.scored]
    figure = Figure(figsize=(8.5, 5.6), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1.3))
    days = [v.visit_date for v in closed]
    top.fill_between(days, [v.masi_low for v in closed], [v.masi_high for v in closed],
                     color="tab:blue", alpha=0.18, linewidth=0, label="raters' range")
    top.plot([v.visit_date for v in scored], [v.masi for v in scored], "-o", color="tab:blue",
             linewidth=2, label="consensus MASI")
    disputed = [v for v in closed if not v.scored]
    if disputed:
        top.plot([v.visit_date for v in disputed], [v.masi for v in disputed], "o", mfc="white",
                 color="tab:red", label="needs adjudication (left out)")
    modelled = [(v.visit_date, v.model.masi) for v in patient.visits if v.model and v.model.masi is not None]
    if modelled:
        top.plot([d for d, _ in modelled], [m for _, m in modelled], "-s",
                 color="tab:orange", linewidth=1.5, markersize=4, label="model MASI")
    derived = [(v.visit_date, v.image_masi) for v in patient.visits if v.image_masi is not None]
    if derived:
        top.plot([d for d, _ in derived], [m for _, m in derived], ":^", color="tab:purple", linewidth=1.2,
                 markersize=4, label="image-derived MASI (face regions)")
    baseline = float(result.baseline.masi or 0.0)
    for name, level in LEVELS.items():
        top.axhline(baseline * (1 - level), color="0.35", linestyle=LEVEL_STYLES[name], linewidth=1,
                    label=f"{name} ({100 * (1 - level):.0f} % of baseline)")
    start = patient.treatment_start
    if start is not None:
        top.axvline(start, color="tab:green", linewidth=1.5, label=f"treatment start: {_plain(patient.treatment or '')}")
    first50 = next((v for v in scored if v.visit_date == result.masi50), None)
    if first50 is not None:
        top.annotate("MASI-50 reached", (first50.visit_date, first50.masi), textcoords="offset points",
                     xytext=(-70, 14), fontsize=8, arrowprops={"arrowstyle": "-", "color": "0.4"})
    ymax = max([v.masi_high or 0 for v in closed] + [m for _, m in modelled] + [m for _, m in derived] + [1])
    top.set(ylabel="MASI (0-48)", ylim=(0, min(SCALE_MAX["masi"], ymax * 1.15 + 1)))
    top.set_title(_title(patient, result), fontsize=10)
    top.grid(alpha=0.3)
    top.legend(fontsize=7, loc="upper right")

    stack = np.zeros(len(closed))
    width = max(3.0, 0.25 * min([(b - a).days for a, b in pairwise(days)] or [14]))
    for region in REGIONS:
        values = np.array([v.regions[region] for v in closed])
        bottom.bar(days, values, width=width, bottom=stack, color=REGION_COLOURS[region],
                   label=region.replace("_", " "))
        stack += values
    bottom.set(ylabel="region share")
    bottom.grid(alpha=0.3, axis="y")
    bottom.legend(fontsize=7, ncols=4, loc="upper right")
    figure.autofmt_xdate()
    return figure


def save_figure(figure: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write `figure` as a PNG; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    return path
