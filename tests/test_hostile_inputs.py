"""Issue 30: hostile files are refused by construction, before the work they would cause: JPEGs with
thousands of scans, images of extreme aspect, checkpoints and JSON files that are not what they say."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from melasma.data.images import MAX_JPEG_SCANS, ImageLoadError, count_jpeg_scans, decode_image, load_image


def progressive_jpeg(size: tuple[int, int] = (96, 80), seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", progressive=True, quality=90)
    return buffer.getvalue()


def repeated_scan_jpeg(repeats: int) -> bytes:
    """A valid progressive JPEG whose last AC scan is repeated `repeats` more times (the attack of
    issue 30: every copy is decoded again, so decoding time grows with the count)."""
    data = progressive_jpeg()
    last_scan = data[data.rfind(b"\xff\xda"):-2]
    return data[:-2] + last_scan * repeats + b"\xff\xd9"


def test_progressive_jpegs_of_cameras_and_libjpeg_decode() -> None:
    data = progressive_jpeg()
    assert count_jpeg_scans(data) == 10
    assert load_image(data).size == (96, 80)
    assert count_jpeg_scans(b"\x89PNG\r\n\x1a\n") == 0


def test_a_jpeg_with_thousands_of_scans_is_refused_before_decoding(tmp_path: Path) -> None:
    hostile = repeated_scan_jpeg(5000)
    assert count_jpeg_scans(hostile) == 5010
    # counting stops just past the cap: refusing reads at most MAX_JPEG_SCANS + 1 scan headers
    assert count_jpeg_scans(hostile, stop_after=MAX_JPEG_SCANS) == MAX_JPEG_SCANS + 1
    path = tmp_path / "scans.jpg"
    path.write_bytes(hostile)
    for source in (path, hostile, io.BytesIO(hostile)):
        with pytest.raises(ImageLoadError, match=f"more than {MAX_JPEG_SCANS} scans"):
            decode_image(source, name="scans.jpg")
    # just under the cap it is an ordinary (if odd) file and decodes
    assert load_image(repeated_scan_jpeg(MAX_JPEG_SCANS - 10)).size == (96, 80)


def test_scans_of_an_exif_thumbnail_are_not_counted() -> None:
    thumbnail = progressive_jpeg((32, 24), seed=1)
    exif = Image.Exif()
    exif[0x010E] = "x"
    data = progressive_jpeg()
    # an APP1 segment holding a progressive JPEG (as an EXIF thumbnail does) right after SOI
    app1 = b"Exif\x00\x00" + thumbnail
    segment = b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1
    assert count_jpeg_scans(data[:2] + segment + data[2:]) == 10


# -- extreme aspect ratios: refused from the header; figures bounded -----------------------------
def strip_png(width: int, height: int) -> bytes:
    """A tiny (zlib-compressed) PNG of a width x height strip: a few hundred bytes."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (180, 140, 120)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("size", [(1, 40000), (40000, 1), (65535, 1), (30, 700)])
def test_extreme_aspect_is_refused_before_decoding(size: tuple[int, int]) -> None:
    with pytest.raises(ImageLoadError, match="one side more than 20 times the other"):
        load_image(strip_png(*size), name="strip.png")
    assert load_image(strip_png(30, 600)).size == (30, 600)  # 20:1 is still a photo


def test_side_by_side_figures_are_bounded_whatever_the_photo() -> None:
    from matplotlib.figure import Figure

    from melasma.explain.views import MAX_FIGURE_PIXELS, ViewError, figure_to_array, side_by_side

    for size in ((1, 512), (512, 1), (30, 600)):  # what fit_display makes of a 1 x 40000 strip
        photo = Image.new("RGB", size, (200, 150, 120))
        maps = {"lrp": np.zeros(size[::-1], np.float32), "gradcam": np.ones(size[::-1], np.float32)}
        figure = side_by_side(photo, maps, title="t")
        width, height = figure.get_size_inches() * 100
        assert width * height <= MAX_FIGURE_PIXELS and height <= 1100  # was 163,930 px tall for (1, 512)
    with pytest.raises(ViewError, match="pixel limit"):
        figure_to_array(Figure(figsize=(6.4, 1639)))  # refused from its size, nothing drawn


def test_predictor_refuses_a_strip_before_the_model(tmp_path: Path) -> None:
    from melasma.inference import Predictor, default_checkpoint

    predictor = Predictor.from_checkpoint(default_checkpoint())
    path = tmp_path / "strip.png"
    path.write_bytes(strip_png(1, 40000))
    with pytest.raises(ImageLoadError, match="more than 20 times"):
        predictor.explain(str(path), "gradcam")
    with pytest.raises(ImageLoadError, match="more than 20 times"):
        predictor.predict(np.zeros((1, 400, 3), np.uint8))


