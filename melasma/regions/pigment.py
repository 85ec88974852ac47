"""Hyperpigmentation measured against the person's own skin, per MASI region, in CIELAB.

1. Normal skin is estimated locally: the face's skin is cut into cells about a quarter of the face
   wide; each cell's upper percentile of L* (and the matching b*) is the skin there, so uneven
   lighting and shading move the reference with them while darker patches (a minority of each
   cell) do not. Cells without enough skin take the face's value.
2. A pixel is hyperpigmented when it is darker than that local reference by more than `k_sigma`
   robust standard deviations of the face's own skin and at least `min_delta_L` L* units, and
   browner: its b*/L* exceeds the reference's by `min_browning` (melanin absorbs blue most, so it
   raises b* relative to L*; shade lowers both together). The map is smoothed at a scale tied to the
   face so it outlines patches, not pores.
3. Per region: the pigmented share of its skin (-> MASI A by the area bands), the contrast of its
   dark spots against the skin around them in L* (-> D, as a percentage of the person's median
   skin L*, a Weber contrast that holds across skin tones), the mean delta ITA of the pigmented
   pixels, and how confluent and even the pigment is (-> H).

Calibration (see docs/regions.md): the pixel thresholds and the H cut points were fitted on the
cartoon set (`CARTOON`, `benchmarks/regions_synthetic.py --fit`); for photos (`DEFAULT`) the
minimum area share and the D cut points were refitted on real faces with painted melasma
(`benchmarks/machine_rater.py --fit`: semi-synthetic set, training bases only; true items known).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import cv2
import numpy as np
from PIL import Image

from melasma.masi import REGION_WEIGHTS, REGIONS, region_score
from melasma.regions.color import ita, to_lab
from melasma.regions.find import analysis_size, as_rgb, resize_mask, resize_rgb
from melasma.regions.types import FaceRegions, Region, RegionMeasure, RegionMeasures

MAD_SCALE = 1.4826
SUBSAMPLE = 3  # percentiles of a cell read every third skin pixel
#: MASI area bands as upper bounds of the pigmented share: A = 1 below 10 %, 2 below 30 %, ...
AREA_UPPER: tuple[float, ...] = (0.10, 0.30, 0.50, 0.70, 0.90)


@dataclass(frozen=True)
class PigmentSettings:
    """Thresholds of the pigment measure (defaults: `DEFAULT`)."""

    cells: int = 4  # cells across the face for the local normal-skin reference
    reference_percentile: float = 95.0  # of L* within a cell = that cell's normal skin
    k_sigma: float = 1.0  # darker than the reference by this many robust SDs of the face's L* ...
    min_delta_L: float = 4.0  # ... and by at least this many L* units
    min_browning: float = 0.05  # ... and its b*/L* above the reference's by this share (not shade)
    smooth: float = 0.04  # smoothing of the mask, share of the face size
    patch_scale: float = 0.003  # patch contrast: a spot at this scale (share of the face size) ...
    surround_scale: float = 0.03  # ... against the skin around it at this scale
    contrast_percentile: float = 90.0  # a region's delta L*: this percentile of its patch contrast
    min_share: float = 0.02  # a region with less pigmented skin than this scores A = 0
    darkness_cuts: tuple[float, ...] = (8.99, 15.47, 21.77)  # 100 delta L* / skin L* for D >= 2, 3, 4
    homogeneity_cuts: tuple[float, ...] = (0.032, 0.097, 0.134)  # homogeneity for H >= 2, 3, 4


#: Fitted on the cartoon set: `python benchmarks/regions_synthetic.py --fit --seed 0 --n 150`.
CARTOON = PigmentSettings()
#: For photos: CARTOON with min_share and the D cuts refitted on the semi-synthetic training bases
#: (`python benchmarks/machine_rater.py --fit --n 240 --seed 11`); painted pigment on real skin is
#: subtler than the cartoons' (Weber contrast 4.6-8.4 % for D 2-4 instead of 9-22 %).
DEFAULT = replace(CARTOON, min_share=0.15, darkness_cuts=(4.61, 6.01, 8.35))


def area_item(share: float, min_share: float) -> int:
    """MASI A (0-6) from the pigmented share of a region, by the MASI area bands."""
    if share < min_share:
        return 0
    return 1 + int(np.searchsorted(AREA_UPPER, share, side="right"))


def cut_item(value: float, cuts: tuple[float, ...]) -> int:
    """How many of the ascending `cuts` `value` reaches (an item above its lowest grade)."""
    return int(np.searchsorted(cuts, value, side="right"))


def _local_reference(lab: np.ndarray, skin: np.ndarray, settings: PigmentSettings) -> tuple[np.ndarray, np.ndarray]:
    """Normal-skin L* and b* at every pixel of a face crop, from per-cell upper percentiles."""
    height, width = skin.shape
    cell = max(4, round(max(height, width) / settings.cells))
    rows, cols = -(-height // cell), -(-width // cell)
    lightness, b_star = lab[..., 0], lab[..., 2]
    global_L = float(np.percentile(lightness[skin], settings.reference_percentile))
    global_b = float(np.median(b_star[skin & (lightness >= global_L - 3)])) if skin.any() else 0.0
    grid_L = np.full((rows, cols), global_L, np.float32)
    grid_b = np.full((rows, cols), global_b, np.float32)
    for row in range(rows):
        for col in range(cols):
            window = np.s_[row * cell : (row + 1) * cell, col * cell : (col + 1) * cell]
            inside = skin[window]
            if inside.sum() >= 0.15 * cell * cell:
                values = lightness[window][inside][::SUBSAMPLE]
                level = float(np.percentile(values, settings.reference_percentile))
                grid_L[row, col] = level
                grid_b[row, col] = float(np.median(b_star[window][inside & (lightness[window] >= level - 3)]))
    size = (cols * cell, rows * cell)
    ref_L = cv2.resize(grid_L, size, interpolation=cv2.INTER_LINEAR)[:height, :width]
    ref_b = cv2.resize(grid_b, size, interpolation=cv2.INTER_LINEAR)[:height, :width]
    return ref_L, ref_b


def patch_homogeneity(pigment: np.ndarray, contrast: np.ndarray) -> float:
    """0-1: the largest connected patch's share of the pigment times the evenness of its depth."""
    count, labels = cv2.connectedComponents(pigment.astype(np.uint8), connectivity=8)
    if count <= 1:
        return 0.0
    sizes = np.bincount(labels[pigment])[1:]
    largest = float(sizes.max() / sizes.sum())
    depth = contrast[pigment]
    evenness = 1.0 - min(float(np.std(depth) / max(float(np.mean(depth)), 1e-6)), 1.0)
    return largest * evenness


