"""The Train tab served live (a Blocks holding only that tab), driven through its API with gradio_client.
Waits are on job states, never on the clock."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from gradio_client import Client
from markdown_it import MarkdownIt

from melasma.jobs import JobStatus
from melasma.jobs.datapath import OUTSIDE
from melasma.settings import Settings
from melasma.ui.train import TrainTab, _headline, build_train_tab
from melasma.ui.train_view import curves_figure, data_summary, results_note, results_table
from waiting import wait_until

pytestmark = pytest.mark.live

USERS = (("coord", "pw-c"), ("ana", "pw-a"), ("ben", "pw-b"), ("r1", "pw-r"))


def serve(settings: Settings, port: int, auth: tuple[tuple[str, str], ...] | None = None):
    with gr.Blocks() as demo, gr.Tab("Train"):
        tab = build_train_tab(settings)
    demo.queue()
    demo.launch(prevent_thread_lock=True, server_port=port, quiet=True, auth=list(auth) if auth else None)
    return demo, tab


def stop(demo: gr.Blocks, tab: TrainTab) -> None:
    demo.close()
    for job in tab.runner.list_jobs():
        if job["state"] in ("queued", "running"):
            tab.runner.cancel(job["job_id"])
    tab.runner.close()


@pytest.fixture
def data_dir(tmp_path: Path, synth_dir: Path) -> Path:
    """A data folder whose demo set is the session's synthetic set."""
    shutil.copytree(synth_dir, tmp_path / "data" / "demo")
    return tmp_path / "data"


@pytest.fixture
def app(data_dir: Path, free_port: int):
    demo, tab = serve(Settings(data_dir=data_dir), free_port)
    try:
        yield Client(demo.local_url, verbose=False), tab
    finally:
        stop(demo, tab)


def start(client: Client, data: Path | str, archs: list[str], extra: str = "", epochs: int = 1,
          batch_size: int = 64, image_size: int = 32, seed: float = 0) -> str:
    # data, archs, other timm models, epochs, batch size, image size, lr, patience, seed, device, weights, cut-offs
    return client.predict(str(data), archs, extra, epochs, batch_size, image_size, 1e-3, epochs, seed, "cpu", "off",
                          "16,32", api_name="/start_training")


def wait(client: Client, job_id: str, until: tuple[str, ...] = ("done", "failed", "cancelled"),
         check: Any = None) -> dict[str, Any]:
    return wait_until(lambda: client.predict(job_id, api_name="/training_status"),
                      f"training job {job_id} to reach {' / '.join(until)}{' or its check' if check else ''}",
                      done=lambda status: status["state"] in until or (check is not None and check(status)),
                      interval_s=0.2)


def test_tiny_run_to_results(app: tuple[Client, TrainTab], data_dir: Path) -> None:
    client, tab = app
    job_id = start(client, data_dir / "demo" / "labels.csv", ["resnet18"])
    status = wait(client, job_id)
    assert status["state"] == "done", status["error"]
    assert status["progress"] == 1.0
    assert [row["arch"] for row in status["summary"]] == ["resnet18"]
    assert 0.0 <= status["summary"][0]["accuracy"] <= 1.0
    assert status["history"][0]["epoch"] == 1
    assert Path(status["run_dir"]) == tab.runner.runs_dir / job_id
    assert (Path(status["run_dir"]) / "resnet18" / "model.json").is_file()
    assert any(line.startswith("done") for line in status["log"])
    table = results_table(status["summary"])  # what the tab shows: CIs and the test-set size
    assert list(table["Model"]) == ["resnet18"] and table["Test photos"][0] == status["summary"][0]["n_test"]
    assert "(" in table["Accuracy"][0] and "-" in table["Accuracy"][0]
    assert "The test set has only" in results_note(status["summary"])


def test_start_then_cancel(app: tuple[Client, TrainTab], data_dir: Path) -> None:
    client, _ = app
    job_id = start(client, data_dir / "demo" / "labels.csv", [], extra="test_resnet", epochs=50, batch_size=8)
    wait(client, job_id, check=lambda status: status["progress"] > 0)
    assert client.predict(job_id, api_name="/cancel_training") == "running"
    status = wait(client, job_id)
    assert status["state"] == "cancelled"
    assert status["summary"] == [] and len(status["history"]) < 50
    assert status["config"]["archs"] == ["test_resnet"]


def test_bad_data_set_is_refused_with_message(app: tuple[Client, TrainTab], data_dir: Path) -> None:
    client, tab = app
    with pytest.raises(Exception, match="This data set cannot be used:.*no-such-labels.csv: no such file"):
        start(client, data_dir / "exports" / "no-such-labels.csv", ["resnet18"])
    assert tab.runner.list_jobs() == []  # refused before anything is queued
    with pytest.raises(Exception, match="choose at least one architecture"):
        start(client, data_dir / "demo" / "labels.csv", [])
    with pytest.raises(Exception, match="no training job 'nope'"):
        client.predict("nope", api_name="/training_status")


