"""The Predict tab served for real: /predict, /explain and /regions through gradio_client, the
analysis below the severity (heatmaps with colour scales, regions, latency), errors, refresh."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from melasma.inference import METHODS
from melasma.masi import DEFAULT_CUTOFFS, SEVERITIES
from melasma.models import create, save_checkpoint
from melasma.settings import Settings
from melasma.ui.predict import STEP_LABELS, PredictTab, build_predict_tab
from melasma.ui.predict_headline import NO_FACE

pytestmark = [pytest.mark.live, pytest.mark.realdata]

@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, PredictTab, Path]]:
    """Only the Predict tab in a Blocks, on a free port; yields (client, tab, data folder)."""
    import socket

    data_dir = tmp_path_factory.mktemp("data")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with gr.Blocks() as demo, gr.Tab("Predict"):
        tab = build_predict_tab(Settings(data_dir=data_dir))
    demo.queue().launch(prevent_thread_lock=True, server_port=port, quiet=True)
    try:
        yield Client(demo.local_url, verbose=False, download_files=str(data_dir / "downloads")), tab, data_dir
    finally:
        demo.close()


@pytest.fixture(scope="module")
def photo(roboflow_dir: Path) -> Path:
    return min((roboflow_dir / "melasma").glob("*.jpg"))


def test_predict_and_explain(served: tuple[Client, PredictTab, Path], photo: Path) -> None:
    client, _, _ = served
    label, latency = client.predict(handle_file(str(photo)), "demo", api_name="/predict")
    assert label["label"] in SEVERITIES
    confidences = {c["label"]: c["confidence"] for c in label["confidences"]}
    assert set(confidences) == set(SEVERITIES)
    assert sum(confidences.values()) == pytest.approx(1.0, abs=1e-4)
    assert {"decode", "preprocess", "forward", "total"} <= set(latency)

    for method in ("lrp", "gradcam", "gxi"):
        heatmap = client.predict(handle_file(str(photo)), "demo", method, api_name="/explain")
        with Image.open(heatmap) as overlay:
            assert overlay.width >= 100 and overlay.height >= 100


def test_bad_file_gives_an_error_and_the_app_keeps_serving(
    served: tuple[Client, PredictTab, Path], photo: Path, tmp_path: Path
) -> None:
    client, _, _ = served
    fake = tmp_path / "holiday.jpg"
    fake.write_text("not a photo")
    with pytest.raises(AppError, match="holiday.jpg: not a recognised image file"):
        client.predict(handle_file(str(fake)), "demo", api_name="/predict")
    with pytest.raises(AppError, match="holiday.jpg"):
        client.predict(handle_file(str(fake)), "demo", "lrp", api_name="/explain")
    with pytest.raises(AppError, match="Unknown checkpoint"):
        client.predict(handle_file(str(photo)), "/etc", api_name="/predict")
    label, _ = client.predict(handle_file(str(photo)), "demo", api_name="/predict")
    assert label["label"] in SEVERITIES


def test_a_new_training_run_becomes_selectable(
    served: tuple[Client, PredictTab, Path], photo: Path
) -> None:
    client, tab, data_dir = served
    meta = {"classes": list(SEVERITIES), "cutoffs": list(DEFAULT_CUTOFFS["masi"]), "image_size": 48,
            "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    save_checkpoint(data_dir / "runs" / "fresh" / "resnet18", create("resnet18"), meta)
    choices = tab.refresh_choices().choices
    assert [key for _, key in choices] == ["demo", "fresh/resnet18"]
    assert choices[0][0].startswith("demo weights · ") and choices[0][0].endswith("no test score · efficientnet_lite0")
    assert choices[1][0].endswith("no test score · resnet18") and "fresh" not in choices[1][0]
    label, _ = client.predict(handle_file(str(photo)), "fresh/resnet18", api_name="/predict")
    assert label["label"] in SEVERITIES


@pytest.fixture(scope="module")
def wall(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A photo with no face in it: a smooth beige gradient, like a painted wall."""
    import numpy as np

    ramp = np.linspace(150, 210, 320, dtype=np.float32)
    pixels = np.stack([ramp[None, :].repeat(240, 0) + offset for offset in (20, 5, -15)], axis=-1)
    path = tmp_path_factory.mktemp("wall") / "wall.png"
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path)
    return path


