"""One call for the CLI and the `/regions` API: regions, pigment measures and the overlay of a photo.

`analyse` never raises for a photo without a usable face: the report carries the plain message
instead, so a batch (CLI) or a request (API) can name the failure and go on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from melasma.regions.draw import draw_regions
from melasma.regions.find import as_rgb, find_regions
from melasma.regions.pigment import measure_pigment
from melasma.regions.types import FaceNotFound, FaceRegions, RegionMeasures


@dataclass(frozen=True)
class RegionReport:
    """What `analyse` found: regions and measures, or the reason there are none."""

    regions: FaceRegions | None
    measures: RegionMeasures | None
    overlay: Image.Image  # the photo with region outlines and pigment tint (the photo alone on error)
    error: str = ""

    @property
    def face_found(self) -> bool:
        return self.regions is not None

    def to_json(self) -> dict[str, object]:
        """The `/regions` API answer and the CLI's JSON line (no masks, no pixels)."""
        if self.regions is None or self.measures is None:
            return {"face_found": False, "error": self.error}
        return {
            "face_found": True,
            "error": "",
            "note": self.regions.note,
            "masi": self.measures.masi,
            "mmasi": self.measures.mmasi,
            "regions": self.regions.to_json()["regions"],
            "measures": self.measures.to_json(),
            "yaw": round(self.regions.yaw, 3),
        }


#: how a photo's regions are measured: `measure_pigment` (colour rules) or a lesion map's reading
Measure = Callable[[Image.Image, FaceRegions], RegionMeasures]


def analyse(image: Image.Image | np.ndarray, *, labels: bool = True,
            measure: Measure = measure_pigment) -> RegionReport:
    """Find the regions of `image`, measure them with `measure` and draw the overlay
    (`melasma.lesions.analyse` passes the lesion model's reading)."""
    photo = Image.fromarray(as_rgb(image))
    try:
        regions = find_regions(photo)
    except FaceNotFound as error:
        return RegionReport(None, None, photo, str(error))
    measures = measure(photo, regions)
    overlay = draw_regions(photo, regions, labels=labels, pigment=measures.pigment_mask)
    return RegionReport(regions, measures, overlay)
