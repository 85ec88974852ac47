"""Predictor: real photos, every accepted input type, explanations at the photo's aspect, checkpoints."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from melasma.data.images import ImageLoadError, load_array, load_image
from melasma.inference import (
    DISPLAY_MAX,
    METHODS,
    Predictor,
    default_checkpoint,
    get_predictor,
    list_checkpoints,
)
from melasma.masi import DEFAULT_CUTOFFS, SEVERITIES
from melasma.models import create, save_checkpoint

pytestmark = pytest.mark.realdata

@pytest.fixture(scope="module")
def demo() -> Predictor:
    return Predictor.from_checkpoint(default_checkpoint())


@pytest.fixture(scope="module")
def photos(roboflow_dir: Path) -> list[Path]:
    found = sorted(roboflow_dir.glob("*/*.jpg"))
    assert len(found) == 94, f"expected the 94 real photos, found {len(found)}"
    return found


def test_predicts_every_real_photo(demo: Predictor, photos: list[Path]) -> None:
    seen = set()
    for photo in photos:
        result = demo.predict(photo)
        assert result.severity in SEVERITIES
        assert list(result.probabilities) == list(SEVERITIES)
        assert math.isclose(sum(result.probabilities.values()), 1.0, abs_tol=1e-5)
        assert result.severity == max(result.probabilities, key=result.probabilities.get)
        assert {"decode", "preprocess", "forward", "total"} <= set(result.latency_ms)
        assert result.latency_ms["total"] >= result.latency_ms["forward"] > 0
        seen.add(result.severity)
    assert seen, "no prediction made"


def test_path_bytes_pil_and_array_give_the_same_prediction(demo: Predictor, photos: list[Path]) -> None:
    path = photos[0]
    by_path = demo.predict(path).probabilities
    size = demo.image_size
    image = load_image(path, draft=(size, size))  # decoded as files are (JPEG DCT draft size)
    for source in (str(path), path.read_bytes(), image, np.asarray(image)):
        probabilities = demo.predict(source).probabilities
        for name in SEVERITIES:
            assert probabilities[name] == pytest.approx(by_path[name], abs=1e-6)


def test_preprocessing_matches_training(demo: Predictor, photos: list[Path]) -> None:
    size = demo.image_size
    x = demo.preprocess(demo.decode(photos[1]))
    pixels = torch.from_numpy(load_array(photos[1], size)).permute(2, 0, 1)[None].float() / 255
    mean = torch.tensor(demo.meta.mean).view(1, 3, 1, 1)
    std = torch.tensor(demo.meta.std).view(1, 3, 1, 1)
    assert x.shape == (1, 3, size, size)
    torch.testing.assert_close(x, (pixels - mean) / std)


def test_bad_inputs_raise_clear_errors(demo: Predictor, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty.jpg"):
        demo.predict(empty)
    with pytest.raises(ImageLoadError, match="uint8"):
        demo.predict(np.zeros((8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="method must be one of"):
        demo.explain(np.zeros((40, 40, 3), dtype=np.uint8), "saliency")
    with pytest.raises(ValueError, match="target must be one of"):
        demo.explain(np.zeros((40, 40, 3), dtype=np.uint8), "gxi", target="extreme")


@pytest.mark.parametrize("method", METHODS)
def test_explanations_keep_the_photo_aspect(demo: Predictor, photos: list[Path], method: str) -> None:
    wide = Image.open(photos[2]).convert("RGB").crop((0, 60, 416, 300))  # 416 x 240
    buffer = io.BytesIO()
    wide.save(buffer, format="PNG")
    result = demo.explain(buffer.getvalue(), method)
    assert result.map.shape == (240, 416)
    assert np.isfinite(result.map).all() and np.abs(result.map).max() > 0
    assert result.target in SEVERITIES
    ratio = result.overlay.width / result.overlay.height
    assert ratio == pytest.approx(416 / 240, rel=0.05)
    assert result.latency_ms[method] > 0 and result.latency_ms["total"] >= result.latency_ms[method]
    if method == "gradcam":
        assert result.map.min() >= 0


def test_explaining_a_chosen_class(demo: Predictor, photos: list[Path]) -> None:
    result = demo.explain(photos[3], "gxi", target="severe")
    assert result.target == "severe"


def test_checkpoint_listing_and_cache(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    meta = {"classes": list(SEVERITIES), "cutoffs": list(DEFAULT_CUTOFFS["masi"]), "image_size": 48,
            "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    trained = save_checkpoint(runs / "run1" / "mobilenetv2_100", create("mobilenetv2_100"), meta)
    (runs / "run2" / "resnet18").mkdir(parents=True)
    (runs / "run2" / "resnet18" / "model.json").write_text("{}")  # interrupted: no weights file

    found = list_checkpoints(runs)
    assert list(found) == ["demo", "run1/mobilenetv2_100"]
    assert found["demo"] == default_checkpoint()
    assert found["run1/mobilenetv2_100"] == trained

    first = get_predictor(trained)
    assert get_predictor(str(trained)) is first
    prediction = first.predict(np.full((60, 80, 3), 128, dtype=np.uint8))
    assert prediction.severity in SEVERITIES
    save_checkpoint(trained, create("mobilenetv2_100"), meta)  # retrained in place: reloaded
    assert get_predictor(trained) is not first


def test_background_warm_up_loads_the_shared_predictor_before_the_first_visitor() -> None:
    from melasma.inference import _cache, warm_up_in_background

    _cache.clear()
    warm_up_in_background(default_checkpoint()).join()
    assert (len(_cache), _cache.misses) == (1, 1)
    predictor = get_predictor(default_checkpoint())
    assert _cache.hits == 1  # the visitor's call reuses the warmed model
    assert predictor._explainer is not None  # and its explainer, already set up
    assert predictor.predict(np.zeros((40, 40, 3), np.uint8)).severity in predictor.classes


def test_explain_all_gives_the_three_single_method_maps(demo: Predictor, photos: list[Path]) -> None:
    photo = demo.decode(photos[4], draft=DISPLAY_MAX)  # as explanations decode (for the display)
    together = demo.explain_all(photo)
    assert list(together.maps) == list(METHODS)
    assert together.target == max(together.probabilities, key=together.probabilities.get)
    assert together.probabilities == pytest.approx(demo.predict(photo).probabilities, abs=1e-5)
    for method in METHODS:
        alone = demo.explain(photo, method, target=together.target).map
        assert together.maps[method].shape == alone.shape
        scale = np.abs(alone).max()
        assert np.abs(together.maps[method] - alone).max() <= 1e-5 * scale, method
    latency = together.latency_ms
    assert {"gradient pass", "lrp", "lrp forward", "lrp relevance", "total"} <= set(latency)
    assert latency["lrp forward"] + latency["lrp relevance"] <= latency["lrp"] + 0.1  # LRP's two parts (ms)
    assert together.cam_grid == (7, 7) and together.cam_note == ""  # efficientnet_lite0 at 224 px


def test_close_releases_the_explainer_and_the_cache_closes_what_it_drops(tmp_path: Path) -> None:
    from melasma.inference import _PredictorCache, describe_checkpoint

    meta = {"classes": list(SEVERITIES), "cutoffs": list(DEFAULT_CUTOFFS["masi"]), "image_size": 48,
            "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    folders = [save_checkpoint(tmp_path / f"run{i}" / "resnet18", create("resnet18"), meta) for i in range(2)]
    cache = _PredictorCache(size=1)
    first = cache.get((str(folders[0]), 0, "cpu"), lambda: Predictor.from_checkpoint(folders[0]))
    first.explain_all(np.full((48, 48, 3), 100, np.uint8))
    explainer = first._explainer
    cache.get((str(folders[1]), 0, "cpu"), lambda: Predictor.from_checkpoint(folders[1]))
    assert first._explainer is None and explainer.closed  # evicted: released
    assert len(cache) == 1
    assert describe_checkpoint(folders[0]).startswith("20") and describe_checkpoint(folders[0]).endswith(
        "no test score · resnet18")
    assert describe_checkpoint(default_checkpoint()).endswith("(94 images) · no test score · efficientnet_lite0")
