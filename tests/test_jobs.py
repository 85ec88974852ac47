"""JobRunner on a tiny synthetic set: done, cancelled, failed, queued in order, restart persistence.

No wall-clock limits: every wait is on a job state, so a loaded machine is slower, never red."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from melasma.jobs import JobNotFoundError, JobRunner
from melasma.jobs.execute import config_to_dict, describe_error
from melasma.jobs.store import INTERRUPTED, JobStore, owner_string
from melasma.training import TrainConfig
from waiting import DEADLINE_S, wait_until

pytestmark = pytest.mark.slow


#: timm's smallest CNN (0.4 M parameters): real training in a fraction of resnet18's time.
TINY = "test_resnet"


def tiny(data: Path, archs: tuple[str, ...] = (TINY,), epochs: int = 1, batch_size: int = 64) -> TrainConfig:
    """A run of a few seconds on a 2-core CPU (one batch per epoch by default)."""
    return TrainConfig(data=data, archs=archs, epochs=epochs, batch_size=batch_size, image_size=32,
                       device="cpu", pretrained="off", seed=0, patience=epochs, bootstrap=20)


@pytest.fixture
def runner(tmp_path: Path):
    runner = JobRunner(tmp_path / "data")
    yield runner
    for job in runner.list_jobs():
        if job["state"] in ("queued", "running"):
            runner.cancel(job["job_id"])
    runner.close()


def dead_owner() -> str:
    """The owner string of a process that has exited."""
    process = subprocess.Popen(["true"])
    process.wait()
    host, _, _ = owner_string("x").partition("|")
    return f"{host}|{process.pid}|gone"


def _one_running_at_most(runner: JobRunner) -> list[str]:
    """Every job's state in one snapshot; fails if two jobs run at once."""
    states = [job["state"] for job in runner.list_jobs()]
    assert states.count("running") <= 1, states
    return states


