"""Study metrics: checked against scikit-learn, ECE by hand, bootstrap CIs, absent classes, Table 1."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from melasma.masi import SEVERITIES
from melasma.training.metrics import _weighted, evaluate_predictions, expected_calibration_error
from melasma.training.report import summary_row, to_markdown, write_summary


@pytest.fixture
def predictions() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    logits = rng.normal(size=(120, 3)) + 1.5 * np.eye(3)[y]  # informative but imperfect
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    probs[:10] = np.round(probs[:10], 1)  # ties in the scores
    return y, probs / probs.sum(1, keepdims=True)


def test_point_metrics_match_sklearn(predictions) -> None:
    y, probs = predictions
    result = evaluate_predictions(y, probs, SEVERITIES, n_resamples=0)
    m, pred = result.metrics, probs.argmax(1)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    for average in ("weighted", "macro"):
        assert m[f"precision_{average}"] == pytest.approx(skm.precision_score(y, pred, average=average))
        assert m[f"recall_{average}"] == pytest.approx(skm.recall_score(y, pred, average=average))
        assert m[f"f1_{average}"] == pytest.approx(skm.f1_score(y, pred, average=average))
    assert m["recall_weighted"] == pytest.approx(m["accuracy"])  # why the study's recall equals accuracy
    for c, name in enumerate(SEVERITIES):
        assert m[f"auc_{name}"] == pytest.approx(skm.roc_auc_score(y == c, probs[:, c]))
    assert m["auc_macro"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    assert m["kappa_quadratic"] == pytest.approx(skm.cohen_kappa_score(y, pred, weights="quadratic"))
    assert result.confusion_matrix == skm.confusion_matrix(y, pred).tolist()
    assert result.support == {name: int((y == c).sum()) for c, name in enumerate(SEVERITIES)}


def test_vectorised_bootstrap_path_equals_sklearn_with_unit_weights(predictions) -> None:
    y, probs = predictions
    point = evaluate_predictions(y, probs, SEVERITIES, n_resamples=0).metrics
    weighted = _weighted(np.ones((1, len(y))), y, probs)
    renamed = {f"auc_{name}": weighted[f"auc_{c}"][0] for c, name in enumerate(SEVERITIES)}
    for name, value in point.items():
        assert renamed.get(name, weighted.get(name, [math.nan])[0]) == pytest.approx(value), name


def test_ece_hand_computed() -> None:
    y = np.array([0, 1, 1, 2])
    probs = np.array([[0.9, 0.05, 0.05],  # conf 0.90, correct   -> bin (0.867, 0.933]
                      [0.6, 0.3, 0.1],    # conf 0.60, wrong     -> bin (0.533, 0.600]
                      [0.2, 0.7, 0.1],    # conf 0.70, correct   -> bin (0.667, 0.733]
                      [0.1, 0.2, 0.7]])   # conf 0.70, correct   -> same bin
    # |1 - 0.9| * 1/4 + |0 - 0.6| * 1/4 + |1 - 0.7| * 2/4 = 0.025 + 0.15 + 0.15
    assert expected_calibration_error(y, probs) == pytest.approx(0.325)
    assert expected_calibration_error(np.array([0, 1]), np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])) == 0


def test_bootstrap_ci_contains_point_and_is_seeded(predictions) -> None:
    y, probs = predictions
    result = evaluate_predictions(y, probs, SEVERITIES, n_resamples=1000, seed=3)
    assert set(result.ci95) == set(result.metrics) - {"ece"}
    for name, low_high in result.ci95.items():
        value, (low, high) = result.metrics[name], low_high
        assert low <= value <= high, name
        assert high - low < 0.4, name
    assert evaluate_predictions(y, probs, SEVERITIES, n_resamples=1000, seed=3).ci95 == result.ci95
    assert evaluate_predictions(y, probs, SEVERITIES, n_resamples=1000, seed=4).ci95 != result.ci95


def test_absent_class_gives_nan_auc_with_a_note() -> None:
    y = np.array([0, 0, 1, 1, 0, 1])
    probs = np.array([[0.7, 0.2, 0.1], [0.5, 0.4, 0.1], [0.3, 0.6, 0.1],
                      [0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [0.4, 0.5, 0.1]])
    result = evaluate_predictions(y, probs, SEVERITIES, n_resamples=200)
    assert math.isnan(result.metrics["auc_severe"])
    assert result.metrics["auc_mild"] == pytest.approx(skm.roc_auc_score(y == 0, probs[:, 0]))
    assert any("severe" in note for note in result.notes)
    assert all(math.isnan(v) for v in result.ci95["auc_severe"])


def test_bad_input_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match="probabilities shaped"):
        evaluate_predictions([0, 1], np.ones((2, 2)) / 2, SEVERITIES)
    with pytest.raises(ValueError, match="labels must lie in 0..2"):
        evaluate_predictions([0, 3], np.ones((2, 3)) / 3, SEVERITIES)


def test_summary_table_csv_and_markdown(tmp_path, predictions) -> None:
    y, probs = predictions
    evaluation = evaluate_predictions(y, probs, SEVERITIES, n_resamples=200)
    rows = [summary_row("resnet18", evaluation, {"pretrained": "torchvision IMAGENET1K_V1", "collapsed": False}),
            summary_row("googlenet", evaluation, {"pretrained": "random init", "collapsed": True,
                                                  "collapse_cause": "one predicted class on test"})]
    summary = write_summary(rows, tmp_path, SEVERITIES)
    assert list(pd.read_csv(tmp_path / "summary.csv")["arch"]) == ["resnet18", "googlenet"]
    assert {"accuracy", "accuracy_lo", "accuracy_hi", "auc_severe", "kappa_quadratic", "ece"} <= set(summary)
    text = (tmp_path / "summary.md").read_text()
    accuracy = evaluation.metrics["accuracy"]
    low, high = evaluation.ci95["accuracy"]
    assert f"| resnet18 | classification | torchvision IMAGENET1K_V1 | {accuracy:.3f} ({low:.2f}-{high:.2f}) |" in text
    assert text.count("| no |") == 1 and "| **yes**: one predicted class on test |" in text
    assert "AUC moderate" in text


def test_subgroup_metrics_match_the_metrics_of_each_group(predictions) -> None:
    from melasma.training.metrics import subgroup_metrics
    from melasma.training.report import subgroup_columns

    y, probs = predictions
    groups = ["V-VI" if i % 3 == 0 else "I-II" for i in range(len(y))]
    groups[1] = None  # an image without a group is left out
    results = subgroup_metrics(y, probs, groups, SEVERITIES, n_resamples=100)
    assert [r.group for r in results] == ["I-II", "V-VI"]
    for result in results:
        rows = np.array([g == result.group for g in groups])
        assert result.n == rows.sum()
        assert result.accuracy == pytest.approx((probs[rows].argmax(1) == y[rows]).mean())
        assert result.accuracy_ci95[0] <= result.accuracy <= result.accuracy_ci95[1]
    columns = subgroup_columns(results)
    assert columns["accuracy[skin V-VI]"] == results[1].accuracy and columns["n[skin I-II]"] == results[0].n


def test_a_million_predictions_match_sklearn_in_flat_memory() -> None:
    """Sort-based AUC and bincount ECE: N = 10^6 random scores (ties included) in O(N) memory."""
    import tracemalloc

    rng = np.random.default_rng(1)
    n = 1_000_000
    y = rng.integers(0, 3, n)
    probs = rng.dirichlet(np.ones(3), n) + 0.3 * np.eye(3)[y]
    probs[: n // 2] = np.round(probs[: n // 2], 3)  # many tied scores
    probs /= probs.sum(1, keepdims=True)
    tracemalloc.start()
    result = evaluate_predictions(y, probs, SEVERITIES, n_resamples=3)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 5e8  # 143 MB measured; the old N x distinct-scores AUC matrix asked for terabytes
    m, pred = result.metrics, probs.argmax(1)
    for c, name in enumerate(SEVERITIES):
        assert m[f"auc_{name}"] == pytest.approx(skm.roc_auc_score(y == c, probs[:, c]), abs=1e-12)
    assert m["kappa_quadratic"] == pytest.approx(skm.cohen_kappa_score(y, pred, weights="quadratic"))
    weighted = _weighted(np.ones((1, n)), y, probs)
    assert weighted["auc_1"][0] == pytest.approx(m["auc_moderate"], abs=1e-12)
    assert weighted["ece"][0] == pytest.approx(m["ece"], abs=1e-12)
    low, high = result.ci95["auc_macro"]
    assert low <= high and abs(high - m["auc_macro"]) < 0.01


def test_bootstrap_chunks_draw_the_same_resamples(predictions, monkeypatch) -> None:
    from melasma.training import metrics

    y, probs = predictions
    whole = metrics.bootstrap_ci(y, probs, SEVERITIES, n_resamples=50, seed=2)
    monkeypatch.setattr(metrics, "CHUNK_ELEMENTS", len(y) * 7)  # 8 chunks of at most 7 resamples
    assert metrics.bootstrap_ci(y, probs, SEVERITIES, n_resamples=50, seed=2) == whole


def test_ece_has_no_interval_because_the_percentile_bootstrap_misses_it() -> None:
    """An overconfident predictor whose true ECE is 0.05: the percentile bootstrap interval of ECE
    at n = 100 covers 0.05 in under half of 200 simulations, so ECE is printed without one."""
    rng = np.random.default_rng(0)
    n, covered = 100, 0
    for _ in range(200):
        confidence = rng.uniform(0.55, 0.95, n)
        pred = rng.integers(0, 3, n)
        correct = rng.random(n) < confidence - 0.05  # accuracy 0.05 below confidence in every bin
        y = np.where(correct, pred, (pred + rng.integers(1, 3, n)) % 3)
        probs = np.repeat(((1 - confidence) / 2)[:, None], 3, 1)
        probs[np.arange(n), pred] = confidence
        weights = rng.multinomial(n, np.full(n, 1 / n), size=200).astype(float)
        low, high = np.percentile(_weighted(weights, y, probs)["ece"], [2.5, 97.5])
        covered += low <= 0.05 <= high
    assert covered / 200 < 0.5
    result = evaluate_predictions(y, probs, SEVERITIES, n_resamples=100)
    assert "ece" not in result.ci95 and "ece" in result.metrics


def test_table_prints_ece_without_an_interval_and_small_subgroups_as_too_few(tmp_path, predictions) -> None:
    from melasma.training.metrics import MIN_SUBGROUP_N, subgroup_metrics
    from melasma.training.report import subgroup_columns

    y, probs = predictions
    evaluation = evaluate_predictions(y, probs, SEVERITIES, n_resamples=100)
    groups = ["V-VI" if i < 3 else "I-II" for i in range(len(y))]  # 3 images: too few
    results = subgroup_metrics(y, probs, groups, SEVERITIES, n_resamples=100)
    small = next(r for r in results if r.group == "V-VI")
    assert small.too_few and small.n == 3 < MIN_SUBGROUP_N and math.isnan(small.accuracy)
    assert not next(r for r in results if r.group == "I-II").too_few
    row = summary_row("resnet18", evaluation, {**subgroup_columns(results)})
    text = to_markdown(pd.DataFrame([row]), SEVERITIES)
    assert f"| {evaluation.metrics['ece']:.3f} |" in text  # no brackets after ECE
    assert "n=3: too few" in text and "(0.50-0.50)" not in text
