"""Augmented views of a training photo: geometry and, above all, colour and skin tone.

The photos with melasma are mostly darker, clinical close-ups; a model that learnt "darker skin =
lesion" would pass a pixel test inside those photos and fail on a darker healthy face. So every view
changes white balance, exposure (a gamma on the whole photo, which moves skin tone by tens of ITA
degrees), contrast and saturation, besides flips and crops. Lesion and skin masks follow the geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from melasma.lesions.photos import LesionPhoto


@dataclass(frozen=True)
class View:
    """One view of a photo at the model's input size, with its masks at the same size."""

    rgb: np.ndarray  # uint8 (size, size, 3)
    lesion: np.ndarray  # float32 (size, size), 0/1
    skin: np.ndarray  # float32 (size, size), 0/1


def _square(photo: LesionPhoto, box: tuple[int, int, int, int], size: int, flip: bool) -> View:
    x0, y0, x1, y1 = box

    def crop(array: np.ndarray, interpolation: int) -> np.ndarray:
        out = cv2.resize(array[y0:y1, x0:x1], (size, size), interpolation=interpolation)
        return out[:, ::-1] if flip else out

    return View(
        rgb=np.ascontiguousarray(crop(photo.rgb, cv2.INTER_AREA)),
        lesion=np.ascontiguousarray(crop(photo.lesion.astype(np.float32), cv2.INTER_LINEAR)),
        skin=np.ascontiguousarray(crop(photo.skin.astype(np.float32), cv2.INTER_LINEAR)),
    )


def plain_view(photo: LesionPhoto, size: int) -> View:
    """The whole photo squashed to `size` x `size`, colours untouched (what prediction sees)."""
    height, width = photo.rgb.shape[:2]
    return _square(photo, (0, 0, width, height), size, flip=False)


def recolour(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """White balance, exposure (gamma), contrast and saturation changed at random."""
    x = rgb.astype(np.float32) / 255
    x = x ** rng.uniform(0.6, 1.6)  # exposure and skin tone: lighter or darker by tens of ITA degrees
    x = x * rng.normal(1.0, 0.07, size=3).astype(np.float32)  # white balance
    mean = x.mean(axis=(0, 1), keepdims=True)
    x = (x - mean) * rng.uniform(0.75, 1.3) + mean  # contrast
    grey = x.mean(axis=2, keepdims=True)
    x = (x - grey) * rng.uniform(0.6, 1.4) + grey  # saturation
    return np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)


def random_view(photo: LesionPhoto, size: int, rng: np.random.Generator) -> View:
    """A random square crop (60-100 % of the short side), maybe mirrored, recoloured."""
    height, width = photo.rgb.shape[:2]
    side = int(min(height, width) * rng.uniform(0.6, 1.0))
    x0 = int(rng.integers(0, width - side + 1))
    y0 = int(rng.integers(0, height - side + 1))
    view = _square(photo, (x0, y0, x0 + side, y0 + side), size, flip=bool(rng.random() < 0.5))
    return View(recolour(view.rgb, rng), view.lesion, view.skin)
