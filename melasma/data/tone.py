"""Skin tone: CIELAB conversion, a colour-rule skin mask and the individual typology angle (ITA).

ITA = atan((L* - 50) / b*) in degrees (Chardon et al. 1991): > 55 very light, 41-55 light,
28-41 intermediate, 10-28 tan, -30-10 brown, < -30 dark. `shift_ita` moves a face's skin to a
target ITA by changing L* and b* along the ITA circle while keeping the skin's own texture.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_WHITE = np.array([0.95047, 1.0, 1.08883])  # D65
_RGB_TO_XYZ = np.array([
    [0.4124564, 0.3575761, 0.1804375],
    [0.2126729, 0.7151522, 0.0721750],
    [0.0193339, 0.1191920, 0.9503041],
])
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_EPS = 216 / 24389
_KAPPA = 24389 / 27


def _to_linear(srgb: np.ndarray) -> np.ndarray:
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def _to_srgb(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)


_LINEAR_LUT = _to_linear(np.arange(256, dtype=np.float64) / 255.0).astype(np.float32)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 or [0, 1] float RGB (..., 3) -> CIELAB (..., 3), D65 white, float32."""
    if rgb.dtype == np.uint8:
        linear = _LINEAR_LUT[rgb]
    else:
        linear = _to_linear(rgb.astype(np.float32))
    xyz = linear @ (_RGB_TO_XYZ.T / _WHITE).astype(np.float32)
    f = np.where(xyz > _EPS, np.cbrt(xyz), (_KAPPA * xyz + 16) / 116)
    lab = np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)
    return lab.astype(np.float32)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB (..., 3) -> uint8 sRGB (..., 3), clipped to the gamut."""
    fy = (lab[..., 0] + 16) / 116
    fx, fz = fy + lab[..., 1] / 500, fy - lab[..., 2] / 200
    f = np.stack([fx, fy, fz], -1)
    xyz = np.where(f ** 3 > _EPS, f ** 3, (116 * f - 16) / _KAPPA) * _WHITE
    return np.rint(_to_srgb(xyz @ _XYZ_TO_RGB.T) * 255).astype(np.uint8)


def ita(lab: np.ndarray) -> np.ndarray:
    """ITA in degrees of CIELAB values (..., 3)."""
    return np.degrees(np.arctan2(lab[..., 0] - 50, lab[..., 2]))


def skin_mask(rgb: np.ndarray) -> np.ndarray:
    """Skin-coloured pixels by the YCrCb rule (Cr 133-180, Cb 77-135, Y > 30), holes filled and
    specks removed; the whole image when under 5 % of it qualifies (no usable skin colour)."""
    values = rgb.astype(np.float32)
    r, g, b = values[..., 0], values[..., 1], values[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cr = (r - y) * 0.713 + 128
    cb = (b - y) * 0.564 + 128
    mask = (cr >= 133) & (cr <= 180) & (cb >= 77) & (cb <= 135) & (y > 30)
    mask = ndimage.binary_opening(mask, iterations=2)
    mask = ndimage.binary_fill_holes(ndimage.binary_closing(mask, iterations=3))
    return mask if mask.mean() >= 0.05 else np.ones(mask.shape, bool)


def mean_ita(rgb: np.ndarray, mask: np.ndarray | None = None) -> float:
    """The ITA of the mean CIELAB colour of the skin (`mask`, default `skin_mask(rgb)`)."""
    region = skin_mask(rgb) if mask is None else mask
    return float(ita(rgb_to_lab(rgb[region]).mean(axis=0)))


def skin_locus(target: float) -> tuple[float, float]:
    """(L*, b*) of typical skin at ITA `target`: b* peaks near 18 at tan skin and falls a little
    towards very light and very dark skin (Del Bino et al. 2006), L* follows from the angle."""
    b_star = float(np.clip(18 - 3 * abs(target - 20) / 40, 13, 18))
    return 50 + b_star * float(np.tan(np.radians(target))), b_star


def shift_ita(
    rgb: np.ndarray, mask: np.ndarray, target: float, reference: np.ndarray | None = None, feather: float = 3.0
) -> np.ndarray:
    """`rgb` (uint8) with the skin in `mask` moved to mean ITA `target` (degrees, -60 to 70).

    The mean colour of the `reference` skin (default: `mask`) moves to the skin locus point of the
    target angle: every pixel gets the same L* offset and a proportional a*/b* change, so texture
    and shading remain; a second pass corrects what gamut clipping took. The mask is feathered
    (Gaussian, `feather` px) so no edge appears at the face's outline.
    """
    lab = rgb_to_lab(rgb)
    region = mask if reference is None else reference
    if not region.any():
        return rgb.copy()
    weight = ndimage.gaussian_filter(mask.astype(np.float32), feather)[..., None]
    goal = float(np.clip(target, -60, 70))
    inside = lab[region], weight[region]
    aim = goal
    for _ in range(2):  # the second pass corrects what gamut clipping took from the first
        offset, scales = _shift(inside[0], aim)
        reached = float(ita(rgb_to_lab(lab_to_rgb(_blend(inside[0], inside[1], offset, scales))).mean(axis=0)))
        aim = float(np.clip(aim + goal - reached, -70, 80))
    offset, scales = _shift(inside[0], aim)
    return lab_to_rgb(_blend(lab, weight, offset, scales))


def _shift(skin: np.ndarray, target: float) -> tuple[float, np.ndarray]:
    """(L* offset, per-channel scales) that move the mean of `skin` to the locus at `target`."""
    l_mean, _, b_mean = skin.mean(axis=0)
    l_new, b_new = skin_locus(target)
    chroma = b_new / max(float(b_mean), 5.0)
    return float(l_new - l_mean), np.array([1.0, np.clip(chroma, 0.8, 1.6), chroma], np.float32)


def _blend(lab: np.ndarray, weight: np.ndarray, offset: float, scales: np.ndarray) -> np.ndarray:
    shifted = lab * scales
    shifted[..., 0] += offset
    return lab * (1 - weight) + shifted * weight
