"""A photo read by the four MASI regions: outlines, lesions per region, and where relevance fell.

`read_face(photo, maps)` joins `melasma.regions` (landmarks, region masks) and the lesion model's
reading (`melasma.lesions`; `method="colour"` for the CIELAB rules) with explanation maps drawn at
the photo's size: per region, whether it is visible, its lesion share, the A / D / H estimates, and
the share of each method's positive relevance inside it. A photo without a face gives `found=False`
and a notice instead of numbers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from melasma.lesions import Method, measure
from melasma.masi import REGIONS
from melasma.regions import FaceNotFound, draw_regions, find_regions, relevance_share

#: Shown when no face is found: the CNN still outputs probabilities, but they mean nothing here.
NO_FACE_NOTICE = (
    "{reason}. The severity model was trained on faces: its output for this photo is not a "
    "meaningful severity."
)


@dataclass(frozen=True)
class RegionRow:
    """One MASI region of one photo; numbers are None where the region is not visible."""

    region: str
    visible: bool
    lesion_pct: float | None
    area: int | None
    darkness: int | None
    homogeneity: int | None
    relevance_pct: dict[str, float | None] = field(default_factory=dict)  # method -> % of positive relevance
    note: str = ""


@dataclass(frozen=True)
class FaceReading:
    """The regions of a photo, measured: `found` False (with `notice`) when there is no face."""

    found: bool
    notice: str
    rows: tuple[RegionRow, ...]
    masi: float | None
    mmasi: float | None
    overlay: Image.Image  # outlines and the lesion skin tinted
    outlines: Image.Image  # outlines only
    details: dict[str, object]  # JSON-ready: regions (outlines, visibility) and measures
    latency_ms: float

    def table(self, methods: tuple[str, ...]) -> list[list[object]]:
        """Rows for a table: region, visible, lesion %, A, D, H, then % relevance per method."""
        def cell(value: float | None) -> object:
            return "" if value is None else value

        return [
            [row.region.replace("_", " "), "yes" if row.visible else f"no ({row.note})", cell(row.lesion_pct),
             cell(row.area), cell(row.darkness), cell(row.homogeneity),
             *(cell(row.relevance_pct.get(m)) for m in methods)]
            for row in self.rows
        ]


def read_face(photo: Image.Image, maps: Mapping[str, np.ndarray] | None = None,
              lesions: Method = "model") -> FaceReading:
    """Find and measure the regions of `photo` (RGB) with the lesion model (or `lesions="colour"`);
    `maps` (method -> map at the photo's size) add the share of each method's positive relevance per region."""

    start = time.perf_counter()
    try:
        regions = find_regions(photo)
    except FaceNotFound as error:
        elapsed = (time.perf_counter() - start) * 1000.0
        reason = str(error).rstrip(".")
        notice = NO_FACE_NOTICE.format(reason=reason[:1].upper() + reason[1:])
        return FaceReading(False, notice, (), None, None, photo, photo, {"face_found": False, "notice": notice},
                           elapsed)
    measures = measure(photo, regions, lesions)
    shares_by_method = {method: relevance_share(regions, relevance) for method, relevance in (maps or {}).items()}
    rows = []
    for name in REGIONS:
        region = regions.regions[name]
        found = measures.regions.get(name)
        shares = {m: round(100.0 * share[name], 1) if region.visible else None for m, share in shares_by_method.items()}
        rows.append(RegionRow(
            name, region.visible,
            None if found is None else round(100.0 * found.pigmented_share, 1),
            None if found is None else found.area_item,
            None if found is None else found.darkness_item,
            None if found is None else found.homogeneity_item,
            shares, region.reason,
        ))
    overlay = draw_regions(photo, regions, pigment=measures.pigment_mask)
    details = {"face_found": True, "notice": regions.note, "lesion_reading": lesions, **regions.to_json(),
               "measures": measures.to_json()}
    elapsed = (time.perf_counter() - start) * 1000.0
    return FaceReading(True, regions.note, tuple(rows), measures.masi, measures.mmasi, overlay,
                       draw_regions(photo, regions), details, elapsed)
