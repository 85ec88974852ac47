"""MASI and mMASI scoring (Kimbrough-Green 1994; Pandya 2011). Pure Python, no torch.

A rater's scores are a mapping ``{region: {"area": A, "darkness": D, "homogeneity": H}}`` over the
four facial regions. MASI = sum of weight * A * (D + H) (range 0-48); mMASI = sum of weight * A * D
(range 0-24). Every invalid value raises ``UserError`` (melasma.errors; a wrong type too) naming the
field and the allowed range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import fmean

from melasma.errors import UserError

REGIONS: tuple[str, ...] = ("forehead", "right_malar", "left_malar", "chin")
REGION_WEIGHTS: dict[str, float] = {"forehead": 0.3, "right_malar": 0.3, "left_malar": 0.3, "chin": 0.1}
SEVERITIES: tuple[str, ...] = ("mild", "moderate", "severe")

#: item -> (lowest, highest) integer score
ITEM_RANGES: dict[str, tuple[int, int]] = {"area": (0, 6), "darkness": (0, 4), "homogeneity": (0, 4)}
ITEMS: tuple[str, ...] = tuple(ITEM_RANGES)

#: Area score -> share of the region affected, as shown to raters.
AREA_BANDS: dict[int, str] = {
    0: "none", 1: "<10 %", 2: "10-29 %", 3: "30-49 %", 4: "50-69 %", 5: "70-89 %", 6: "90-100 %",
}
INTENSITY_LABELS: dict[int, str] = {0: "absent", 1: "slight", 2: "mild", 3: "marked", 4: "maximum"}

SCALE_MAX: dict[str, float] = {"masi": 48.0, "mmasi": 24.0}
#: Default cut-offs (lower bounds of moderate and severe). MASI's are the study's thirds of 48; no
#: validated published cut-offs exist for either scale, so callers may pass their own.
DEFAULT_CUTOFFS: dict[str, tuple[float, float]] = {"masi": (16.0, 32.0), "mmasi": (8.0, 16.0)}

#: Validated scores: region -> item -> integer.
Scores = Mapping[str, Mapping[str, int]]
#: Scores as they arrive (form fields, JSON, CSV): checked by `validate` before any use.
RawScores = Mapping[str, Mapping[str, object]]


def _check_item(region: str, item: str, value: object) -> int:
    low, high = ITEM_RANGES[item]
    allowed = f"an integer {low}-{high}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{region}.{item} must be {allowed}, got {value!r}")
    if isinstance(value, float) and (math.isnan(value) or not value.is_integer()):
        raise UserError(f"{region}.{item} must be {allowed}, got {value!r}")
    if not low <= value <= high:
        raise UserError(f"{region}.{item} must be {allowed}, got {value!r}")
    return int(value)


def validate(scores: RawScores) -> dict[str, dict[str, int]]:
    """Return a clean copy of one rater's scores, or raise UserError naming the bad field."""
    if not isinstance(scores, Mapping):
        raise UserError(f"scores must be a mapping of regions {REGIONS}, got {type(scores).__name__}")
    unknown = sorted(set(scores) - set(REGIONS))
    if unknown:
        raise UserError(f"unknown region {unknown[0]!r}; allowed regions are {', '.join(REGIONS)}")
    clean: dict[str, dict[str, int]] = {}
    for region in REGIONS:
        if region not in scores:
            raise UserError(f"missing region {region!r}; all of {', '.join(REGIONS)} are required")
        items = scores[region]
        if not isinstance(items, Mapping):
            raise UserError(f"{region} must be a mapping of {', '.join(ITEMS)}")
        extra = sorted(set(items) - set(ITEMS))
        if extra:
            raise UserError(f"{region}: unknown item {extra[0]!r}; allowed items are {', '.join(ITEMS)}")
        clean[region] = {}
        for item in ITEMS:
            if item not in items:
                low, high = ITEM_RANGES[item]
                raise UserError(f"{region}.{item} is missing (an integer {low}-{high})")
            clean[region][item] = _check_item(region, item, items[item])
    return clean


