"""melasma.lesions: training a tiny model on a few real photos, saving, loading, refusing bad files,
the region items read from a lesion map, and the shipped model on real photos."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from melasma.lesions import LesionModel, LesionModelError, analyse, shipped_model, shipped_model_dir
from melasma.lesions.build import build_lesion_model
from melasma.lesions.photos import LesionDataError, load_photos
from melasma.lesions.train import LesionTrainConfig
from melasma.masi import REGION_WEIGHTS
from melasma.regions import find_regions
from melasma.regions.lesion_measure import measure_lesions, measure_skin

pytestmark = pytest.mark.realdata
TINY = LesionTrainConfig(size=128, views=2, epochs=3, batch_size=2, seed=0)


@pytest.fixture(scope="module")
def small_folder(roboflow_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three melasma and two healthy photos of the shared set, linked into the Roboflow layout."""
    folder = tmp_path_factory.mktemp("lesion-photos")
    for sub, count in (("melasma", 3), ("non-melasma", 2)):
        (folder / sub).mkdir()
        for path in sorted((roboflow_dir / sub).glob("*.jpg"))[:count]:
            (folder / sub / path.name).symlink_to(path)
    (folder / "_annotations.coco.json").symlink_to(roboflow_dir / "_annotations.coco.json")
    return folder


@pytest.fixture(scope="module")
def tiny_model(small_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny-lesions")
    build_lesion_model(small_folder, out, TINY)
    return out


@pytest.fixture(scope="module")
def face_photo(roboflow_dir: Path) -> Image.Image:
    (path,) = sorted((roboflow_dir / "melasma").glob("Melasma25_jpg.rf.*.jpg"))
    return Image.open(path).convert("RGB")


def test_photos_load_with_outlines_skin_and_tone(small_folder: Path) -> None:
    photos = load_photos(small_folder)
    assert [p.melasma for p in photos] == [True] * 3 + [False] * 2
    for photo in photos:
        assert photo.lesion.shape == photo.skin.shape == photo.rgb.shape[:2]
        assert photo.skin.any() and np.isfinite(photo.ita)
        assert photo.lesion.any() == photo.melasma
    assert len(load_photos(small_folder, healthy=False)) == 3


def test_a_folder_without_outlines_is_refused(tmp_path: Path) -> None:
    (tmp_path / "melasma").mkdir()
    with pytest.raises(LesionDataError, match="_annotations.coco.json"):
        load_photos(tmp_path)


@pytest.mark.slow
def test_a_tiny_model_trains_saves_and_loads_to_the_same_maps(tiny_model: Path, face_photo: Image.Image) -> None:
    weights = tiny_model / "model.safetensors"
    assert weights.stat().st_size < 1_000_000
    assert all(t.dtype == torch.float16 for t in load_file(str(weights)).values())
    meta = json.loads((tiny_model / "model.json").read_text())
    assert meta["size"] == 128 and meta["training"]["config"]["epochs"] == 3
    model = LesionModel.load(tiny_model)
    probability = model.probability(face_photo)
    assert probability.shape == (face_photo.height, face_photo.width)
    assert probability.dtype == np.float32 and 0 <= probability.min() <= probability.max() <= 1
    again = LesionModel.load(tiny_model).probability(face_photo)
    np.testing.assert_array_equal(probability, again)


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["missing", "truncated", "wrong shape", "bad json", "not finite", "other encoder"])
def test_bad_lesion_model_files_are_refused_in_one_line(tiny_model: Path, tmp_path: Path, damage: str) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("model.safetensors", "model.json"):
        (folder / name).write_bytes((tiny_model / name).read_bytes())
    weights, meta = folder / "model.safetensors", folder / "model.json"
    if damage == "missing":
        weights.unlink()
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:500])
    elif damage == "wrong shape":
        state = load_file(str(weights))
        key = next(iter(state))
        state[key] = torch.zeros(3, 3)
        save_file(state, str(weights))
    elif damage == "bad json":
        meta.write_text("[" * 100_000)
    elif damage == "not finite":
        state = load_file(str(weights))
        key = next(iter(state))
        state[key] = torch.full_like(state[key], float("inf"))
        save_file(state, str(weights))
    else:
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "encoder_sha256": "0" * 64}))
    with pytest.raises(LesionModelError) as refused:
        LesionModel.load(folder)
    message = str(refused.value)
    assert "\n" not in message and str(folder) in message


