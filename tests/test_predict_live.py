"""The Predict tab served for real: /predict and /explain through gradio_client, errors, refresh."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import gradio as gr
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from melasma.masi import DEFAULT_CUTOFFS, SEVERITIES
from melasma.models import create, save_checkpoint
from melasma.settings import Settings
from melasma.ui.predict import PredictTab, build_predict_tab

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, PredictTab, Path]]:
    """Only the Predict tab in a Blocks, on a free port; yields (client, tab, data folder)."""
    import socket

    data_dir = tmp_path_factory.mktemp("data")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with gr.Blocks() as demo:
        with gr.Tab("Predict"):
            tab = build_predict_tab(Settings(data_dir=data_dir))
    demo.queue().launch(prevent_thread_lock=True, server_port=port, quiet=True)
    try:
        yield Client(demo.local_url, verbose=False, download_files=str(data_dir / "downloads")), tab, data_dir
    finally:
        demo.close()


@pytest.fixture(scope="module")
def photo(roboflow_dir: Path) -> Path:
    return sorted((roboflow_dir / "melasma").glob("*.jpg"))[0]


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
    assert tab.refresh_choices().choices == [("demo", "demo"), ("fresh/resnet18", "fresh/resnet18")]
    label, _ = client.predict(handle_file(str(photo)), "fresh/resnet18", api_name="/predict")
    assert label["label"] in SEVERITIES
