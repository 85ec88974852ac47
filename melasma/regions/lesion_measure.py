"""MASI items per region from a lesion probability map (`melasma.lesions`), not from colour rules.

Per visible region: A from the share of its skin the map calls lesion (the MASI area bands);
D from how much darker the lesion skin is than the person's own normal skin (the face's skin the map
does not call lesion), as a Weber contrast of median L* in percent, cut at the photo calibration's
D cut points (`pigment.DEFAULT`); H from how confluent and even the lesion patches are
(`pigment.patch_homogeneity`, the same cut points as the colour method). D and H are measured only
where the lesion covers at least a tenth of the region (A >= 2); below that the map's 8 x 8 px cells
hold a few pixels of hair edge or shadow as often as pigment, and A = 1 scores D = H = 1, the least
grades (chosen after the cross-validated readings of healthy faces showed such specks as D = H = 4).
A photo without a face is read as one region of weight 1 over its skin (`measure_skin`), so it is
scored, not dropped. The D and H cut points were fitted for the colour method and have not been
checked against raters on real photos (no public photo set has MASI scores).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from melasma.masi import region_score
from melasma.regions.color import ita, to_lab
from melasma.regions.find import analysis_size, as_rgb, resize_mask, resize_rgb
from melasma.regions.pigment import DEFAULT, area_item, cut_item, measure_regions, patch_homogeneity
from melasma.regions.types import FaceRegions, RegionMeasure, RegionMeasures

#: a region with a smaller lesion share than this scores A = 0 (one 8 x 8 cell of a small region)
MIN_LESION_SHARE = 0.02
#: D and H are measured from this A up; smaller lesions score the least grades, D = H = 1
MEASURED_AREA = 2


@dataclass(frozen=True)
class SkinReading:
    """The lesion items of a photo's skin read as one region (photos with no face)."""

    share: float
    measure: RegionMeasure
    masi: float
    mmasi: float


def _medians(lab: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(median L*, median ITA) of the pixels of `mask`."""
    lightness, b_star = lab[..., 0][mask], lab[..., 2][mask]
    return float(np.median(lightness)), float(np.median(ita(lightness, b_star)))


def _measure(name: str, lab: np.ndarray, inside: np.ndarray, lesion: np.ndarray, normal: np.ndarray,
             normal_L: float, normal_ITA: float) -> RegionMeasure:
    found = lesion & inside
    share = float(found.sum() / max(int(inside.sum()), 1))
    area = area_item(share, MIN_LESION_SHARE)
    if not area or not normal.any():
        return RegionMeasure(name, share, 0.0, 0.0, 0.0, area, 0, 0)
    if area < MEASURED_AREA:
        return RegionMeasure(name, share, 0.0, 0.0, 0.0, area, 1, 1)
    lesion_L, lesion_ITA = _medians(lab, found)
    delta_L = max(normal_L - lesion_L, 0.0)
    contrast = np.where(found, np.clip(normal_L - lab[..., 0], 0, None), 0)
    even = patch_homogeneity(found, contrast)
    darkness = 1 + cut_item(100 * delta_L / max(normal_L, 1.0), DEFAULT.darkness_cuts)
    return RegionMeasure(name, share, delta_L, normal_ITA - lesion_ITA, even, area, darkness,
                         1 + cut_item(even, DEFAULT.homogeneity_cuts))


def _lab_and_lesion(image: Image.Image | np.ndarray, probability: np.ndarray,
                    threshold: float) -> tuple[np.ndarray, np.ndarray, tuple[int, int], tuple[int, int]]:
    rgb = as_rgb(image)
    full = (rgb.shape[1], rgb.shape[0])
    if probability.shape != rgb.shape[:2]:
        raise ValueError(f"lesion map {probability.shape[::-1]} does not match the photo {full}")
    size = analysis_size(full)
    lab = to_lab(resize_rgb(rgb, size))
    lesion = resize_mask(probability > threshold, size)
    return lab, lesion, size, full


def measure_lesions(image: Image.Image | np.ndarray, regions: FaceRegions, probability: np.ndarray,
                    threshold: float = 0.5) -> RegionMeasures:
    """Per visible region A / D / H from the lesion map (`probability`, float (h, w) at the photo's
    resolution), and the image-derived MASI and mMASI; `pigment_mask` is the lesion skin."""
    lab, lesion, size, _ = _lab_and_lesion(image, probability, threshold)
    skin = resize_mask(regions.skin_mask, size)
    lesion &= skin
    normal = skin & ~lesion
    skin_L, skin_ITA = _medians(lab, normal if normal.any() else skin) if skin.any() else (np.nan, np.nan)
    return measure_regions(
        regions, lambda name, region: _measure(name, lab, resize_mask(region.mask, size), lesion, normal, skin_L,
                                               skin_ITA),
        pigment_mask=(probability > threshold) & regions.skin_mask, skin_L=skin_L, skin_ITA=skin_ITA)


def measure_skin(image: Image.Image | np.ndarray, skin_mask: np.ndarray, probability: np.ndarray,
                 threshold: float = 0.5) -> SkinReading:
    """The photo's skin (`skin_mask`, e.g. skin-coloured pixels) read as one region of weight 1."""
    lab, lesion, size, _ = _lab_and_lesion(image, probability, threshold)
    skin = resize_mask(skin_mask, size)
    lesion &= skin
    normal = skin & ~lesion
    if not skin.any():
        empty = RegionMeasure("skin", 0.0, 0.0, 0.0, 0.0, 0, 0, 0)
        return SkinReading(0.0, empty, 0.0, 0.0)
    normal_L, normal_ITA = _medians(lab, normal if normal.any() else skin)
    measure = _measure("skin", lab, skin, lesion, normal, normal_L, normal_ITA)
    masi = region_score(measure.area_item, measure.darkness_item, measure.homogeneity_item)
    return SkinReading(measure.pigmented_share, measure, float(masi), float(measure.area_item * measure.darkness_item))
