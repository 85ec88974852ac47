"""Response to treatment: change from baseline per patient (absolute, %, per region), MASI-50 /
MASI-75 and the visit that first reached it, and the cohort's responders per visit window with
Wilson 95 % confidence intervals.

Baseline is a patient's first scored visit (complete consensus). MASI-50 (MASI-75) is a MASI at
most 50 % (25 %) of the baseline's, i.e. a reduction of at least 50 % (75 %); a baseline of 0 can
reach neither, and its % change is undefined (None).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from itertools import pairwise

from scipy.stats import binomtest

from melasma.followup.visits import FollowupError, Patient, Visit
from melasma.masi import REGIONS

#: Response levels: name -> the share of the baseline MASI that must be gone.
LEVELS: dict[str, float] = {"MASI-50": 0.5, "MASI-75": 0.75}
#: Default visit windows, in weeks after baseline: (0, 6], (6, 10], ... (visits every 4 weeks fall inside).
WINDOW_EDGES: tuple[float, ...] = (0, 6, 10, 14, 20, 28, 52)
CONFIDENCE = 0.95
_DIGITS = 9  # MASI values are means of sums of tenths: compare after rounding away float noise


def percent_change(baseline: float, value: float) -> float | None:
    """100 x (value - baseline) / baseline; None when the baseline is 0."""
    return None if baseline == 0 else round(100 * (value - baseline) / baseline, _DIGITS)


def reached(baseline: float, value: float, level: float) -> bool:
    """Whether `value` is a reduction of at least `level` (0.5 for MASI-50) from `baseline` > 0."""
    return baseline > 0 and round(value, _DIGITS) <= round(baseline * (1 - level), _DIGITS)


@dataclass(frozen=True)
class VisitChange:
    """One scored follow-up visit against the baseline."""

    visit_date: date
    days: int
    masi: float
    change: float  # MASI minus the baseline's (negative: better)
    percent: float | None
    regions: dict[str, float]  # per region: the region's share minus the baseline's
    levels: dict[str, bool]  # "MASI-50" / "MASI-75" -> reached at this visit

    @property
    def weeks(self) -> float:
        return self.days / 7


@dataclass(frozen=True)
class Outcome:
    """A patient's response: every scored visit after baseline against it, and the first visit
    reaching each level (None: not reached)."""

    patient_id: str
    baseline: Visit
    changes: tuple[VisitChange, ...]
    first_reached: dict[str, date | None]

    @property
    def latest(self) -> VisitChange:
        return self.changes[-1]

    @property
    def masi50(self) -> date | None:
        return self.first_reached["MASI-50"]

    @property
    def masi75(self) -> date | None:
        return self.first_reached["MASI-75"]


def _change(baseline: Visit, visit: Visit) -> VisitChange:
    """`visit` against `baseline` (both scored, so both have a MASI)."""
    before, after = float(baseline.masi or 0.0), float(visit.masi or 0.0)
    return VisitChange(
        visit_date=visit.visit_date, days=(visit.visit_date - baseline.visit_date).days, masi=after,
        change=round(after - before, _DIGITS), percent=percent_change(before, after),
        regions={r: round(visit.regions[r] - baseline.regions[r], _DIGITS) for r in REGIONS},
        levels={name: reached(before, after, level) for name, level in LEVELS.items()},
    )


def outcome(patient: Patient) -> Outcome:
    """The patient's change from baseline at every later scored visit; FollowupError with fewer
    than two scored visits."""
    scored = patient.scored_visits
    if len(scored) < 2:
        raise FollowupError(f"patient {patient.patient_id}: {len(scored)} scored visit(s); "
                            "change from baseline needs two")
    baseline, *later = scored
    changes = tuple(_change(baseline, visit) for visit in later)
    first = {name: next((c.visit_date for c in changes if c.levels[name]), None) for name in LEVELS}
    return Outcome(patient.patient_id, baseline, changes, first)


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a proportion (scipy); (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    interval = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


@dataclass(frozen=True)
class CohortWindow:
    """Responders in one window of weeks after baseline, (start, end]: each patient counts once,
    at their last scored visit inside the window."""

    start_week: float
    end_week: float
    patients: int
    responders: dict[str, int]  # level -> patients reaching it at that visit
    intervals: dict[str, tuple[float, float]]  # level -> Wilson 95 % CI of the share

    def share(self, level: str) -> float | None:
        return self.responders[level] / self.patients if self.patients else None


def cohort_responders(
    outcomes: Iterable[Outcome], edges: Sequence[float] = WINDOW_EDGES
) -> list[CohortWindow]:
    """Responders per visit window (edges in weeks, increasing), with Wilson CIs."""
    if len(edges) < 2 or any(b <= a for a, b in pairwise(edges)) or edges[0] < 0:
        raise ValueError(f"window edges must be at least two increasing weeks from 0, got {list(edges)}")
    outcomes = list(outcomes)
    windows = []
    for start, end in pairwise(edges):
        inside = [[c for c in o.changes if start < c.weeks <= end] for o in outcomes]
        last = [changes[-1] for changes in inside if changes]
        counts = {name: sum(c.levels[name] for c in last) for name in LEVELS}
        windows.append(CohortWindow(start, end, len(last), counts,
                                    {name: wilson_interval(k, len(last)) for name, k in counts.items()}))
    return windows
