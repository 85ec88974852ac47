"""Which pixels inside the face are skin: a per-photo CIELAB model of the person's own skin.

The reference is the face outline minus eyes, brows, lips and nostrils; its robust centre (median)
and spread (MAD) in a*, b* define skin colour. Pixels far from it in chroma (hair, privacy bars,
jewellery, background) or much darker than any skin in the photo (bars, deep shadow, black hair)
are not skin. Hyperpigmentation stays in: it shifts L* far more than a*, b*.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: robust standard deviations of a*, b* allowed around the reference, with a floor in Lab units
CHROMA_SIGMAS = 3.5
MIN_CHROMA_SPREAD = 2.5
#: a pixel darker than this share of the reference median L* is not skin
MIN_LIGHTNESS_SHARE = 0.45
#: a pixel with less chroma than this share of the reference chroma is not skin (grey, black, white)
MIN_CHROMA_SHARE = 0.3
MAD_SCALE = 1.4826


@dataclass(frozen=True)
class SkinModel:
    """Robust centre and spread of the person's skin in CIELAB."""

    lightness: float  # median L*
    a: float
    b: float
    spread_a: float
    spread_b: float
    colour: bool  # False for a grayscale photo: only lightness is used

    def mask(self, lab: np.ndarray) -> np.ndarray:
        """Boolean mask of the skin-coloured pixels of a CIELAB image."""
        lightness, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
        skin = lightness >= MIN_LIGHTNESS_SHARE * self.lightness
        if self.colour:
            distance = ((a - self.a) / self.spread_a) ** 2 + ((b - self.b) / self.spread_b) ** 2
            chroma = np.hypot(a, b)
            skin &= distance <= CHROMA_SIGMAS**2
            skin &= chroma >= MIN_CHROMA_SHARE * float(np.hypot(self.a, self.b))
        return skin


def _robust(values: np.ndarray) -> tuple[float, float]:
    median = float(np.median(values))
    return median, MAD_SCALE * float(np.median(np.abs(values - median)))


def fit_skin(lab: np.ndarray, reference: np.ndarray, colour: bool) -> SkinModel:
    """The skin model from the pixels of `reference` (bool mask, at least one pixel)."""
    pixels = lab[reference]
    lightness, _ = _robust(pixels[:, 0])
    a, spread_a = _robust(pixels[:, 1])
    b, spread_b = _robust(pixels[:, 2])
    return SkinModel(
        lightness=lightness,
        a=a,
        b=b,
        spread_a=max(spread_a, MIN_CHROMA_SPREAD),
        spread_b=max(spread_b, MIN_CHROMA_SPREAD),
        colour=colour,
    )
