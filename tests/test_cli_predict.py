"""`python -m melasma predict` and `explain`: JSON lines, bad files named, overlays written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from melasma.cli import main
from melasma.masi import SEVERITIES

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def bad_files(tmp_path: Path, roboflow_dir: Path) -> dict[str, Path]:
    """An empty file, a text file renamed .jpg and a JPEG cut in half."""
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("these are not pixels\n")
    real = min((roboflow_dir / "melasma").glob("*.jpg")).read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(real[: len(real) // 2])
    return {"empty": empty, "text": text, "truncated": truncated}


def test_predict_reports_bad_files_and_still_predicts_the_rest(
    bad_files: dict[str, Path], roboflow_dir: Path
) -> None:
    good = sorted((roboflow_dir / "melasma").glob("*.jpg"))[:2]
    images = [good[0], bad_files["empty"], bad_files["text"], bad_files["truncated"], good[1]]
    done = subprocess.run(
        [sys.executable, "-m", "melasma", "predict", *map(str, images)],
        cwd=REPO, capture_output=True, text=True, timeout=80,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["image"] for line in lines] == [str(p) for p in images]
    for line in (lines[0], lines[4]):
        assert line["severity"] in SEVERITIES
        assert list(line["probabilities"]) == list(SEVERITIES)
        assert sum(line["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    for line, path in zip(lines[1:4], images[1:4]):
        assert "severity" not in line
        assert path.name in line["error"]
    assert "empty" in lines[1]["error"]
    assert "not a recognised image" in lines[2]["error"]


def test_predict_all_good_exits_zero(roboflow_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo = min((roboflow_dir / "non-melasma").glob("*.jpg"))
    assert main(["predict", "--weights", str(REPO / "melasma" / "weights" / "demo"), str(photo)]) == 0
    printed = capsys.readouterr()
    line = json.loads(printed.out)
    assert line["image"] == str(photo) and line["severity"] in SEVERITIES
    # the demo's real_photos.json: stdout stays JSON, the caution goes to stderr
    assert printed.err.startswith("note: Not a grade on real photos. Measured on 94 real photos")


def test_explain_writes_an_overlay(
    roboflow_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = sorted((roboflow_dir / "melasma").glob("*.jpg"))[1]
    out = tmp_path / "figures" / "lrp.png"
    assert main(["explain", "--method", "lrp", str(photo), "--out", str(out)]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["out"] == str(out) and line["target"] in SEVERITIES and line["latency_ms"]["lrp"] > 0
    with Image.open(out) as overlay:
        assert overlay.format == "PNG" and overlay.width >= 100


def test_explain_bad_file_is_one_line(bad_files: dict[str, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "never.png"
    status = main(["explain", "--method", "gradcam", str(bad_files["truncated"]), "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 2 and not out.exists()
    assert err.startswith("error: ") and "truncated.jpg" in err and len(err.strip().splitlines()) == 1
