"""melasma.regions.find_regions on real photos (../shared roboflow set) and on bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from melasma.masi import REGIONS
from melasma.regions import FaceNotFound, FaceRegions, find_regions

pytestmark = pytest.mark.realdata


def _photo(folder: Path, prefix: str) -> Image.Image:
    (path,) = sorted(folder.glob(f"{prefix}_jpg.rf.*.jpg"))
    return Image.open(path).convert("RGB")


@pytest.fixture(scope="module")
def frontal(roboflow_dir: Path) -> Image.Image:
    """A frontal clinical photo with black privacy bars over the eyes."""
    return _photo(roboflow_dir / "melasma", "Melasma25")


def test_frontal_photo_has_four_visible_regions_in_the_right_places(frontal: Image.Image) -> None:
    found = find_regions(frontal)
    assert isinstance(found, FaceRegions)
    assert list(found.regions) == list(REGIONS)
    assert found.image_size == frontal.size
    assert found.visible_regions == list(REGIONS)
    centre = {name: np.argwhere(region.mask).mean(axis=0) for name, region in found.regions.items()}  # (y, x)
    assert centre["forehead"][0] < centre["right_malar"][0] < centre["chin"][0]
    # the patient's right cheek is on the image's left
    assert centre["right_malar"][1] < centre["chin"][1] < centre["left_malar"][1]
    for region in found.regions.values():
        assert region.mask.shape == (frontal.height, frontal.width)
        assert not (region.mask & ~found.skin_mask).any()
    json = found.to_json()
    assert set(json["regions"]) == set(REGIONS) and "mask" not in json["regions"]["chin"]


def test_privacy_bars_are_not_skin(frontal: Image.Image) -> None:
    found = find_regions(frontal)
    lab_dark = np.asarray(frontal).max(axis=2) < 40  # the black bars
    assert lab_dark.sum() > 500
    assert (found.skin_mask & lab_dark).sum() < 0.02 * lab_dark.sum()


def test_profile_reports_the_far_cheek_hidden(roboflow_dir: Path) -> None:
    found = find_regions(_photo(roboflow_dir / "melasma", "melasma30"))
    assert found.regions["right_malar"].visible
    far = found.regions["left_malar"]
    assert not far.visible and "turned away" in far.reason


def test_mirrored_profile_swaps_the_hidden_side(roboflow_dir: Path) -> None:
    photo = _photo(roboflow_dir / "melasma", "melasma30").transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    found = find_regions(photo)
    assert not found.regions["right_malar"].visible and found.regions["left_malar"].visible


def test_faces_found_on_most_real_photos(roboflow_dir: Path) -> None:
    paths = sorted((roboflow_dir / "non-melasma").glob("*.jpg"))[:10]
    found = 0
    for path in paths:
        try:
            find_regions(Image.open(path))
            found += 1
        except FaceNotFound:
            pass
    assert found >= 9


def test_a_wall_is_not_a_face() -> None:
    rng = np.random.default_rng(0)
    wall = np.full((240, 320, 3), (200, 190, 170), np.uint8) + rng.integers(0, 12, (240, 320, 3), dtype=np.uint8)
    with pytest.raises(FaceNotFound, match="no face"):
        find_regions(wall)


def test_tiny_photo_is_refused_plainly(frontal: Image.Image) -> None:
    with pytest.raises(FaceNotFound, match="too small"):
        find_regions(frontal.resize((20, 20)))


def test_grayscale_photo_still_finds_regions(frontal: Image.Image) -> None:
    found = find_regions(np.asarray(frontal.convert("L")))
    assert "grayscale" in found.note
    assert len(found.visible_regions) >= 3


def test_extreme_aspect_ratio_is_a_face_or_a_plain_error(frontal: Image.Image) -> None:
    strip = np.asarray(frontal)[:, :, :][frontal.height // 2 - 10 : frontal.height // 2 + 10]
    with pytest.raises(FaceNotFound):
        find_regions(np.tile(strip, (1, 8, 1)))
    wide = Image.new("RGB", (frontal.width * 5, frontal.height), (90, 90, 90))
    wide.paste(frontal, (frontal.width * 2, 0))
    found = find_regions(wide)
    assert found.image_size == wide.size and found.visible_regions


def test_two_faces_use_the_larger_with_a_note(frontal: Image.Image) -> None:
    canvas = Image.new("RGB", (frontal.width * 2, frontal.height), (120, 120, 120))
    canvas.paste(frontal, (0, 0))
    small = frontal.resize((frontal.width // 2, frontal.height // 2))
    canvas.paste(small, (frontal.width + 50, frontal.height // 4))
    found = find_regions(canvas)
    assert "2 faces" in found.note
    assert found.landmarks[:, 0].mean() < frontal.width


def test_bad_arrays_raise_plain_errors() -> None:
    with pytest.raises(FaceNotFound, match="not a photo"):
        find_regions(np.zeros((4, 4, 7), np.uint8))
    with pytest.raises(FaceNotFound):
        find_regions(np.zeros((0, 0, 3), np.uint8))


def test_a_bar_over_a_region_makes_it_covered(frontal: Image.Image) -> None:
    found = find_regions(frontal)
    ys, xs = np.nonzero(found.regions["chin"].mask)
    covered = np.asarray(frontal).copy()
    covered[ys.min() - 5 : ys.max() + 5, xs.min() - 5 : xs.max() + 5] = 0  # a black bar over the chin
    chin = find_regions(covered).regions["chin"]
    assert not chin.visible and "covered" in chin.reason


def test_a_region_cut_off_by_the_frame_is_out_of_frame(frontal: Image.Image) -> None:
    found = find_regions(frontal)
    top = int(np.percentile(np.nonzero(found.regions["forehead"].mask)[0], 80))
    cropped = find_regions(frontal.crop((0, top, frontal.width, frontal.height)))
    forehead = cropped.regions["forehead"]
    assert not forehead.visible and "out of frame" in forehead.reason
    assert cropped.regions["chin"].visible


def test_threads_share_one_model_safely(frontal: Image.Image) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from melasma.regions import landmarks

    expected = find_regions(frontal).landmarks
    model = landmarks._model()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: find_regions(frontal).landmarks, range(8)))
    assert landmarks._model() is model
    for result in results:
        np.testing.assert_allclose(result, expected, atol=1e-3)


def test_sixteen_bit_and_float_arrays_read_as_photos(frontal: Image.Image) -> None:
    gray16 = np.asarray(frontal.convert("L")).astype(np.uint16) * 257
    assert len(find_regions(gray16).visible_regions) >= 3
    assert find_regions(np.asarray(frontal).astype(np.float32) / 255).visible_regions
    with pytest.raises(FaceNotFound, match="finite"):
        find_regions(np.full((64, 64, 3), np.nan, np.float32))


def test_a_face_too_small_to_measure_is_refused(frontal: Image.Image) -> None:
    with pytest.raises(FaceNotFound, match="too small"):
        find_regions(frontal.resize((32, 32)))
