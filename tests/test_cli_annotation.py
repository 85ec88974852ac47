"""The annotation commands: ingest, rate, agreement, export - the Annotate tab without a browser."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from melasma.cli import main
from melasma.data.synthetic import generate, rater_scores
from melasma.masi import REGIONS, consensus, masi

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ITEMS = ("area", "darkness", "homogeneity")


def _flat(scores: dict) -> str:
    return ",".join(str(scores[region][item]) for region in REGIONS for item in ITEMS)


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture()
def photos(tmp_path: Path) -> pd.DataFrame:
    labels = pd.read_csv(generate(tmp_path / "synth", n=6, seed=4, size=96))
    labels["path"] = [str(tmp_path / "synth" / image) for image in labels["image"]]
    return labels


def test_ingest_rate_agreement_export_round_trip(photos: pd.DataFrame, tmp_path: Path, capsys) -> None:
    data = str(tmp_path / "data")
    (tmp_path / "notes.jpg").write_text("not a photo")
    status, out, _ = _run(capsys, "ingest", *photos["path"], str(tmp_path / "notes.jpg"),
                          "--patient-id", "P-7", "--data-dir", data)
    summary = json.loads(out)
    assert status == 1 and summary["added"] == 6 and summary["errors"] == ["notes.jpg: not a recognised image file"]
    assert all((tmp_path / "data" / "photos" / f"{i}.jpg").is_file() for i in summary["added_ids"])
    ids = dict(zip(summary["added_ids"], photos.to_dict("records")))

    for rater in (1, 2, 3):
        for image_id, row in ids.items():
            scores = rater_scores(row, rater)
            status, out, _ = _run(capsys, "rate", "--rater", f"rater{rater}", "--image", image_id,
                                  "--scores", _flat(scores), "--data-dir", data)
            entry = json.loads(out)
            assert status == 0 and entry["masi"] == pytest.approx(masi(scores)) and entry["revision"] == 1
    status, out, _ = _run(capsys, "rate", "--rater", "rater1", "--data-dir", data)
    assert json.loads(out)["next_image"] is None  # rater1 has rated everything

    plot = tmp_path / "agreement.png"
    status, out, _ = _run(capsys, "agreement", "--data-dir", data, "--plot", str(plot))
    report = json.loads(out)
    assert status == 0 and report["complete"] == 6 and report["columns"] == ["rater1", "rater2", "rater3"]
    assert 0.5 < report["masi_icc"]["2,1"]["icc"] <= report["masi_icc"]["2,k"]["icc"] <= 1
    assert plot.stat().st_size > 5000

    status, out, _ = _run(capsys, "export", "--data-dir", data, "--out", str(tmp_path / "exports"))
    assert status == 0 and "exported 6 photos" in out
    (folder,) = (tmp_path / "exports").iterdir()
    manifest = pd.read_csv(folder / "manifest.csv")
    for _, exported in manifest.iterrows():
        row = ids[Path(exported["image"]).stem]
        expected = consensus([rater_scores(row, r) for r in (1, 2, 3)])
        assert exported["masi"] == pytest.approx(expected.masi, abs=0.05)
        assert exported["severity"] == expected.severity == row["severity"]
        assert exported["patient_id"] == "P-7"
    assert len(pd.read_csv(folder / "ratings.csv")) == 6 * 3 * len(REGIONS)


def test_rate_refuses_bad_input_and_stores_nothing(photos: pd.DataFrame, tmp_path: Path, capsys) -> None:
    data = str(tmp_path / "data")
    _, out, _ = _run(capsys, "ingest", photos["path"][0], "--data-dir", data)
    (image_id,) = json.loads(out)["added_ids"]
    good = "3,2,2,2,2,1,2,2,1,1,1,1"
    cases = [
        (("--rater", "mallory", "--image", image_id, "--scores", good), "unknown rater 'mallory'"),
        (("--rater", "rater1", "--image", image_id, "--scores", "7" + good[1:]), "forehead.area must be an integer 0-6, got 7"),
        (("--rater", "rater1", "--image", image_id, "--scores", "1,2"), "expected 12 scores, got 2"),
        (("--rater", "rater1", "--image", image_id, "--scores", "a,b"), "must be 12 comma-separated integers"),
        (("--rater", "rater1", "--image", "0123456789abcdef", "--scores", good), "unknown image"),
        (("--rater", "rater1", "--image", image_id), "--scores is required"),
    ]
    for argv, message in cases:
        status, _, err = _run(capsys, "rate", *argv, "--data-dir", data)
        assert status == 2 and message in err, (argv, err)
    status, out, _ = _run(capsys, "agreement", "--data-dir", data)
    assert json.loads(out)["progress"]["rater1"]["rated"] == 0
    status, _, err = _run(capsys, "export", "--data-dir", data)
    assert status == 2 and "nothing to export yet" in err


def test_environment_sets_the_data_folder_for_a_real_process(photos: pd.DataFrame, tmp_path: Path) -> None:
    env = {**os.environ, "MELASMA_DATA_DIR": str(tmp_path / "envdata"), "MELASMA_RATERS": "ana,ben"}
    done = subprocess.run([sys.executable, "-m", "melasma", "ingest", photos["path"][1]],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (image_id,) = json.loads(done.stdout)["added_ids"]
    done = subprocess.run([sys.executable, "-m", "melasma", "rate", "--rater", "ana"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert json.loads(done.stdout)["next_image"] == image_id
    assert (tmp_path / "envdata" / "annotations.sqlite").is_file()
