"""Training jobs cannot take the app down: worker processes, limits, memory estimate, data paths,
queue bounds, and no thread started at import. Waits are on job states, with waiting.py's generous
deadline."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from melasma.jobs import JobRunner
from melasma.jobs.datapath import OUTSIDE, DataPathError, training_data
from melasma.jobs.limits import LimitError, TrainingLimits
from melasma.jobs.memory import MemoryLimitError, estimate_bytes, free_ram, require_memory
from melasma.jobs.runner import enqueue
from melasma.jobs.store import QueueFullError
from melasma.jobs.worker import KILLED, describe_exit
from melasma.settings import Settings
from melasma.training import TrainConfig
from waiting import DEADLINE_S, wait_until

pytestmark = pytest.mark.live

REPO = Path(__file__).resolve().parents[1]
TINY = "test_resnet"


def tiny(data: Path, epochs: int = 1, batch_size: int = 64, **changes) -> TrainConfig:
    values = dict(data=data, archs=(TINY,), epochs=epochs, batch_size=batch_size, image_size=32, device="cpu",
                  pretrained="off", seed=0, patience=epochs, bootstrap=20)
    return TrainConfig(**{**values, **changes})


def test_a_killed_worker_fails_its_job_the_app_survives_and_restart_does_not_rerun_it(
        tmp_path: Path, synth_dir: Path) -> None:
    data_dir = tmp_path / "data"
    runner = JobRunner(data_dir).start()
    app_pid = os.getpid()
    try:
        doomed = runner.submit(tiny(synth_dir / "labels.csv", epochs=50, batch_size=8))
        following = runner.submit(tiny(synth_dir / "labels.csv"))
        # a batch was trained in the worker and reached the store: kill the worker as the OOM killer would
        pid = wait_until(lambda: (job := runner.store.get(doomed)).progress > 0 and job.worker_pid,
                         f"job {doomed} to train a batch in its worker")
        assert pid != app_pid
        os.kill(pid, signal.SIGKILL)
        failed = runner.wait(doomed, timeout=DEADLINE_S)
        assert failed.state == "failed" and failed.error == KILLED
        assert "out of memory" in failed.error and "SIGKILL" in failed.error
        assert failed.log[-1] == f"failed: {KILLED}"
        assert runner.wait(following, timeout=DEADLINE_S).state == "done"  # the queue goes on in the same app process
        assert runner._thread is not None and runner._thread.is_alive()
    finally:
        runner.close()
    restarted = JobRunner(data_dir).start()  # the app restarts: nothing is queued again
    try:
        jobs = {job["job_id"]: job["state"] for job in restarted.list_jobs()}
        assert jobs == {doomed: "failed", following: "done"}
        assert restarted.store.claim("probe", lambda owner: False) is None
    finally:
        restarted.close()


def test_exit_reasons_name_the_signal() -> None:
    assert describe_exit(-signal.SIGKILL) == KILLED
    assert "SIGTERM" in describe_exit(-signal.SIGTERM)
    assert describe_exit(1, "Traceback (most recent call last):\nValueError: bad") == \
        "the training process exited with status 1: ValueError: bad"


def test_a_running_job_of_a_dead_app_is_failed_not_rerun(tmp_path: Path, synth_dir: Path) -> None:
    """The app process dies mid-job (kill -9): its worker dies with it, the restart fails the job."""
    data_dir = tmp_path / "data"
    script = (f"from melasma.jobs import JobRunner; from melasma.training import TrainConfig; import time\n"
              f"r = JobRunner({str(data_dir)!r})\n"
              f"r.submit(TrainConfig(data={str(synth_dir / 'labels.csv')!r}, archs=({TINY!r},), epochs=50, "
              f"batch_size=8, image_size=32, device='cpu', pretrained='off', patience=50))\n"
              f"time.sleep(3600)\n")
    app = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    try:
        from melasma.jobs.store import JobStore

        store = JobStore(data_dir / "jobs.sqlite")
        job_id = wait_until(lambda: next((job["job_id"] for job in store.list() if job["progress"] > 0), None),
                            "the dying app's job to train a batch")
        worker_pid = store.get(job_id).worker_pid
    finally:
        app.kill()
        app.wait()
    wait_until(lambda: not Path(f"/proc/{worker_pid}").exists() or
               "zombie" in Path(f"/proc/{worker_pid}/status").read_text().lower(),
               f"the dead app's worker {worker_pid} to end")
    restarted = JobRunner(data_dir)
    try:
        job = restarted.status(job_id)
        assert job.state == "failed" and "not restarted" in job.error
    finally:
        restarted.close()


def test_limits_refuse_a_1024_px_resnet18_before_anything_is_queued(tmp_path: Path, synth_dir: Path) -> None:
    big = tiny(synth_dir / "labels.csv", archs=("resnet18",), image_size=1024, epochs=500, batch_size=512)
    with pytest.raises(LimitError) as refused:
        enqueue(tmp_path / "data", big, limits=TrainingLimits.from_settings(Settings()))
    message = str(refused.value)
    for part in ("image size 1024 px is above this server's limit of 384 px", "epochs 500", "batch size 512"):
        assert part in message
    assert not (tmp_path / "data" / "jobs.sqlite").exists() or not JobRunner(tmp_path / "data").list_jobs()
    assert TrainingLimits.from_settings(Settings.from_env({"MELASMA_MAX_IMAGE_SIZE": "1024"})).max_image_size == 1024
    with pytest.raises(ValueError, match="MELASMA_MAX_EPOCHS"):
        Settings.from_env({"MELASMA_MAX_EPOCHS": "many"})
    with pytest.raises(ValueError, match="MELASMA_MAX_JOBS must be a whole number >= 1, got 0"):
        Settings(max_jobs=0)


def test_memory_estimate_refuses_with_the_numbers(synth_dir: Path) -> None:
    big = tiny(synth_dir / "labels.csv", archs=("resnet18",), image_size=1024, batch_size=32)
    started = time.perf_counter()
    with pytest.raises(MemoryLimitError) as refused:
        require_memory(big, free=int(3.1e9))
    elapsed = time.perf_counter() - started
    assert re.search(r"needs about 2\d\.\d GB of RAM, 3\.1 GB free", str(refused.value)), str(refused.value)
    assert require_memory(tiny(synth_dir / "labels.csv"), free=int(3.1e9)).fits
    small, large = estimate_bytes("resnet18", 128, 32), estimate_bytes("resnet18", 256, 32)
    assert 1.2e9 < small < 1.8e9 and large > 2 * (small - 1e9)  # activations grow with the pixel count
    assert 0 < free_ram()
    print(f"refusal took {elapsed:.2f} s")


def test_queue_bounds_per_user_and_in_total(tmp_path: Path, synth_dir: Path) -> None:
    limits = TrainingLimits.from_settings(Settings(max_jobs_per_user=1, max_jobs=2))
    config = tiny(synth_dir / "labels.csv")
    enqueue(tmp_path, config, user="ana", limits=limits)
    with pytest.raises(QueueFullError, match="you already have 1 training job"):
        enqueue(tmp_path, config, user="ana", limits=limits)
    enqueue(tmp_path, config, user="ben", limits=limits)
    with pytest.raises(QueueFullError, match="2 training jobs are already waiting or running"):
        enqueue(tmp_path, config, user="cy", limits=limits)


@pytest.mark.parametrize("outside", ["/root/.ssh/id_rsa", "/etc/passwd", "/no/such/file.csv", "../x", "",
                                     "~/../../secret"])
def test_data_outside_the_data_folder_gets_one_message(tmp_path: Path, outside: str) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "exports").mkdir(parents=True)
    with pytest.raises(DataPathError) as refused:
        training_data(outside, data_dir)
    assert str(refused.value) == OUTSIDE
    (data_dir / "exports" / "escape").symlink_to("/etc")
    with pytest.raises(DataPathError):
        training_data(data_dir / "exports" / "escape" / "passwd", data_dir)
    inside = training_data("exports/set/labels.csv", data_dir)
    assert inside == (data_dir / "exports" / "set" / "labels.csv").resolve()


def test_importing_the_app_starts_no_thread() -> None:
    probe = ("import threading; before = threading.active_count()\n"
             "import app, melasma.ui.app, melasma.ui.train, melasma.jobs, melasma.jobs.worker, melasma.inference\n"
             "print(threading.active_count() - before, [t.name for t in threading.enumerate()])")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("0 "), result.stdout


def test_a_runner_starts_no_thread_until_started(tmp_path: Path) -> None:
    before = threading.active_count()
    runner = JobRunner(tmp_path / "data")
    try:
        assert threading.active_count() == before
        runner.start()
        assert threading.active_count() == before + 1
    finally:
        runner.close()


def test_the_served_app_starts_its_job_runner_after_launch(tmp_path: Path) -> None:
    from live_app import live_app

    with live_app(tmp_path / "data"):
        runner = JobRunner.shared(tmp_path / "data")
        assert runner._thread is not None and runner._thread.is_alive()