def test_paths_outside_the_data_folder_get_one_answer(app: tuple[Client, TrainTab]) -> None:
    client, tab = app
    answers = []
    for path in ("/root/.ssh/id_rsa", "/etc/passwd", "/etc/no-such-file"):
        with pytest.raises(Exception) as refused:
            start(client, path, ["resnet18"])
        answers.append(str(refused.value))
    assert len(set(answers)) == 1 and OUTSIDE in answers[0]
    assert tab.runner.list_jobs() == []


def test_a_1024_px_resnet18_is_refused_before_any_training(app: tuple[Client, TrainTab], data_dir: Path) -> None:
    client, tab = app
    with pytest.raises(Exception, match="image size 1024 px is above this server's limit of 384 px"):
        start(client, data_dir / "demo" / "labels.csv", ["resnet18"], image_size=1024, batch_size=32)
    assert tab.runner.list_jobs() == [] and not tab.runner.runs_dir.exists()


@pytest.mark.parametrize("seed", [-1, 1e23])
def test_a_seed_outside_the_64_bit_range_is_refused(app: tuple[Client, TrainTab], data_dir: Path, seed: float) -> None:
    client, tab = app
    with pytest.raises(Exception, match=r"seed must be from 0 to 2\*\*63-1"):
        start(client, data_dir / "demo" / "labels.csv", ["resnet18"], seed=seed)
    assert tab.runner.list_jobs() == []


def test_only_the_owner_or_a_coordinator_cancels(data_dir: Path, free_port: int) -> None:
    settings = Settings(data_dir=data_dir, auth=USERS, coordinators=("coord",), raters=("r1", "r2", "r3"),
                        visitors_can_train=True)
    demo, tab = serve(settings, free_port, auth=USERS)
    try:
        clients = {user: Client(demo.local_url, auth=(user, password), verbose=False) for user, password in USERS}
        job_id = start(clients["ana"], data_dir / "demo" / "labels.csv", [], extra="test_resnet", epochs=50,
                       batch_size=8)
        assert clients["coord"].predict(job_id, api_name="/training_status")["submitted_by"] == "ana"
        with pytest.raises(Exception, match="only the person who started this job or a coordinator"):
            clients["ben"].predict(job_id, api_name="/cancel_training")
        assert clients["ana"].predict(job_id, api_name="/cancel_training") in ("cancelled", "running")
        second = start(clients["ben"], data_dir / "demo" / "labels.csv", [], extra="test_resnet", epochs=50,
                       batch_size=8)
        assert clients["coord"].predict(second, api_name="/cancel_training") in ("cancelled", "running")
        assert wait(clients["coord"], second)["state"] == "cancelled"
    finally:
        stop(demo, tab)


def test_visitors_train_only_when_the_setting_allows(data_dir: Path, free_port: int) -> None:
    settings = Settings(data_dir=data_dir, auth=USERS, coordinators=("coord",), raters=("r1", "r2", "r3"))
    demo, tab = serve(settings, free_port, auth=USERS)
    try:
        for visitor_or_rater in (USERS[1], USERS[3]):
            with pytest.raises(Exception, match="only a coordinator may do this"):
                start(Client(demo.local_url, auth=visitor_or_rater, verbose=False), data_dir / "demo" / "labels.csv",
                      ["resnet18"])
        assert tab.runner.list_jobs() == []
    finally:
        stop(demo, tab)


def test_job_errors_render_as_plain_text() -> None:
    error = "bad file [x](http://e) and ![i](http://e/i.png) <img src=x onerror=alert(1)> **bold**"
    status = JobStatus(job_id="j", state="failed", progress=0.5, arch=None, epoch=None, archs=["resnet18"], epochs=1,
                       cancel_requested=False, submitted_by=None, error=error, log=[], history=[], summary=[],
                       run_dir="runs/j", figures=[], config={}, created=0.0, started=None, finished=None)
    html = MarkdownIt("commonmark").render(_headline(status))
    assert "<a " not in html and "<img" not in html and "<strong>bold" not in html
    assert "[x](http://e)" in html and "![i](http://e/i.png)" in html and "&lt;img src=x" in html


def test_curves_and_data_summary_show_only_this_job(data_dir: Path) -> None:
    history = [{"arch": "resnet18", "epoch": 1, "train_loss": 1.0, "val_loss": 1.1, "train_acc": 0.4, "val_acc": 0.3}]
    figure = curves_figure(history, ["resnet18"])
    labels = {text.get_text() for legend in figure.legends for text in legend.get_texts()}
    assert labels == {"resnet18 training", "resnet18 validation"}
    empty = curves_figure([], ["resnet18", "vgg16"])
    assert any(text.get_text() == "waiting for the first epoch" for text in empty.axes[0].texts)
    summary = data_summary(data_dir / "demo" / "labels.csv", (16.0, 32.0))
    assert "60 photos" in summary and "| mild |" in summary and "mild < 16" in summary
    empty_class = data_summary(data_dir / "demo" / "labels.csv", (47.0, 47.5))
    assert "cannot be used yet" in empty_class and "move the cut-offs" in empty_class
