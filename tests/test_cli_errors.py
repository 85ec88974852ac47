"""Every CLI failure ends with one `error: ...` line on stderr, exit 2 (usage) or 1 (run time), and no
traceback (issue 11). Each case runs `python -m melasma` as a subprocess, as a user would."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from melasma.cli import build_parser
from melasma.cli.arguments import MAX_SEED

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "melasma" / "weights" / "demo"


def _melasma(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if k not in ("MELASMA_DEBUG", "GRADIO_SERVER_PORT")}
    environment = {**inherited, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "melasma", *argv], capture_output=True, text=True,
                          cwd=ROOT, env=environment, check=False)


def _assert_error(done: subprocess.CompletedProcess[str], status: int, message: str) -> None:
    assert done.returncode == status, (done.returncode, done.stderr)
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "plain.txt"
    path.write_text("not a folder\n")
    return path


# -- usage errors: exit 2 ------------------------------------------------------------------------
USAGE = {  # id -> (argv, message)
    "train-lr-inf": (["train", "--data", "x", "--lr", "inf"], "argument --lr: must be a finite number, got 'inf'"),
    "train-lr-nan": (["train", "--data", "x", "--lr", "nan"], "argument --lr: must be a finite number"),
    "train-lr-zero": (["train", "--data", "x", "--lr", "0"], "argument --lr: must be above 0"),
    "train-wd-negative": (["train", "--data", "x", "--weight-decay=-1e-4"], "argument --weight-decay: must be 0 or more"),
    "train-epochs-zero": (["train", "--data", "x", "--epochs", "0"], "argument --epochs: must be at least 1"),
    "train-size-float": (["train", "--data", "x", "--image-size", "22.4"], "argument --image-size: expected a whole number"),
    "train-seed-huge": (["train", "--data", "x", "--seed", str(2**63)], "a seed must be from 0 to 2**63-1"),
    "jobs-seed-1e23": (["jobs", "submit", "--data", "x", "--seed", "1e23"], "argument --seed: expected a whole number, got '1e23'"),
    "jobs-list-limit": (["jobs", "list", "--limit", "-3"], "argument --limit: must be at least 1"),
    "synth-seed-negative": (["synth", "--out", "x", "--seed", "-1"], "a seed must be from 0 to 2**63-1, got -1"),
    "synth-n-zero": (["synth", "--out", "x", "--n", "0"], "must be at least 1, got 0"),
    "evaluate-batch-zero": (["evaluate", "--weights", "w", "--data", "d", "--batch-size", "0"], "argument --batch-size"),
    "report-steps-nan": (["explain-report", "--weights", "w", "--data", "d", "--out", "o", "--deletion-steps", "nan"],
                         "argument --deletion-steps: expected a whole number"),
    "serve-port-range": (["serve", "--port", "70000"], "argument --port: a port must be from 1 to 65535"),
    "predict-device-unknown": (["predict", "x.jpg", "--device", "tpu"], "unknown device 'tpu'"),
    "unknown-command": (["launch-rockets"], "argument COMMAND: invalid choice: 'launch-rockets'"),
    "rate-ratings-per-image": (["rate", "--rater", "r", "--ratings-per-image", "nan"], "argument --ratings-per-image"),
}


@pytest.mark.parametrize("case", list(USAGE))
def test_bad_flag_values_are_usage_errors(case: str) -> None:
    argv, message = USAGE[case]
    _assert_error(_melasma(*argv), 2, message)


def test_largest_seed_is_accepted() -> None:
    args = build_parser("synth").parse_args(["synth", "--out", "x", "--seed", str(MAX_SEED)])
    assert args.seed == MAX_SEED


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("command", [["predict", "x.jpg"], ["explain", "x.jpg", "--out", "o.png"],
                                     ["train", "--data", "x"]])
def test_cuda_without_a_gpu_is_refused_at_parse_time(command: list[str]) -> None:
    _assert_error(_melasma(*command, "--device", "cuda"), 2, "no CUDA GPU is available")


@pytest.mark.parametrize("count", [11, 13])
def test_rate_with_the_wrong_number_of_scores_names_the_count(tmp_path: Path, count: int) -> None:
    scores = ",".join(["1"] * count)
    done = _melasma("rate", "--rater", "rater1", "--image", "0123456789abcdef", "--scores", scores,
                    "--data-dir", str(tmp_path / "data"))
    _assert_error(done, 2, f"expected 12 scores, got {count}")


def test_tampered_checkpoint_std_zero_is_refused_not_nan(tmp_path: Path) -> None:
    weights = tmp_path / "ck"
    shutil.copytree(DEMO, weights)
    meta = json.loads((weights / "model.json").read_text())
    (weights / "model.json").write_text(json.dumps({**meta, "std": [0, 0, 0]}))
    photo = tmp_path / "face.png"
    Image.new("RGB", (64, 64), (150, 110, 90)).save(photo)
    done = _melasma("predict", str(photo), "--weights", str(weights))
    _assert_error(done, 2, "std must be 3 numbers above 0")
    assert done.stdout == ""


def test_data_dir_that_is_a_file(a_file: Path) -> None:
    _assert_error(_melasma("ingest", str(a_file), "--data-dir", str(a_file)), 2, "is a file, not a folder")


def test_gradio_port_variable_is_checked() -> None:
    _assert_error(_melasma("serve", env={"GRADIO_SERVER_PORT": "abc"}), 2, "GRADIO_SERVER_PORT: expected a whole number")


# -- run-time errors: exit 1 ------------------------------------------------------------------------
def test_synth_into_a_path_under_a_file(a_file: Path) -> None:
    _assert_error(_melasma("synth", "--out", str(a_file / "x"), "--n", "3", "--size", "32"), 1, "Not a directory")


def test_serve_on_a_busy_port_says_so(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        done = _melasma("serve", "--port", str(busy), "--data-dir", str(tmp_path / "data"))
    _assert_error(done, 1, f"cannot listen on 127.0.0.1:{busy}: Address already in use")


def test_debug_shows_the_traceback(a_file: Path) -> None:
    done = _melasma("--debug", "ingest", str(a_file), "--data-dir", str(a_file))
    assert done.returncode == 2 and "Traceback" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    done = _melasma("ingest", str(a_file), "--data-dir", str(a_file), env={"MELASMA_DEBUG": "1"})
    assert done.returncode == 2 and "Traceback" in done.stderr


def test_ingest_prints_one_line_per_file(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.new("RGB", (40, 30), (120, 80, 60)).save(good)
    eps = tmp_path / "scan.jpg"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n")
    done = _melasma("ingest", str(good), str(eps), str(good), "--data-dir", str(tmp_path / "data"))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    photo_id = json.loads(done.stdout)["added_ids"][0]
    assert done.stderr.splitlines() == [
        f"good.png: added {photo_id}", "scan.jpg: refused (not a recognised image file)",
        f"good.png: duplicate {photo_id}",
    ]


def test_ingest_pixel_budget_is_a_setting(tmp_path: Path) -> None:
    photos = []
    for i in range(3):
        photos.append(tmp_path / f"p{i}.png")
        Image.new("RGB", (800, 600), (40 * i, 90, 90)).save(photos[-1])  # 0.48 MP each
    done = _melasma("ingest", *map(str, photos), "--data-dir", str(tmp_path / "data"),
                    env={"MELASMA_MAX_UPLOAD_MEGAPIXELS": "1"})
    assert done.returncode == 1 and "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert [line.split(": ")[1].split()[0] for line in lines] == ["added", "added", "refused"]
    assert lines[2] == ("p2.png: refused (800x600 pixels would pass this upload's 1,000,000 pixel budget, "
                        "not decoded)")


def test_a_missing_package_is_one_line(tmp_path: Path) -> None:
    stand_in = tmp_path / "site" / "zennit"
    stand_in.mkdir(parents=True)
    (stand_in / "__init__.py").write_text("raise ImportError(\"No module named 'zennit'\")\n")
    photo = tmp_path / "face.png"
    Image.new("RGB", (64, 64), (150, 110, 90)).save(photo)
    done = _melasma("predict", str(photo), env={"PYTHONPATH": f"{tmp_path / 'site'}{os.pathsep}{ROOT}"})
    _assert_error(done, 1, "No module named 'zennit'")