def _masked_blur(values: np.ndarray, skin: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian mean of `values` over skin pixels only (non-skin neither counts nor bleeds in)."""
    weight: np.ndarray = skin.astype(np.float32)
    total: np.ndarray = np.where(skin, values, 0).astype(np.float32)
    height, width = skin.shape
    step = int(sigma // 3)  # wide blurs run on a smaller copy: the result is smooth at that scale
    if step > 1:
        small = (max(1, width // step), max(1, height // step))
        weight = cv2.resize(weight, small, interpolation=cv2.INTER_AREA)
        total = cv2.resize(total, small, interpolation=cv2.INTER_AREA)
        sigma = sigma * small[0] / width
    weight = cv2.GaussianBlur(weight, (0, 0), sigma)
    total = cv2.GaussianBlur(total, (0, 0), sigma)
    blurred: np.ndarray = total / np.maximum(weight, 1e-3)
    if step > 1:
        blurred = cv2.resize(blurred, (width, height), interpolation=cv2.INTER_LINEAR)
    return blurred


def _maps(lab: np.ndarray, skin: np.ndarray, settings: PigmentSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pigment bool mask, patch contrast in L*, delta ITA) of a CIELAB image and its skin mask.

    The mask marks skin darker than the local normal-skin reference (smoothed at `smooth`); the
    patch contrast is how much darker each spot is than the skin right around it (a band-pass of
    L*, `patch_scale` against `surround_scale`), positive = darker; delta ITA is reference minus pixel.
    """
    height, width = skin.shape
    contrast = np.zeros((height, width), np.float32)
    delta_ita = np.zeros((height, width), np.float32)
    pigment = np.zeros((height, width), bool)
    if not skin.any():
        return pigment, contrast, delta_ita
    ys, xs = np.nonzero(skin)
    box = np.s_[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    crop_lab, crop_skin = lab[box], skin[box]
    face = max(crop_skin.shape)
    lightness = crop_lab[..., 0]
    ref_L, ref_b = _local_reference(crop_lab, crop_skin, settings)
    smooth_L = _masked_blur(lightness, crop_skin, max(settings.smooth * face, 0.5))
    smooth_b = _masked_blur(crop_lab[..., 2], crop_skin, max(settings.smooth * face, 0.5))
    darker = ref_L - smooth_L
    centre = float(np.median(darker[crop_skin]))
    sigma = MAD_SCALE * float(np.median(np.abs(darker[crop_skin] - centre)))
    # melanin absorbs blue most: pigment raises b* relative to L*, while shade lowers both together
    ref_ratio = ref_b / np.maximum(ref_L, 1.0)
    browner = smooth_b / np.maximum(smooth_L, 1.0) - ref_ratio > settings.min_browning * ref_ratio
    found = crop_skin & browner & (darker > max(settings.k_sigma * sigma, settings.min_delta_L))
    patch = _masked_blur(lightness, crop_skin, max(settings.patch_scale * face, 0.5))
    surround = _masked_blur(lightness, crop_skin, max(settings.surround_scale * face, 1.0))
    contrast[box] = np.where(crop_skin, np.clip(surround - patch, 0, None), 0)
    delta_ita[box] = np.where(crop_skin, ita(ref_L, ref_b) - ita(smooth_L, crop_lab[..., 2]), 0)
    pigment[box] = found
    return pigment, contrast, delta_ita


def measure_regions(regions: FaceRegions, measure_one: Callable[[str, Region], RegionMeasure], *,
                    pigment_mask: np.ndarray, skin_L: float, skin_ITA: float) -> RegionMeasures:
    """`measure_one` on every visible region, the hidden ones listed with their reason (they add 0),
    and the image-derived MASI and mMASI of the items: the frame of every reading of the regions."""
    measures: dict[str, RegionMeasure] = {}
    not_measured: dict[str, str] = {}
    masi = mmasi = 0.0
    for name in REGIONS:
        region = regions.regions[name]
        if not region.visible:
            not_measured[name] = region.reason
            continue
        measure = measures[name] = measure_one(name, region)
        masi += REGION_WEIGHTS[name] * region_score(measure.area_item, measure.darkness_item,
                                                    measure.homogeneity_item)
        mmasi += REGION_WEIGHTS[name] * measure.area_item * measure.darkness_item
    return RegionMeasures(regions=measures, masi=round(masi, 4), mmasi=round(mmasi, 4), pigment_mask=pigment_mask,
                          skin_L=float(skin_L), skin_ITA=float(skin_ITA), not_measured=not_measured)


def measure_pigment(
    image: Image.Image | np.ndarray, regions: FaceRegions, settings: PigmentSettings = DEFAULT
) -> RegionMeasures:
    """Per visible region: pigmented share, delta L*, delta ITA, homogeneity, A/D/H estimates;
    plus the image-derived MASI and mMASI (hidden regions add 0 and are listed in `not_measured`).

    Computed on a copy at most `find.ANALYSIS_SIDE` px long (as `find_regions` is); the pigment mask
    is returned at the photo's resolution."""
    rgb = as_rgb(image)
    full = (rgb.shape[1], rgb.shape[0])
    size = analysis_size(full)
    lab = to_lab(resize_rgb(rgb, size))
    skin = resize_mask(regions.skin_mask, size)
    pigment, delta_L, delta_ita = _maps(lab, skin, settings)
    if skin.any():
        skin_L = float(np.median(lab[..., 0][skin]))
        skin_ITA = float(np.median(ita(lab[..., 0][skin], lab[..., 2][skin])))
    else:
        skin_L = skin_ITA = float("nan")

    def measure_one(name: str, region: Region) -> RegionMeasure:
        inside = resize_mask(region.mask, size)
        pigmented = pigment & inside
        share = float(pigmented.sum() / max(int(inside.sum()), 1))
        area = area_item(share, settings.min_share)
        if not area:
            return RegionMeasure(name, share, 0.0, 0.0, 0.0, 0, 0, 0)
        dark_L = float(np.percentile(delta_L[inside], settings.contrast_percentile))
        dark_ita = float(delta_ita[pigmented].mean()) if pigmented.any() else 0.0
        homogeneity = patch_homogeneity(pigmented, delta_L)
        return RegionMeasure(name, share, dark_L, dark_ita, homogeneity, area,
                             1 + cut_item(100 * dark_L / max(skin_L, 1.0), settings.darkness_cuts),
                             1 + cut_item(homogeneity, settings.homogeneity_cuts))

    return measure_regions(regions, measure_one, pigment_mask=resize_mask(pigment, full) & regions.skin_mask,
                           skin_L=skin_L, skin_ITA=skin_ITA)