def test_ingest_gives_one_outcome_per_file_for_strips_and_unstorable_photos(tmp_path: Path) -> None:
    from annotation.ingest import ingest
    from annotation.store import RatingStore

    good = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(good, "PNG")
    files = []
    for name, data in (("strip.png", strip_png(65535, 1)), ("good.png", good.getvalue())):
        (tmp_path / name).write_bytes(data)
        files.append(tmp_path / name)
    store = RatingStore(tmp_path / "a.sqlite")
    summary = ingest(store, tmp_path / "photos", files)
    assert [(f.file, f.outcome) for f in summary.files] == [("strip.png", "refused"), ("good.png", "added")]
    assert "more than 20 times" in summary.files[0].reason
    # a photos folder that cannot be written: every file refused with the reason, nothing raised
    (tmp_path / "not-a-folder").write_text("x")
    other = ingest(RatingStore(tmp_path / "b.sqlite"), tmp_path / "not-a-folder" / "photos", files[1:])
    assert [(f.outcome, f.reason.split(" (")[0]) for f in other.files] == [("refused", "cannot store the photo")]


# -- one bad file never stops the app ------------------------------------------------------------
def _copy_demo(target: Path) -> Path:
    import shutil

    from melasma.inference import default_checkpoint

    shutil.copytree(default_checkpoint(), target)
    return target


@pytest.mark.parametrize("text", ["[]", "null", '"a string"', "[" * 100_000 + "]" * 100_000, "{", "7"],
                         ids=["list", "null", "string", "nested", "broken", "number"])
def test_a_damaged_model_json_under_runs_is_listed_not_raised(tmp_path: Path, text: str) -> None:
    import gradio as gr

    from melasma.inference import describe_checkpoint
    from melasma.settings import Settings
    from melasma.ui.predict import build_predict_tab, labelled_choices

    runs = tmp_path / "runs"
    folder = _copy_demo(runs / "20261206-000000" / "mobilenetv2_100")
    (folder / "model.json").write_text(text)
    label = describe_checkpoint(folder)
    assert label.startswith("mobilenetv2_100 (not loadable: model.json") and str(tmp_path) not in label
    assert any("not loadable" in name for name, _ in labelled_choices(runs))
    with gr.Blocks():  # the Predict tab (what the app builds at start-up) lists it and carries on
        build_predict_tab(Settings(data_dir=tmp_path))


def test_a_deeply_nested_real_photos_json_is_a_checkpoint_error(tmp_path: Path) -> None:
    from melasma.inference import Predictor
    from melasma.models.checkpoint import CheckpointError

    folder = _copy_demo(tmp_path / "demo")
    (folder / "real_photos.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match="nested too deeply"):
        Predictor.from_checkpoint(folder)


def test_non_finite_outputs_are_refused_not_labelled(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from melasma.inference import NonFiniteOutputError, Predictor
    from melasma.models.checkpoint import load_checkpoint

    folder = _copy_demo(tmp_path / "huge")
    weights = load_file(folder / "model.safetensors")
    save_file({k: v.float() * 1e30 if v.is_floating_point() else v for k, v in weights.items()},  # fp32: finite
              folder / "model.safetensors")
    with pytest.raises(NonFiniteOutputError, match="NaN or infinite outputs"):
        Predictor.from_checkpoint(folder)  # its warm-up forward already overflows
    model, meta = load_checkpoint(folder)  # finite weights: they load
    predictor = Predictor(model, meta)
    photo = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    with pytest.raises(NonFiniteOutputError, match="NaN or infinite outputs"):
        predictor.predict(photo)
    with pytest.raises(NonFiniteOutputError):
        predictor.explain_all(photo)


# -- training requests: absurd values refused by validation, fixed-size models estimated ----------
@pytest.mark.parametrize(("field", "value", "message"), [
    ("lr", 1e308, "learning rate must be from 1e-08 to 10"), ("lr", 1e-300, "learning rate must be from"),
    ("weight_decay", 1e308, "weight decay must be from 0 to 1"), ("weight_decay", float("nan"), "weight decay"),
])
def test_absurd_optimiser_values_are_refused_with_the_range(tmp_path: Path, field: str, value: float,
                                                            message: str) -> None:
    from melasma.training import TrainConfig

    with pytest.raises(ValueError, match=message):
        TrainConfig(data=tmp_path / "labels.csv", archs=("resnet18",), **{field: value})


def test_the_memory_probe_handles_fixed_size_timm_models() -> None:
    from melasma.jobs.memory import estimate_bytes

    small, large = (estimate_bytes("vit_tiny_patch16_224", 224, batch) for batch in (4, 16))
    assert 0 < small < large  # was AssertionError: Input height (64) doesn't match model (224)
