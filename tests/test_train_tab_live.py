"""The Train tab served live (a Blocks holding only that tab), driven through its API with gradio_client."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from gradio_client import Client

from melasma.settings import Settings
from melasma.ui.train import TrainTab, build_train_tab

pytestmark = pytest.mark.timeout(150)

WAIT_S = 90


@pytest.fixture
def app(tmp_path: Path, free_port: int):
    settings = Settings(data_dir=tmp_path / "data")
    with gr.Blocks() as demo:
        with gr.Tab("Train"):
            tab = build_train_tab(settings)
    demo.queue()
    demo.launch(prevent_thread_lock=True, server_port=free_port, quiet=True)
    try:
        yield Client(demo.local_url, verbose=False), tab
    finally:
        demo.close()
        for job in tab.runner.list_jobs():
            if job["state"] in ("queued", "running"):
                tab.runner.cancel(job["job_id"])
        tab.runner.close()


def start(client: Client, data: Path | str, archs: list[str], extra: str = "", epochs: int = 1,
          batch_size: int = 64) -> str:
    # data, archs, other timm models, epochs, batch size, image size, lr, patience, seed, device, weights
    return client.predict(str(data), archs, extra, epochs, batch_size, 32, 1e-3, epochs, 0, "cpu", "off",
                          api_name="/start_training")


def wait(client: Client, job_id: str, until: tuple[str, ...] = ("done", "failed", "cancelled"),
         check: Any = None) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while True:
        status = client.predict(job_id, api_name="/training_status")
        if status["state"] in until or (check is not None and check(status)):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.2)


def test_tiny_run_to_results(app: tuple[Client, TrainTab], synth_dir: Path) -> None:
    client, tab = app
    job_id = start(client, synth_dir / "labels.csv", ["resnet18"])
    status = wait(client, job_id)
    assert status["state"] == "done", status["error"]
    assert status["progress"] == 1.0
    assert [row["arch"] for row in status["summary"]] == ["resnet18"]
    assert 0.0 <= status["summary"][0]["accuracy"] <= 1.0
    assert status["history"][0]["epoch"] == 1
    assert Path(status["run_dir"]) == tab.runner.runs_dir / job_id
    assert (Path(status["run_dir"]) / "resnet18" / "model.json").is_file()
    assert any(line.startswith("done") for line in status["log"])


def test_start_then_cancel(app: tuple[Client, TrainTab], synth_dir: Path) -> None:
    client, _ = app
    job_id = start(client, synth_dir / "labels.csv", [], extra="test_resnet", epochs=50, batch_size=8)
    wait(client, job_id, check=lambda status: status["progress"] > 0)
    assert client.predict(job_id, api_name="/cancel_training") == "running"
    status = wait(client, job_id)
    assert status["state"] == "cancelled"
    assert status["summary"] == [] and len(status["history"]) < 50
    assert status["config"]["archs"] == ["test_resnet"]


def test_bad_data_set_fails_with_message(app: tuple[Client, TrainTab], tmp_path: Path) -> None:
    client, _ = app
    job_id = start(client, tmp_path / "no-such-labels.csv", ["resnet18"])
    status = wait(client, job_id)
    assert status["state"] == "failed"
    assert "no-such-labels.csv" in status["error"] and "no such file" in status["error"]
    with pytest.raises(Exception, match="choose at least one architecture"):
        start(client, tmp_path / "no-such-labels.csv", [])
    with pytest.raises(Exception, match="no training job 'nope'"):
        client.predict("nope", api_name="/training_status")