def test_regions_endpoint_on_a_real_face_and_on_a_wall(
    served: tuple[Client, PredictTab, Path], roboflow_dir: Path, wall: Path
) -> None:
    client, _, _ = served
    face = roboflow_dir / "melasma" / "Melasma25_jpg.rf.d2f50b7749f5be22ee57eb32166725c1.jpg"
    details, slider = client.predict(handle_file(str(face)), api_name="/regions")
    assert details["face_found"] is True and details["lesion_reading"] == "model"
    assert set(details["regions"]) == {"forehead", "right_malar", "left_malar", "chin"}
    assert any(region["visible"] for region in details["regions"].values())
    assert "masi" in details["measures"]
    outlines, lesions = slider  # the outlines alone, and with the lesion model's map tinted red
    with Image.open(outlines) as plain, Image.open(lesions) as tinted:
        assert plain.size == tinted.size and plain.width >= 100
        difference = np.abs(np.asarray(plain, np.int16) - np.asarray(tinted, np.int16)).sum(axis=2)
        assert (difference > 30).mean() > 0.02  # this photo's melasma is tinted

    details, _ = client.predict(handle_file(str(wall)), api_name="/regions")
    assert details["face_found"] is False and "face" in details["notice"].lower()


def test_analysis_shows_regions_and_scales_or_says_the_severity_means_nothing(
    served: tuple[Client, PredictTab, Path], roboflow_dir: Path, wall: Path
) -> None:
    _, tab, _ = served
    face = roboflow_dir / "melasma" / "Melasma25_jpg.rf.d2f50b7749f5be22ee57eb32166725c1.jpg"
    _, latency = tab.predict(str(face), "demo")
    shown = tab.analyse(str(face), "demo", latency)
    severity, notice, masi = shown[tab.severity], shown[tab.notice], shown[tab.masi]
    overlays, scales = [shown[tab.heatmaps[m]] for m in METHODS], [shown[tab.scales[m]] for m in METHODS]
    cam_note, regions, table = shown[tab.cam_note], shown[tab.regions_overlay], shown[tab.region_table]
    latency_rows = shown[tab.latency_table]
    assert severity.visible is False and not severity.value  # the demo fails its real-photo check: ...
    assert notice.startswith("**Not a grade on real photos.**")  # ... caution first
    assert "Demonstration of the method, not a grade: the CNN's class is **" in notice  # the class, not headlined
    assert "Image-derived MASI" in masi and "### No face" not in notice
    assert "Not a grade on real photos" in notice and "ROC AUC 0.99" in notice  # the demo's real_photos.json
    assert "LRP in the lesion outlines" in notice  # the bar it misses
    assert all(isinstance(overlay, Image.Image) for overlay in overlays)
    assert all("linear-gradient" in scale for scale in scales)  # each heatmap carries its colour scale
    assert cam_note == ""  # the demo efficientnet_lite0 at 224 px: a 7 x 7 map, fine enough
    assert all(isinstance(image, Image.Image) for image in regions) and [row[0] for row in table] == [
        "forehead", "right malar", "left malar", "chin"]
    visible = [row for row in table if row[1] == "yes"]
    assert visible and all(0 <= row[2] <= 100 for row in visible)
    assert all(row[6] == "" or 0 <= row[6] <= 100 for row in visible)  # LRP % in the region
    steps = {row[0]: row[1] for row in latency_rows}
    explainer_steps = [STEP_LABELS[f"explain: {step}"] for step in ("gradient pass", "lrp", "lrp forward", "lrp relevance")]
    assert {*explainer_steps, "regions + lesion map", "total"} <= set(steps)
    lrp, forward, relevance = (steps[label] for label in explainer_steps[1:])
    assert 0 < forward < lrp and 0 < relevance < lrp  # LRP's two parts, each timed

    _, latency = tab.predict(str(wall), "demo")
    shown = tab.analyse(str(wall), "demo", latency)
    severity, notice, masi = shown[tab.severity], shown[tab.notice], shown[tab.masi]
    assert severity.visible is False and not severity.value  # no face: no severity at all
    assert notice.startswith("### No face found") and masi == ""
    assert notice.endswith(NO_FACE) and not any(name in notice for name in SEVERITIES)
    assert shown[tab.region_table] == []  # no region rows
