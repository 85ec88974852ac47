"""The MASI regression head (issue 13, point 7): training on the mean MASI, MAE/ICC with CIs and
the derived bins' metrics, a regression checkpoint for predict and evaluate, Table 1 beside a
classifier, and manifests without MASI values refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_absolute_error

from melasma.cli import main
from melasma.data.manifest import DatasetError
from melasma.inference import Predictor
from melasma.jsonable import jsonable
from melasma.masi import severity
from melasma.models import load_checkpoint
from melasma.training import TrainConfig, train_many
from melasma.training.evaluate import evaluate_checkpoint, format_table
from melasma.training.metrics import evaluate_regression, masi_bins
from melasma.training.report import merge_summaries

pytestmark = pytest.mark.slow


def _config(data: Path, out: Path, **changes) -> TrainConfig:
    values = dict(data=data, archs=("resnet10t",), epochs=2, batch_size=16, image_size=32, pretrained="off",
                  out=out, cache_dir=out.parent / "cache", bootstrap=100, head="regression")
    return TrainConfig(**{**values, **changes})


@pytest.fixture(scope="module")
def regression_run(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("regression") / "run"
    train_many(_config(synth_dir, out))
    return out


def test_masi_bins_match_the_severity_rule() -> None:
    values = np.array([0.0, 15.99, 16.0, 31.9, 32.0, 48.0])
    assert [("mild", "moderate", "severe")[i] for i in masi_bins(values, (16.0, 32.0))] == [
        severity(float(v), "masi", (16.0, 32.0)) for v in values]


def test_regression_metrics_against_scikit_learn_and_the_icc() -> None:
    rng = np.random.default_rng(0)
    true = rng.uniform(0, 48, 80)
    predicted = np.clip(true + rng.normal(0, 4, 80), 0, 48)
    result = evaluate_regression(true, predicted, (16.0, 32.0), n_resamples=200)
    assert result.metrics["mae"] == pytest.approx(mean_absolute_error(true, predicted))
    assert 0.8 < result.metrics["icc"] <= 1
    low, high = result.ci95["icc"]
    assert low < result.metrics["icc"] < high
    assert result.ci95["mae"][0] < result.metrics["mae"] < result.ci95["mae"][1]
    assert sum(map(sum, result.confusion_matrix)) == 80
    noise = evaluate_regression(true, rng.uniform(0, 48, 80), (16.0, 32.0), n_resamples=0)
    assert noise.metrics["icc"] < 0.3 and noise.metrics["mae"] > result.metrics["mae"]


def test_a_regression_run_writes_a_regression_checkpoint(regression_run: Path) -> None:
    arch_dir = regression_run / "resnet10t"
    model, meta = load_checkpoint(arch_dir)
    assert meta.head.name == "regression" and meta.config["head"] == "regression"
    assert model.get_classifier().out_features == 1
    metrics = json.loads((arch_dir / "metrics.json").read_text())
    for key in ("mae", "icc", "accuracy", "f1_weighted", "kappa_quadratic"):
        assert key in metrics["metrics"] and key in metrics["ci95"]
    assert "auc_macro" not in metrics["metrics"]
    assert metrics["subgroups"] and all("auc_macro" not in group for group in metrics["subgroups"])
    saved = pd.read_csv(arch_dir / "predictions.csv")
    assert len(saved) == metrics["n"]
    assert metrics["metrics"]["mae"] == pytest.approx(mean_absolute_error(saved["masi"], saved["predicted_masi"]))
    bins = masi_bins(saved["predicted_masi"].to_numpy(), meta.cutoffs)
    assert metrics["metrics"]["accuracy"] == pytest.approx(float(np.mean(bins == pd.Categorical(
        saved["severity"], categories=("mild", "moderate", "severe")).codes)))


def test_predict_gives_a_masi_and_its_bin(regression_run: Path, synth_dir: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    predictor = Predictor.from_checkpoint(regression_run / "resnet10t")
    photos = sorted((synth_dir / "images").iterdir())[:3]
    for photo in photos:
        result = predictor.predict(photo)
        assert result.masi is not None and 0 <= result.masi <= 48
        assert result.severity == severity(result.masi, "masi", predictor.meta.cutoffs)
        assert result.probabilities[result.severity] == 1.0 and sum(result.probabilities.values()) == 1.0
    with pytest.raises(ValueError, match="regression head"):
        predictor.explain(photos[0], "gradcam")
    assert main(["predict", "--weights", str(regression_run / "resnet10t"), str(photos[0])]) == 0
    line = json.loads(capsys.readouterr().out.splitlines()[0])
    assert 0 <= line["masi"] <= 48 and line["severity"] == severity(line["masi"], "masi", (16.0, 32.0))


def test_evaluate_a_regression_checkpoint(regression_run: Path, synth_dir: Path) -> None:
    result = evaluate_checkpoint(regression_run / "resnet10t", synth_dir, bootstrap=50, device="cpu")
    trained = json.loads((regression_run / "resnet10t" / "metrics.json").read_text())
    assert result.evaluation.metrics["mae"] == pytest.approx(trained["metrics"]["mae"], abs=1e-4)
    assert all(0 <= row["predicted_masi"] <= 48 for row in result.to_json()["predictions"])
    assert "ICC(2,1)" in format_table(result) and "macro AUC" not in format_table(result)


def test_table_1_puts_regression_beside_classifier_rows(regression_run: Path, synth_dir: Path,
                                                        tmp_path: Path) -> None:
    classifier = tmp_path / "classifier"
    train_many(_config(synth_dir, classifier, head="classification", epochs=1, cache_dir=regression_run.parent / "cache"))
    table = merge_summaries([classifier, regression_run], tmp_path / "both", ("mild", "moderate", "severe"))
    assert list(table["head"]) == ["classification", "regression"]
    assert np.isnan(table["mae"][0]) and np.isnan(table["auc_macro"][1]) and table["mae"][1] >= 0
    lines = (tmp_path / "both" / "summary.md").read_text().splitlines()
    header = [cell.strip() for cell in lines[0].split("|")]
    rows = {cells[2]: cells for cells in ([c.strip() for c in line.split("|")] for line in lines[2:4])}
    assert rows["classification"][header.index("MAE")] == "n/a"
    assert rows["regression"][header.index("AUC macro")] == "n/a"
    assert rows["regression"][header.index("ICC(2,1)")] != "n/a"


def test_a_manifest_without_masi_is_refused(synth_dir: Path, tmp_path: Path) -> None:
    labels = pd.read_csv(synth_dir / "labels.csv")
    labels["image"] = [str(synth_dir / name) for name in labels["image"]]
    labels.loc[:4, "masi"] = np.nan  # five images graded by severity only
    manifest = tmp_path / "labels.csv"
    labels.to_csv(manifest, index=False)
    with pytest.raises(DatasetError, match="5 of 60 images have no masi"):
        train_many(_config(manifest, tmp_path / "run"))
    assert not (tmp_path / "run" / "resnet10t").exists()
    with pytest.raises(ValueError, match="head must be one of"):
        _config(manifest, tmp_path / "run", head="ordinal")


@pytest.mark.parametrize("head", ["classification", "regression"])
def test_evaluate_gives_the_training_runs_own_metrics(head: str, regression_run: Path, synth_dir: Path,
                                                      tmp_path: Path) -> None:
    run = regression_run
    if head == "classification":
        run = tmp_path / "run"
        train_many(_config(synth_dir, run, head=head, epochs=1, cache_dir=regression_run.parent / "cache"))
    trained = json.loads((run / "resnet10t" / "metrics.json").read_text())
    result = evaluate_checkpoint(run / "resnet10t", synth_dir, bootstrap=100, batch_size=16, device="cpu")
    evaluated = json.loads(json.dumps(jsonable(result.to_json())))
    for key in ("n", "support", "metrics", "ci95", "confusion_matrix", "notes", "subgroups"):
        assert evaluated[key] == trained[key], key
    assert ("cutoffs" in evaluated) == (head == "regression") == ("cutoffs" in trained)
