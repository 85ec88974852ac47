"""`python -m melasma train` / `evaluate`: end to end on the synthetic set; bad data fails early."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from melasma.cli import main

pytestmark = pytest.mark.slow


def test_train_then_evaluate(synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    code = main(["train", "--data", str(synth_dir), "--arch", "resnet18", "--epochs", "1", "--batch-size", "16",
                 "--image-size", "32", "--out", str(run), "--device", "cpu", "--pretrained", "off",
                 "--seed", "0", "--cache-dir", str(tmp_path / "cache"), "--bootstrap", "100"])
    out = capsys.readouterr().out
    assert code == 0
    assert "| resnet18 |" in out and "Accuracy" in out
    for name in ("model.safetensors", "model.json", "metrics.json", "history.csv", "learning_curves.png",
                 "roc.png", "confusion.png"):
        assert (run / "resnet18" / name).is_file(), name
    assert list(pd.read_csv(run / "summary.csv")["arch"]) == ["resnet18"]
    trained = json.loads((run / "resnet18" / "metrics.json").read_text())

    report = tmp_path / "eval.json"
    code = main(["evaluate", "--weights", str(run / "resnet18"), "--data", str(synth_dir), "--device", "cpu",
                 "--cache-dir", str(tmp_path / "cache"), "--bootstrap", "100", "--out", str(report)])
    out = capsys.readouterr().out
    assert code == 0 and "resnet18 on test split" in out and "AUC severe" in out
    evaluated = json.loads(report.read_text())
    # the same held-out images and the same predictions as the training run's report
    assert evaluated["n"] == trained["n"] and evaluated["support"] == trained["support"]
    assert evaluated["metrics"]["accuracy"] == pytest.approx(trained["metrics"]["accuracy"])
    assert evaluated["confusion_matrix"] == trained["confusion_matrix"]
    assert evaluated["notes"] == trained["notes"]
    assert evaluated["subgroups"] == trained["subgroups"] and len(trained["subgroups"]) >= 2  # fitzpatrick groups
    assert "skin type" in out


def test_bad_data_fails_before_training(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "bad"
    data.mkdir()
    (data / "labels.csv").write_text("image,severity\nmissing1.jpg,mild\nmissing2.jpg,moderate\n")
    run = tmp_path / "run"
    code = main(["train", "--data", str(data), "--arch", "resnet18", "--epochs", "1", "--image-size", "32",
                 "--out", str(run), "--device", "cpu", "--pretrained", "off"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and "2 problem(s)" in err
    assert "missing1.jpg" in err and "missing2.jpg" in err  # every problem listed, not only the first
    assert "Traceback" not in err
    assert not run.exists()  # nothing was trained or written


def test_bad_arguments_are_one_line_errors(synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["train", "--data", str(synth_dir), "--arch", "resnet99", "--out", str(tmp_path / "r")])
    assert code == 2 and "unknown architecture 'resnet99'" in capsys.readouterr().err
    code = main(["evaluate", "--weights", str(tmp_path / "nothing"), "--data", str(synth_dir)])
    err = capsys.readouterr().err
    assert code == 2 and "is not a checkpoint" in err and len(err.strip().splitlines()) == 1


def test_train_flag_defaults_are_train_configs() -> None:
    """One source of truth: every train flag's default is TrainConfig's field default."""
    import argparse
    from dataclasses import MISSING, fields

    from melasma.cli.train import add_arguments
    from melasma.training import TrainConfig

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    flags = vars(parser.parse_args(["--data", "x"]))
    assert flags["arch"].split(",") == list(defaults["archs"])
    shared = {"epochs", "batch_size", "image_size", "lr", "weight_decay", "patience", "device", "pretrained",
              "seed", "bootstrap", "head"}
    assert {name: flags[name] for name in shared} == {name: defaults[name] for name in shared}