def region_score(area: float, darkness: float, homogeneity: float) -> float:
    """One region's MASI term before its weight: A x (D + H), 0-48 for valid items. The one place the
    formula is written; `region_score(**scores[region])` for a rater's mapping."""
    return area * (darkness + homogeneity)


def masi(scores: RawScores) -> float:
    """MASI = sum over regions of weight * area * (darkness + homogeneity), range 0-48."""
    clean = validate(scores)
    return round(sum(REGION_WEIGHTS[r] * region_score(**s) for r, s in clean.items()), 10)


def mmasi(scores: RawScores) -> float:
    """Modified MASI = sum over regions of weight * area * darkness, range 0-24."""
    clean = validate(scores)
    return round(sum(REGION_WEIGHTS[r] * s["area"] * s["darkness"] for r, s in clean.items()), 10)


def severity(
    value: float, scale: str = "masi", cutoffs: tuple[float, float] | None = None
) -> str:
    """Bin a MASI (or mMASI) value: mild below the first cut-off, severe from the second."""
    if scale not in SCALE_MAX:
        raise UserError(f"scale must be one of {', '.join(SCALE_MAX)}, got {scale!r}")
    top = SCALE_MAX[scale]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise UserError(f"{scale} value must be a number 0-{top:g}, got {value!r}")
    if not 0 <= value <= top:
        raise UserError(f"{scale} value must be within 0-{top:g}, got {value!r}")
    moderate_from, severe_from = cutoffs if cutoffs is not None else DEFAULT_CUTOFFS[scale]
    if not 0 < moderate_from < severe_from <= top:
        raise UserError(
            f"cut-offs must satisfy 0 < moderate < severe <= {top:g}, got {(moderate_from, severe_from)}"
        )
    if value < moderate_from:
        return "mild"
    return "moderate" if value < severe_from else "severe"


@dataclass(frozen=True)
class RaterScores:
    """One rater's validated scores (region -> item -> integer) and the MASI and mMASI they give,
    computed once: what a submitted form carries into the rater store."""

    regions: dict[str, dict[str, int]]
    masi: float
    mmasi: float

    @classmethod
    def from_raw(cls, raw: RawScores) -> RaterScores:
        """Check `raw` (form fields, JSON) as `validate` does and score it; ValueError naming a bad field."""
        clean = validate(raw)
        return cls(clean, masi(clean), mmasi(clean))


#: How a MASI of 0 is shown wherever a class is named: no melasma recorded (it trains as the mild class).
CLEAR = "clear (no melasma recorded)"


def shown_class(value: float, scale: str = "masi", cutoffs: tuple[float, float] | None = None) -> str:
    """The class a person reads for a score: `CLEAR` for 0, else its severity bin (`severity`)."""
    binned = severity(value, scale, cutoffs)  # refuses a value outside the scale
    return CLEAR if value == 0 else binned


@dataclass(frozen=True)
class Consensus:
    """The raters' mean MASI, its severity bin, each rater's MASI and their spread."""

    masi: float
    severity: str
    per_rater: list[float]
    spread: float
    mmasi: float
    region_means: dict[str, dict[str, float]] = field(default_factory=dict)


def consensus(
    raters: Sequence[RawScores], cutoffs: tuple[float, float] | None = None
) -> Consensus:
    """Average the raters' MASI values (the study's final score) and bin the mean."""
    if isinstance(raters, Mapping) or not isinstance(raters, Sequence) or len(raters) == 0:
        raise UserError("raters must be a non-empty list of score mappings (one per rater)")
    clean = [validate(s) for s in raters]
    per_rater = [masi(s) for s in clean]
    mean = round(fmean(per_rater), 10)
    region_means = {
        r: {item: fmean(s[r][item] for s in clean) for item in ITEMS} for r in REGIONS
    }
    return Consensus(
        masi=mean,
        severity=severity(mean, "masi", cutoffs),
        per_rater=per_rater,
        spread=round(max(per_rater) - min(per_rater), 10),
        mmasi=round(fmean(mmasi(s) for s in clean), 10),
        region_means=region_means,
    )