def test_region_items_follow_the_lesion_map(face_photo: Image.Image) -> None:
    regions = find_regions(face_photo)
    probability = np.zeros((face_photo.height, face_photo.width), np.float32)
    probability[regions.regions["right_malar"].mask] = 0.9  # the whole right cheek called lesion
    result = measure_lesions(face_photo, regions, probability)
    right = result.regions["right_malar"]
    assert right.area_item == 6 and right.pigmented_share > 0.95
    assert 1 <= right.darkness_item <= 4 and 1 <= right.homogeneity_item <= 4
    for name, measure in result.regions.items():
        if name != "right_malar":
            assert measure.area_item == 0 and measure.darkness_item == 0
    assert result.masi == pytest.approx(
        REGION_WEIGHTS["right_malar"] * right.area_item * (right.darkness_item + right.homogeneity_item))
    assert not (result.pigment_mask & ~regions.skin_mask).any()
    nothing = measure_lesions(face_photo, regions, np.zeros_like(probability))
    assert nothing.masi == 0 and all(m.area_item == 0 for m in nothing.regions.values())
    with pytest.raises(ValueError, match="does not match the photo"):
        measure_lesions(face_photo, regions, probability[:10])


def test_a_photo_without_a_face_is_read_as_one_region() -> None:
    rgb = np.full((96, 96, 3), (200, 150, 120), np.uint8)
    rgb[30:70, 30:70] = (150, 100, 70)  # a darker patch
    probability = np.zeros((96, 96), np.float32)
    probability[30:70, 30:70] = 1.0
    reading = measure_skin(rgb, np.ones((96, 96), bool), probability)
    assert reading.share == pytest.approx(1600 / 96**2, abs=0.01)
    assert reading.measure.area_item == 2 and reading.measure.darkness_item >= 3
    assert reading.masi == reading.measure.area_item * (reading.measure.darkness_item
                                                        + reading.measure.homogeneity_item)


def test_the_shipped_model_loads_and_finds_more_lesion_on_melasma_than_on_healthy_faces(
        roboflow_dir: Path) -> None:
    model = shipped_model()
    assert model.meta.metrics["cross_validated"]["folds"] == 5
    shares = {}
    for sub in ("melasma", "non-melasma"):
        values = []
        for path in sorted((roboflow_dir / sub).glob("*.jpg"))[:6]:
            with Image.open(path) as photo:
                report = analyse(photo.convert("RGB"))
            if report.measures is not None:
                values.append(float(report.measures.pigment_mask.mean()))
        shares[sub] = float(np.mean(values))
    assert shares["melasma"] > 2 * shares["non-melasma"]


def test_unusable_photos_give_a_reason_not_a_crash() -> None:
    for photo in (np.zeros((20, 20, 3), np.uint8), np.full((200, 200), 128, np.uint8)):
        report = analyse(photo)
        assert not report.face_found and report.error
    gray = np.full((200, 200), 128, np.uint8)
    assert shipped_model().probability(gray).shape == (200, 200)


@pytest.mark.slow
def test_cli_trains_a_model(small_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli-model"
    result = subprocess.run(
        [sys.executable, "-m", "melasma", "lesions", "train", "--data", str(small_folder), "--out", str(out),
         "--size", "128", "--views", "2", "--epochs", "2"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["out"] == str(out) and (out / "model.safetensors").is_file()
    assert "epoch 2/2" in result.stderr
    bad = subprocess.run([sys.executable, "-m", "melasma", "lesions", "train", "--data", str(tmp_path),
                          "--out", str(out)], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error:")


def test_shipped_model_dir_holds_small_files() -> None:
    for path in shipped_model_dir().iterdir():
        assert path.stat().st_size <= 10 * 1024 * 1024, path