def test_presses_queue_in_order_one_at_a_time_and_finish(runner: JobRunner, tmp_path: Path,
                                                         synth_dir: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("image,severity\nnowhere.png,mild\n")
    failed = runner.submit(tiny(bad))
    config = tiny(synth_dir / "labels.csv")
    ids: list[str] = []
    presses = [threading.Thread(target=lambda: ids.append(runner.submit(config))) for _ in range(2)]
    for press in presses:
        press.start()
    for press in presses:
        press.join()
    assert len(set(ids)) == 2
    # one snapshot of all states per look (reading job by job can straddle a hand-over)
    wait_until(lambda: _one_running_at_most(runner), "the three jobs to end, one at a time",
               done=lambda states: all(state in ("done", "failed") for state in states), interval_s=0.05)
    assert [runner.status(job_id).state for job_id in ids] == ["done", "done"]

    status = runner.status(failed)  # a bad data set fails with the DatasetError message ...
    assert status.state == "failed" and "nowhere.png" in status.error
    assert status.log[-1] == f"failed: {status.error}"
    first, second = sorted((runner.status(job_id) for job_id in ids), key=lambda s: s.started)
    assert first.started >= status.finished  # ... and the queue moves on, in order, one at a time
    assert second.started >= first.finished

    assert first.progress == 1.0
    assert [row["arch"] for row in first.summary] == [TINY]
    assert 0.0 <= first.summary[0]["accuracy"] <= 1.0
    assert [(row["arch"], row["epoch"]) for row in first.history] == [(TINY, 1)]
    run_dir = Path(first.run_dir)
    assert run_dir == runner.runs_dir / first.job_id
    assert (run_dir / TINY / "model.json").is_file() and (run_dir / "summary.csv").is_file()
    assert first.figures and all(Path(path).is_file() for path in first.figures)
    assert first.log[0].startswith("queued") and first.log[-1].startswith("done")
    answer = json.loads(json.dumps(first.to_json()))  # the /training_status answer: plain JSON
    assert answer["job_id"] == first.job_id and answer["history"] == first.history and len(answer) == 19


def test_cancel_stops_within_a_batch_and_keeps_finished_archs(runner: JobRunner, synth_dir: Path) -> None:
    # Many short batches per epoch and many epochs: the second architecture runs for hundreds of
    # batches, so the cancel lands while it trains however slowly this test process is scheduled.
    second, epochs = "test_efficientnet", 20
    job_id = runner.submit(tiny(synth_dir / "labels.csv", archs=(TINY, second), epochs=epochs, batch_size=4))
    wait_until(lambda: runner.status(job_id).arch, f"job {job_id} to train {second}",
               done=lambda arch: arch == second, interval_s=0.05)
    assert runner.cancel(job_id) == "running"
    epochs_at_cancel = sum(row["arch"] == second for row in runner.status(job_id).history)
    status = runner.wait(job_id, timeout=DEADLINE_S)
    assert status.state == "cancelled"
    epochs_of_second = sum(row["arch"] == second for row in status.history)
    assert epochs_of_second <= epochs_at_cancel + 1, "cancel must act within a batch, not after more epochs"
    assert epochs_of_second < epochs
    assert [row["arch"] for row in status.summary] == [TINY]  # the finished architecture is kept
    assert (Path(status.run_dir) / TINY / "model.json").is_file()
    assert not (Path(status.run_dir) / second / "model.json").exists()


def test_restart_shows_past_jobs_and_fails_interrupted_ones(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    store = JobStore(data_dir / "jobs.sqlite")
    store.add("old-running", {"archs": ["resnet18"], "epochs": 1}, data_dir / "runs" / "old-running")
    queued = config_to_dict(tiny(tmp_path / "missing.csv"))
    store.add("old-queued", queued, data_dir / "runs" / "old-queued")
    assert store.claim(dead_owner(), lambda owner: False) == "old-running"

    runner = JobRunner(data_dir).start()  # the "restarted app"
    try:
        crashed = runner.status("old-running")
        assert crashed.state == "failed" and crashed.error == INTERRUPTED
        assert [job["job_id"] for job in runner.list_jobs()] == ["old-queued", "old-running"]
        picked_up = runner.wait("old-queued", timeout=DEADLINE_S)  # the queue survives the restart too
        assert picked_up.state == "failed" and "missing.csv" in picked_up.error
        with pytest.raises(JobNotFoundError, match="no training job 'nope'"):
            runner.status("nope")
    finally:
        runner.close()
    again = JobRunner(data_dir)
    try:
        assert {job["job_id"]: job["state"] for job in again.list_jobs()} == {
            "old-queued": "failed", "old-running": "failed"}
    finally:
        again.close()


def test_out_of_memory_reads_as_advice() -> None:
    message = describe_error(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), "vgg16")
    assert message.startswith("out of memory while training vgg16")
    assert "batch size" in message
    assert describe_error(RuntimeError("boom\ntrace"), "resnet18") == "RuntimeError while training resnet18: boom"


def test_a_refusal_reads_as_written_a_bug_by_its_type() -> None:
    """Issue 28: only a UserError's text is the job's error as written; a ValueError from a bug names its type."""
    from melasma.data.splits import DatasetError

    refusal = DatasetError("labels.csv: 2 problem(s):\n  - line 2: no image\n  - line 3: no image")
    assert describe_error(refusal, "resnet18") == str(refusal)
    bug = ValueError("operands could not be broadcast together with shapes (3,) (4,)\nmore")
    assert describe_error(bug, "resnet18") == ("ValueError while training resnet18: operands could not be broadcast "
                                               "together with shapes (3,) (4,)")


def test_training_runs_under_spaces_gpu_only_on_zerogpu() -> None:
    from melasma.jobs import runner as runner_module
    from melasma.jobs.execute import run_job

    assert runner_module.train_job is run_job  # no ZeroGPU here: called directly, spaces not imported
    probe = ("import sys, melasma.jobs.runner as r; "
             "print(hasattr(r.train_job, 'zerogpu'), r.train_job.__wrapped__ is r.run_job, 'spaces' in sys.modules)")
    env = {**os.environ, "SPACES_ZERO_GPU": "true", "SPACES_ZERO_DEVICE_API_URL": "http://127.0.0.1:9"}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1], check=False)
    assert result.stdout.split() == ["True", "True", "True"], result.stderr[-2000:]
