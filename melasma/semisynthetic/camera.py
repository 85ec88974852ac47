"""Scene and camera effects drawn independently of the label, so that a model cannot take them for
melasma: neutral shadows, a few moles, a clinical flash look, blur and JPEG compression.

Shadows and moles are dark patches that are not melasma (a shadow darkens all channels alike and
ignores the regions; a mole is small, round and isolated). The flash look (brighter, harder
contrast, less saturated) and strong JPEG match the clinical photos the model is measured on.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage

#: Probabilities per image: a cast shadow, moles, the flash look, blur, a down-and-up resample.
SHADOW, MOLES, FLASH, BLUR, RESAMPLE = 0.4, 0.35, 0.4, 0.5, 0.3
#: JPEG quality range (the evaluation photos are web exports, some heavily compressed).
QUALITY = (35, 95)


def shadow(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """A soft neutral shadow over a random half-plane or ellipse (all channels x 0.6-0.9)."""
    height, width = image.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy, xx = yy / height - rng.uniform(0.2, 0.8), xx / width - rng.uniform(0.2, 0.8)
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * np.pi)
        inside = (np.cos(angle) * xx + np.sin(angle) * yy) > 0
    else:
        a, b = rng.uniform(0.1, 0.35, 2)
        inside = (xx / a) ** 2 + (yy / b) ** 2 < 1
    soft = ndimage.gaussian_filter(inside.astype(np.float32), rng.uniform(0.02, 0.08) * max(height, width))
    factor = 1 - rng.uniform(0.1, 0.4) * soft
    return np.clip(np.rint(image * factor[..., None]), 0, 255).astype(np.uint8)


def moles(rng: np.random.Generator, image: np.ndarray, face: np.ndarray) -> np.ndarray:
    """One to four small, round, dark-brown spots on the face's skin."""
    rows, cols = np.nonzero(face)
    if not len(rows):
        return image
    out = image.astype(np.float32)
    side = max(image.shape[:2])
    yy, xx = np.mgrid[0: image.shape[0], 0: image.shape[1]].astype(np.float32)
    for _ in range(int(rng.integers(1, 5))):
        pick = int(rng.integers(len(rows)))
        radius = rng.uniform(0.002, 0.005) * side
        spot = np.exp(-(((yy - rows[pick]) ** 2 + (xx - cols[pick]) ** 2) / (2 * radius ** 2)))
        out *= 1 - spot[..., None] * rng.uniform(0.3, 0.6) * np.array([0.75, 0.9, 1.0], np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def flash(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """A clinical flash look: brighter, harder contrast, less saturated."""
    values = image.astype(np.float32) / 255.0
    grey = values @ np.array([0.299, 0.587, 0.114], np.float32)
    values = grey[..., None] + (values - grey[..., None]) * rng.uniform(0.6, 0.95)
    values = (values - 0.5) * rng.uniform(1.05, 1.3) + 0.5 + rng.uniform(0.0, 0.08)
    return np.clip(np.rint(values * 255), 0, 255).astype(np.uint8)


def degrade(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Blur (Gaussian, up to 1.2 px) and a down-and-up resample, each by chance."""
    photo = Image.fromarray(image)
    if rng.random() < BLUR:
        photo = photo.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    if rng.random() < RESAMPLE:
        small = max(16, round(photo.width * rng.uniform(0.4, 0.8)))
        photo = photo.resize((small, small), Image.Resampling.BILINEAR).resize(photo.size, Image.Resampling.BICUBIC)
    return np.asarray(photo)


def scene(rng: np.random.Generator, image: np.ndarray, face: np.ndarray) -> np.ndarray:
    """Before the crop: a shadow and moles, each by chance."""
    if rng.random() < SHADOW:
        image = shadow(rng, image)
    if rng.random() < MOLES:
        image = moles(rng, image, face)
    return image


def camera(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """After the crop and relighting: the flash look by chance, then blur and resampling."""
    if rng.random() < FLASH:
        image = flash(rng, image)
    return degrade(rng, image)


def jpeg(rng: np.random.Generator, image: np.ndarray) -> bytes:
    """The image as JPEG bytes at a quality drawn from `QUALITY`."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(rng.integers(QUALITY[0], QUALITY[1] + 1)))
    return buffer.getvalue()
