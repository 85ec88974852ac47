"""Paint melasma into the MASI regions of a real face photo, with known area, darkness, homogeneity.

Per region, a pigment field mixes one confluent patch (weight = homogeneity), blotchy and
reticulated noise at two scales (weight = 1 - homogeneity), freckle-sized speckle (so edges break
into macules) and the skin's own texture (its darker pores and creases take pigment first). The
field's top `share` of the region's skin (share inside the area score's band, as in
`melasma.data.synthetic.AREA_SHARES`) becomes the lesion; its edges are softened, its depth varies
more when homogeneity is low and is mottled at macule scale. Pigment multiplies the person's own
colour in linear RGB by a melanin-like transmittance (blue absorbed most, red least), so lesions
are a darker brown of that skin and keep its texture and shading.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from melasma.data.synthetic import AREA_SHARES
from melasma.data.tone import rgb_to_lab

#: Clinical patterns (Sanchez et al. 1981 / Tamega 2013): which MASI regions carry pigment.
PATTERNS: dict[str, tuple[str, ...]] = {
    "centrofacial": ("forehead", "right_malar", "left_malar", "chin"),
    "malar": ("right_malar", "left_malar"),
    "mandibular": ("chin",),
}
#: Melanin-like absorption per channel (R, G, B), relative to green.
ABSORPTION = np.array([0.72, 1.0, 1.32], np.float32)
#: Optical depth per darkness point at full strength (green): D 1 ~ 4 L* units, D 4 ~ 15 on mid skin.
DEPTH_PER_POINT = 0.25

Items = Mapping[str, int]


@dataclass(frozen=True)
class Painted:
    """The painted photo (uint8 RGB), the union lesion mask and the per-region lesion masks."""

    image: np.ndarray
    lesion: np.ndarray
    regions: dict[str, np.ndarray]


def _noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Unit-variance Gaussian-smoothed noise of correlation length ~`sigma` px: smoothed on a grid
    `sigma / 2` times coarser, then bicubically upsampled (the same field, ~30x cheaper)."""
    step = max(1, int(sigma // 2))
    coarse = (shape[0] // step + 2, shape[1] // step + 2)
    field = ndimage.gaussian_filter(rng.standard_normal(coarse).astype(np.float32), sigma / step)
    fine = Image.fromarray(field).resize((coarse[1] * step, coarse[0] * step), Image.Resampling.BICUBIC)
    field = np.asarray(fine)[: shape[0], : shape[1]]
    return (field - field.mean()) / (field.std() + 1e-6)


def _zscore(values: np.ndarray, inside: np.ndarray) -> np.ndarray:
    selected = values[inside]
    return (values - selected.mean()) / (selected.std() + 1e-6)


def skin_texture(image: np.ndarray) -> np.ndarray:
    """High-pass L* (fine detail minus its blur, ~2 % of the side): negative in pores and creases."""
    lightness = rgb_to_lab(image)[..., 0]
    sigma = max(1.0, 0.02 * max(image.shape[:2]))
    return lightness - ndimage.gaussian_filter(lightness, sigma)


def lesion_field(
    rng: np.random.Generator, inside: np.ndarray, texture: np.ndarray, homogeneity: int
) -> np.ndarray:
    """The pigment ranking inside one region: high values become lesion first."""
    side = max(inside.shape)
    h = homogeneity / 4
    rows, cols = np.nonzero(inside)
    centre_r = rows.mean() + rng.uniform(-0.4, 0.4) * (rows.std() + 1)
    centre_c = cols.mean() + rng.uniform(-0.4, 0.4) * (cols.std() + 1)
    yy, xx = np.mgrid[0: inside.shape[0], 0: inside.shape[1]].astype(np.float32)
    blob = -(((yy - centre_r) / (rows.std() + 1)) ** 2 + ((xx - centre_c) / (cols.std() + 1)) ** 2)
    blotchy = _noise(rng, inside.shape, 0.025 * side) + 0.5 * _noise(rng, inside.shape, 0.01 * side)
    reticulated = -np.abs(_noise(rng, inside.shape, 0.012 * side))  # a network of ridges
    speckled = _noise(rng, inside.shape, 0.005 * side)  # freckle-sized macules at the edges
    mix = rng.uniform(0.2, 0.8)
    irregular = (1 - mix) * _zscore(blotchy, inside) + mix * _zscore(reticulated, inside)
    return (h * _zscore(blob, inside) + (1.15 - h) * irregular + 0.5 * _zscore(speckled, inside)
            - 0.35 * _zscore(texture, inside))


def paint_region(
    rng: np.random.Generator, inside: np.ndarray, texture: np.ndarray, items: Items
) -> tuple[np.ndarray, np.ndarray]:
    """(hard lesion mask, optical depth map) of one region for its area/darkness/homogeneity."""
    empty = np.zeros(inside.shape, np.float32)
    if items["area"] == 0 or items["darkness"] == 0 or inside.sum() < 4:
        return np.zeros(inside.shape, bool), empty
    share = rng.uniform(*AREA_SHARES[items["area"]])
    field = lesion_field(rng, inside, texture, items["homogeneity"])
    threshold = np.quantile(field[inside], 1 - share) if share < 1 else -np.inf
    mask = inside & (field >= threshold)
    side = max(inside.shape)
    # graded edges: depth rises over half a field unit around the threshold, then is blurred
    ramp = np.clip((field - threshold) / 0.5 + 0.5, 0, 1) if share < 1 else np.ones(inside.shape, np.float32)
    soft = ndimage.gaussian_filter((ramp * inside).astype(np.float32), 0.008 * side + 0.5)
    soft *= np.clip(2 * ndimage.gaussian_filter(inside.astype(np.float32), 0.006 * side + 0.5), 0, 1)
    noise = np.clip(_noise(rng, inside.shape, 0.015 * side) * 0.4 + 0.5, 0, 1)
    variation = 1 - (1 - items["homogeneity"] / 4) * 0.6 * noise
    # mottling: clinical lesions are a mesh of small macules, not an even stain
    mottle = np.clip(_noise(rng, inside.shape, 0.004 * side) * 0.5 + 0.5, 0, 1)
    variation *= 1 - rng.uniform(0.2, 0.6) * (1 - 0.5 * items["homogeneity"] / 4) * mottle
    return mask, soft * variation * items["darkness"] * DEPTH_PER_POINT


def apply_pigment(image: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Darken `image` (uint8 RGB) by an optical depth map: linear RGB x exp(-depth x absorption)."""
    srgb = image.astype(np.float32) / 255.0
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    linear *= np.exp(-depth[..., None] * ABSORPTION)
    out = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * np.clip(linear, 0, 1) ** (1 / 2.4) - 0.055)
    return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)


def paint(
    rng: np.random.Generator, image: np.ndarray, regions: Mapping[str, np.ndarray], scores: Mapping[str, Items]
) -> Painted:
    """Paint every region with area > 0 in `scores` ({region: {area, darkness, homogeneity}})."""
    texture = skin_texture(image)
    depth = np.zeros(image.shape[:2], np.float32)
    masks: dict[str, np.ndarray] = {}
    for name, inside in regions.items():
        mask, region_depth = paint_region(rng, inside, texture, scores[name])
        masks[name] = mask
        depth = np.maximum(depth, region_depth)
    lesion = np.zeros(image.shape[:2], bool)
    for mask in masks.values():
        lesion |= mask
    return Painted(apply_pigment(image, depth), lesion, masks)
