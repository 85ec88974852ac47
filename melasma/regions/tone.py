"""The one skin-tone baseline of every real-photo benchmark: a photo's median skin ITA.

A melasma-vs-healthy score must beat this number alone, since on public photo sets the melasma
photos are often of darker skin. The face's skin (`find_regions`) when a face is found; otherwise the
skin-coloured pixels of the whole photo (YCrCb rule), so photos with no face are scored, not dropped.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from melasma.data.tone import skin_mask
from melasma.regions.color import ita, to_lab
from melasma.regions.find import as_rgb, find_regions
from melasma.regions.types import FaceNotFound, FaceRegions


def skin_ita(image: Image.Image | np.ndarray, regions: FaceRegions | None = None) -> float:
    """Median ITA (degrees) of the photo's skin; darker skin has a lower ITA. `regions` saves a second
    landmark search when the caller has them; NaN only for a photo with no skin-coloured pixel."""
    rgb = as_rgb(image)
    if regions is None:
        try:
            regions = find_regions(rgb)
        except FaceNotFound:
            regions = None
    skin = regions.skin_mask if regions is not None and regions.skin_mask.any() else skin_mask(rgb)
    if not skin.any():
        return float("nan")
    lab = to_lab(rgb)
    return float(np.median(ita(lab[..., 0][skin], lab[..., 2][skin])))


def tone_score(ita_degrees: float) -> float:
    """The baseline's melasma score: darker skin (lower ITA) scores higher."""
    return -ita_degrees
