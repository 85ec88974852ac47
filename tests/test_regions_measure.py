"""melasma.regions measures on a real photo: pigment, MASI from items, overlay, relevance shares, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from melasma.cli import main
from melasma.masi import REGION_WEIGHTS
from melasma.regions import (
    FaceRegions,
    draw_regions,
    find_regions,
    measure_pigment,
    relevance_share,
)
from melasma.regions.pigment import area_item
from melasma.regions.report import analyse

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def photo(roboflow_dir: Path) -> Image.Image:
    (path,) = sorted((roboflow_dir / "melasma").glob("Melasma25_jpg.rf.*.jpg"))
    return Image.open(path).convert("RGB")


@pytest.fixture(scope="module")
def found(photo: Image.Image) -> FaceRegions:
    return find_regions(photo)


def test_area_item_follows_the_masi_bands() -> None:
    shares = (0.0, 0.01, 0.05, 0.1, 0.29, 0.3, 0.5, 0.7, 0.89, 0.9, 1.0)
    assert [area_item(s, 0.02) for s in shares] == [0, 0, 1, 2, 2, 3, 4, 5, 5, 6, 6]


def test_measures_are_in_range_and_masi_follows_the_formula(photo: Image.Image, found: FaceRegions) -> None:
    result = measure_pigment(photo, found)
    assert set(result.regions) == set(found.visible_regions)
    masi = mmasi = 0.0
    for name, m in result.regions.items():
        assert 0 <= m.pigmented_share <= 1 and m.delta_L >= 0
        assert 0 <= m.area_item <= 6 and 0 <= m.darkness_item <= 4 and 0 <= m.homogeneity_item <= 4
        masi += REGION_WEIGHTS[name] * m.area_item * (m.darkness_item + m.homogeneity_item)
        mmasi += REGION_WEIGHTS[name] * m.area_item * m.darkness_item
    assert result.masi == pytest.approx(masi) and result.mmasi == pytest.approx(mmasi)
    assert 0 <= result.masi <= 48
    assert not (result.pigment_mask & ~found.skin_mask).any()
    json.dumps(result.to_json())


def test_a_painted_dark_patch_raises_that_cheek_only(photo: Image.Image, found: FaceRegions) -> None:
    pixels = np.asarray(photo).astype(np.float32)
    mask = found.regions["right_malar"].mask
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
    patch = mask & ((yy - cy) ** 2 + (xx - cx) ** 2 < (0.25 * np.ptp(xs)) ** 2)
    pixels[patch] *= np.array([0.72, 0.66, 0.6])  # brown, darker
    painted = Image.fromarray(pixels.astype(np.uint8))
    before = measure_pigment(photo, found).regions
    after = measure_pigment(painted, found).regions
    assert after["right_malar"].delta_L > before["right_malar"].delta_L + 1.0
    assert after["left_malar"].delta_L == pytest.approx(before["left_malar"].delta_L, abs=0.2)
    assert after["right_malar"].pigmented_share >= before["right_malar"].pigmented_share


def test_relevance_share(found: FaceRegions) -> None:
    right = found.regions["right_malar"].mask.astype(np.float32)
    shares = relevance_share(found, right - 0.5 * found.regions["chin"].mask)
    assert shares["right_malar"] == pytest.approx(1.0, abs=1e-3)
    assert shares["chin"] == 0.0 and shares["forehead"] == 0.0
    uniform = relevance_share(found, np.ones((7, 9)))
    for name, region in found.regions.items():
        assert uniform[name] == pytest.approx(region.mask.mean(), rel=1e-3)
    assert set(relevance_share(found, -np.ones((4, 4))).values()) == {0.0}
    with pytest.raises(ValueError, match="heatmap"):
        relevance_share(found, np.ones(5))


def test_overlay_draws_on_a_copy(photo: Image.Image, found: FaceRegions) -> None:
    overlay = draw_regions(photo, found)
    assert overlay.size == photo.size
    assert np.abs(np.asarray(overlay).astype(int) - np.asarray(photo)).sum() > 0
    empty = analyse(np.zeros((50, 50, 3), np.uint8)).to_json()
    assert empty["face_found"] is False and empty["error"].startswith("no face found")


def test_cli_writes_lines_and_overlays_and_fails_on_a_wall(
    photo: Image.Image, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    face, wall, broken = tmp_path / "face.jpg", tmp_path / "wall.png", tmp_path / "broken.jpg"
    photo.save(face)
    Image.new("RGB", (200, 150), (180, 170, 160)).save(wall)
    broken.write_bytes(b"not an image")
    status = main(["regions", str(face), str(wall), str(broken), "--out", str(tmp_path / "out")])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 1
    assert [line["image"] for line in lines] == [str(face), str(wall), str(broken)]
    assert lines[0]["face_found"] and 0 <= lines[0]["masi"] <= 48 and set(lines[0]["regions"]) >= {"chin"}
    assert Path(lines[0]["overlay"]).is_file()
    assert "no face" in lines[1]["error"] and "error" in lines[2] and lines[2]["error"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["face_regions.png"]
    assert main(["regions", str(face)]) == 0
