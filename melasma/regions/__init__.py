"""Face regions on real photos: the four MASI regions found by face landmarks, and measured.

`find_regions(photo)` locates forehead, right malar, left malar and chin (the patient's sides) on the
largest face; `measure_pigment` scores hyperpigmentation against the person's own skin in CIELAB;
`draw_regions` outlines them; `relevance_share` tells how much of an explanation falls in each.
"""

from melasma.regions.draw import draw_regions
from melasma.regions.find import find_regions
from melasma.regions.pigment import measure_pigment
from melasma.regions.relevance import relevance_share
from melasma.regions.types import FaceNotFound, FaceRegions, Region, RegionMeasure, RegionMeasures

__all__ = [
    "FaceNotFound", "FaceRegions", "Region", "RegionMeasure", "RegionMeasures",
    "draw_regions", "find_regions", "measure_pigment", "relevance_share",
]
