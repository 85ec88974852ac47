"""`python -m melasma jobs`: the Train tab's queue from a terminal - submit, list, status, cancel, work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from melasma.cli import main
from melasma.data.synthetic import generate
from melasma.jobs import JobRunner
from waiting import DEADLINE_S

pytestmark = pytest.mark.slow

TINY = ("--arch", "resnet10t", "--epochs", "2", "--image-size", "32", "--batch-size", "8",
        "--pretrained", "off", "--device", "cpu")


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_submit_list_work_status_cancel(tmp_path: Path, capsys) -> None:
    generate(tmp_path / "faces", n=30, seed=2, size=64)
    data_dir = str(tmp_path / "data")
    _, out, _ = _run(capsys, "jobs", "submit", "--data", str(tmp_path / "faces"), *TINY, "--data-dir", data_dir)
    good = out.strip()
    _, out, _ = _run(capsys, "jobs", "submit", "--data", str(tmp_path / "missing"), *TINY, "--data-dir", data_dir)
    bad = out.strip()
    _, out, _ = _run(capsys, "jobs", "submit", "--data", str(tmp_path / "faces"), *TINY, "--data-dir", data_dir)
    cancelled = out.strip()
    assert len({good, bad, cancelled}) == 3

    status, out, _ = _run(capsys, "jobs", "list", "--data-dir", data_dir)
    assert [line.split()[:2] for line in out.splitlines()] == [[cancelled, "queued"], [bad, "queued"], [good, "queued"]]
    assert _run(capsys, "jobs", "cancel", cancelled, "--data-dir", data_dir)[1].strip() == f"{cancelled}: cancelled"

    status, out, _ = _run(capsys, "jobs", "work", "--data-dir", data_dir)
    assert status == 1  # one job failed
    assert f"[{good}] resnet10t epoch 2/2" in out and f"{good}: done" in out
    assert f"[{bad}] failed: {tmp_path / 'missing'}: no such file or folder" in out and f"{bad}: failed" in out

    _, out, _ = _run(capsys, "jobs", "status", good, "--data-dir", data_dir)
    report = json.loads(out)
    assert report["state"] == "done" and [row["epoch"] for row in report["history"]] == [1, 2]
    assert Path(report["run_dir"], "resnet10t", "model.safetensors").is_file()
    assert json.loads(_run(capsys, "jobs", "status", cancelled, "--data-dir", data_dir)[1])["state"] == "cancelled"

    status, _, err = _run(capsys, "jobs", "status", "nope", "--data-dir", data_dir)
    assert status == 2 and "no training job 'nope'" in err


def test_a_queued_job_is_run_by_the_apps_runner(tmp_path: Path, capsys) -> None:
    generate(tmp_path / "faces", n=30, seed=3, size=64)
    data_dir = tmp_path / "data"
    _, out, _ = _run(capsys, "jobs", "submit", "--data", str(tmp_path / "faces"), *TINY, "--data-dir", str(data_dir))
    runner = JobRunner(data_dir).start()  # what the app holds: its worker polls the queue
    try:
        assert runner.wait(out.strip(), timeout=DEADLINE_S).state == "done"
    finally:
        runner.close()


def test_jobs_cancel_says_what_it_did() -> None:
    from melasma.cli.jobs import cancel_message

    assert cancel_message("j1", "running") == (
        "j1: cancel requested; it stops after its current batch (keeping finished architectures)")
    assert cancel_message("j1", "cancelled") == "j1: cancelled"
    assert cancel_message("j1", "done") == "j1: already done, nothing to cancel"
