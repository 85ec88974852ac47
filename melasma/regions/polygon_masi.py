"""A MASI read off hand-drawn lesion outlines: the labels of the demo model's real training photos.

No public photo set has MASI scores; the Roboflow melasma sample has lesion polygons. This module
turns them into a MASI by a fixed rule, written once here and stated in the model card:

- **A** per region: the share of the region's skin (`melasma.regions.find_regions`) inside the
  polygons, by the MASI area bands (any outlined pixel in a region gives at least A = 1);
- **D** per region: 1 (an outlined lesion is visible pigment) plus one per `DARKNESS_STEP_L` of L*
  by which the region's outlined skin is darker than the person's own skin outside every outline
  (median L*), at most 4;
- **H**: 2 everywhere (not measured: the middle of 0-4);
- a photo with no face the landmark model finds: the polygons' share of the photo's skin-coloured
  pixels (YCrCb rule) as A of both malar regions (such photos are cheek close-ups), D as above;
- a photo without melasma: MASI 0 (mild).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from melasma.data.tone import skin_mask
from melasma.masi import AREA_BANDS, REGIONS, masi, severity
from melasma.regions.color import to_lab
from melasma.regions.find import find_regions
from melasma.regions.types import FaceNotFound

#: Upper bounds of the MASI area bands 1-5 (share of the region), as `AREA_BANDS` shows them.
AREA_UPPER: tuple[float, ...] = (0.10, 0.30, 0.50, 0.70, 0.90)
#: L* units of darkness per step of D above 1.
DARKNESS_STEP_L = 4.0
HOMOGENEITY = 2
DARKNESS_FLOOR = 2
assert len(AREA_UPPER) == len(AREA_BANDS) - 2


@dataclass(frozen=True)
class PolygonMasi:
    """One photo's outline-derived MASI, its severity class and the per-region items."""

    masi: float
    severity: str
    items: dict[str, dict[str, int]]
    face_found: bool


def area_item(share: float) -> int:
    """MASI A (0-6) of a region whose outlined share is `share` (any outline: at least 1)."""
    if share <= 0:
        return 0
    return 1 + int(np.searchsorted(AREA_UPPER, share, side="right"))


def darkness_item(delta_l: float) -> int:
    """MASI D (1-4) of an outlined lesion `delta_l` L* darker than the person's other skin."""
    return int(min(4, DARKNESS_FLOOR + max(0, int(delta_l // DARKNESS_STEP_L))))


def polygon_masi(rgb: np.ndarray, lesion: np.ndarray | None) -> PolygonMasi:
    """The outline-derived MASI of an RGB photo (uint8 HxWx3) with lesion mask `lesion` (bool HxW,
    None or empty for a photo without melasma)."""
    empty = {r: {"area": 0, "darkness": 0, "homogeneity": 0} for r in REGIONS}
    if lesion is None or not lesion.any():
        return PolygonMasi(0.0, "mild", empty, face_found=True)
    lightness = to_lab(rgb)[..., 0]
    try:
        found = find_regions(rgb)
        skin, masks = found.skin_mask, {n: r.mask for n, r in found.regions.items() if r.visible}
        face_found = True
    except FaceNotFound:
        skin = skin_mask(rgb)
        masks = {"right_malar": skin, "left_malar": skin}
        face_found = False
    normal = (skin | _union(masks.values(), skin.shape)) & ~lesion
    reference = float(np.median(lightness[normal])) if normal.any() else float(np.median(lightness))
    items = dict(empty)
    for name, mask in masks.items():
        inside = mask & lesion
        if not mask.any() or not inside.any():
            continue
        share = float(inside.sum() / mask.sum())
        delta = reference - float(np.median(lightness[inside]))
        items[name] = {"area": area_item(share), "darkness": darkness_item(delta), "homogeneity": HOMOGENEITY}
    value = masi(items)
    return PolygonMasi(value, severity(value), items, face_found)


def _union(masks: object, shape: tuple[int, ...]) -> np.ndarray:
    out = np.zeros(shape, bool)
    for mask in masks:  # type: ignore[attr-defined]
        out |= mask
    return out
