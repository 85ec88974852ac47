"""Colour conversions for skin measures: sRGB -> CIELAB (D65) and the individual typology angle."""

from __future__ import annotations

import cv2
import numpy as np


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (h, w, 3) float32 of an RGB uint8 photo: L* 0-100, a*, b* about -128..127."""
    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def ita(lightness: np.ndarray, b_star: np.ndarray) -> np.ndarray:
    """Individual typology angle in degrees: atan((L* - 50) / b*) (Chardon 1991); > 55 very light,
    < -30 dark skin. Uses atan2 so b* near 0 stays finite."""
    return np.degrees(np.arctan2(lightness - 50.0, np.maximum(b_star, 1e-3)))


def is_grayscale(rgb: np.ndarray, tolerance: int = 3) -> bool:
    """True when the three channels agree everywhere (a black-and-white photo stored as RGB)."""
    channels = rgb.astype(np.int16)
    return bool(
        np.abs(channels[..., 0] - channels[..., 1]).max() <= tolerance
        and np.abs(channels[..., 1] - channels[..., 2]).max() <= tolerance
    )
