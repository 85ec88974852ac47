"""Label-independent scene and camera effects of the semi-synthetic generator (no real photos)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from melasma.data.tone import rgb_to_lab
from melasma.semisynthetic.camera import QUALITY, camera, flash, jpeg, moles, shadow

SKIN = np.full((64, 64, 3), (200, 150, 120), np.uint8)


def test_shadow_darkens_without_turning_brown() -> None:
    shaded = shadow(np.random.default_rng(1), SKIN).astype(float)
    darker = shaded[..., 1] < 149
    assert darker.any()
    ratios = shaded[darker] / np.array([200, 150, 120])
    assert np.ptp(ratios, axis=1).max() < 0.02  # all channels scaled alike: neutral, unlike pigment


def test_moles_are_small_and_stay_on_the_face() -> None:
    face = np.zeros((64, 64), bool)
    face[16:48, 16:48] = True
    spotted = moles(np.random.default_rng(2), SKIN, face)
    changed = np.abs(spotted.astype(int) - SKIN.astype(int)).max(-1) > 2
    assert changed.any()
    assert changed.mean() < 0.05  # a few small spots, not a patch
    assert not changed[:8].any() and not changed[:, :8].any()  # far from the face: untouched


def test_flash_is_less_saturated() -> None:
    before = rgb_to_lab(SKIN)[0, 0]
    after = rgb_to_lab(flash(np.random.default_rng(3), SKIN))[0, 0]
    assert np.hypot(*after[1:]) < np.hypot(*before[1:])


def test_camera_keeps_the_size_and_jpeg_quality_is_drawn() -> None:
    rng = np.random.default_rng(4)
    noisy = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert camera(rng, noisy).shape == noisy.shape
    sizes = {len(jpeg(np.random.default_rng(seed), noisy)) for seed in range(6)}
    assert len(sizes) > 1  # different qualities give different files
    with Image.open(io.BytesIO(jpeg(rng, noisy))) as decoded:
        assert decoded.format == "JPEG" and decoded.size == (64, 64)
    assert 1 <= QUALITY[0] < QUALITY[1] <= 100


@pytest.mark.parametrize("seed", [0, 1])
def test_effects_are_deterministic_per_seed(seed: int) -> None:
    face = np.ones((64, 64), bool)
    first = moles(np.random.default_rng(seed), shadow(np.random.default_rng(seed), SKIN), face)
    again = moles(np.random.default_rng(seed), shadow(np.random.default_rng(seed), SKIN), face)
    assert np.array_equal(first, again)
