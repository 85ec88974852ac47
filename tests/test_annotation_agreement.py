"""Agreement statistics: the Shrout & Fleiss (1979) Table 2 ICCs with their published intervals,
ordinal agreement on bins, and the dashboard on a synthetic three-rater set."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotation import workflow
from annotation.agreement import agreement_report, rating_table
from annotation.ingest import ingest
from annotation.plots import rater_scatter
from annotation.store import RatingStore
from melasma.data.synthetic import rater_scores
from melasma.masi import REGIONS, SEVERITIES, severity
from melasma.settings import Settings
from melasma.stats.agreement import FORMS, fleiss_kappa, icc, icc_ci, mean_weighted_kappa, ordinal_alpha

#: Shrout & Fleiss (1979) Table 2: 6 targets x 4 judges.
SHROUT_FLEISS = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
#: Their published ICCs (2 decimals); the 95% intervals are those printed by R's psych::ICC and
#: pingouin for the same data (F-based, McGraw & Wong 1996).
PUBLISHED = {
    "1,1": (0.17, (-0.13, 0.72)),
    "2,1": (0.29, (0.02, 0.76)),
    "3,1": (0.71, (0.34, 0.95)),
    "1,k": (0.44, (-0.88, 0.91)),
    "2,k": (0.62, (0.07, 0.93)),
    "3,k": (0.91, (0.68, 0.99)),
}


@pytest.mark.parametrize("form", FORMS)
def test_icc_matches_shrout_fleiss_table_2(form: str) -> None:
    value, (low, high) = PUBLISHED[form]
    assert round(icc(SHROUT_FLEISS, form), 2) == value
    ci = icc_ci(SHROUT_FLEISS, form)
    assert ci == pytest.approx((low, high), abs=0.006)
    assert ci[0] < icc(SHROUT_FLEISS, form) < ci[1]


def test_icc_ci_narrows_with_confidence_and_data() -> None:
    wide = icc_ci(SHROUT_FLEISS, "2,1", alpha=0.01)
    narrow = icc_ci(SHROUT_FLEISS, "2,1", alpha=0.2)
    assert wide[0] < narrow[0] < narrow[1] < wide[1]
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 48, size=(200, 1))
    many = truth + rng.normal(0, 3, size=(200, 3))
    low, high = icc_ci(many, "2,1")
    assert 0.9 < low < icc(many, "2,1") < high < 1 and high - low < 0.05


def test_icc_edge_cases_and_errors() -> None:
    assert icc([[1, 1], [5, 5], [3, 3]], "2,1") == pytest.approx(1.0)
    assert math.isnan(icc([[2, 2], [2, 2]], "1,1"))  # no variance at all: undefined
    with pytest.raises(ValueError, match="form must be one of"):
        icc(SHROUT_FLEISS, "2,2")
    with pytest.raises(ValueError, match="n, k >= 2"):
        icc([[1, 2, 3]], "2,1")
    with pytest.raises(ValueError, match="complete"):
        icc([[1, np.nan], [2, 3]], "2,1")
    with pytest.raises(ValueError, match="alpha"):
        icc_ci(SHROUT_FLEISS, "2,1", alpha=1.5)


def test_ordinal_agreement_on_bins() -> None:
    perfect = [[0, 0, 0], [1, 1, 1], [2, 2, 2], [1, 1, 1]]
    assert mean_weighted_kappa(perfect) == pytest.approx(1.0)
    assert ordinal_alpha(perfect) == pytest.approx(1.0)
    reversed_pair = [[0, 2], [1, 1], [2, 0]]
    assert mean_weighted_kappa(reversed_pair) == pytest.approx(-1.0)  # quadratic weights
    assert ordinal_alpha(reversed_pair) < 0
    one_off = [[0, 0, 1], [1, 1, 1], [2, 2, 2], [0, 0, 0], [2, 1, 2]]
    assert 0.5 < mean_weighted_kappa(one_off) < 1 and 0.5 < ordinal_alpha(one_off) < 1
    with_missing = [[0, 0, np.nan], [1, 1, 1], [2, 2, 2]]
    assert ordinal_alpha(with_missing) == pytest.approx(1.0)


def test_fleiss_kappa_matches_statsmodels() -> None:
    from statsmodels.stats import inter_rater  # test-only (requirements-dev.txt)

    rng = np.random.default_rng(0)
    for n, k, skew in ((5, 2, 0.0), (12, 3, 0.5), (40, 5, 0.8), (200, 3, 0.2)):
        truth = rng.integers(0, 3, n)
        table = np.where(rng.random((n, k)) < skew, truth[:, None], rng.integers(0, 3, (n, k)))
        expected = inter_rater.fleiss_kappa(inter_rater.aggregate_raters(table)[0])
        assert fleiss_kappa(table) == pytest.approx(expected, abs=1e-12), (n, k)
    assert fleiss_kappa([[0, 0, 0], [1, 1, 1], [2, 2, 2]]) == pytest.approx(1.0)
    assert math.isnan(fleiss_kappa([[1, 1], [1, 1]]))  # one category throughout: chance agreement is 1
    with pytest.raises(ValueError, match="complete"):
        fleiss_kappa([[0, np.nan], [1, 1]])
    with pytest.raises(ValueError, match="category indices"):
        fleiss_kappa([[0, 3], [1, 1]])


def test_dashboard_on_synthetic_raters(synth_dir: Path, tmp_path: Path) -> None:
    rows = list(csv.DictReader((synth_dir / "labels.csv").open()))[:15]
    settings = Settings(data_dir=tmp_path / "data")
    store = RatingStore(settings.data_dir / "annotations.sqlite")
    summary = ingest(store, settings.data_dir / "photos", [synth_dir / r["image"] for r in rows])
    assert len(summary.added) == 15
    for image_id, row in zip(summary.added[:12], rows):
        for k, rater in enumerate(settings.raters, start=1):
            workflow.submit(store, settings, rater, image_id, rater_scores(row, k))
    workflow.submit(store, settings, "rater1", summary.added[12], rater_scores(rows[12], 1))

    typed = agreement_report(store, settings)
    assert typed.masi_icc["2,1"].icc == typed.to_json()["masi_icc"]["2,1"]["icc"]
    report = typed.to_json()
    assert (report["images"], report["complete"]) == (15, 12)
    assert report["columns"] == ["rater1", "rater2", "rater3"]
    masi_icc = report["masi_icc"]["2,1"]
    assert 0.8 < masi_icc["icc"] <= 1 and masi_icc["ci_low"] < masi_icc["icc"] < masi_icc["ci_high"]
    assert report["masi_icc"]["2,k"]["icc"] >= masi_icc["icc"]
    assert set(report["region_icc"]) == {"forehead", "right_malar", "left_malar", "chin"}
    assert all(-1 <= e["icc"] <= 1 for e in report["region_icc"].values())
    assert 0.5 < report["bins"]["weighted_kappa"] <= 1 and 0.5 < report["bins"]["krippendorff_alpha"] <= 1
    assert report["bins"]["fleiss_kappa"] == round(fleiss_kappa(
        [[SEVERITIES.index(severity(v)) for v in row] for row in rating_table(
            workflow.consensus_rows(store, settings), 3)[0]]), 4)
    assert report["progress"]["rater1"] == {"rated": 13, "remaining": 2}
    assert report["progress"]["rater2"] == {"rated": 12, "remaining": 3}
    flagged = [r.image.id for r in workflow.adjudication_queue(store, settings)]
    assert [item["image_id"] for item in report["adjudication_queue"]] == flagged

    consensus = workflow.consensus_rows(store, settings)
    table, names = rating_table(consensus, 3)
    assert table.shape == (12, 3) and table[0, 1] == consensus[0].ratings[1].masi
    figure = rater_scatter(table, names)
    axes = figure.get_axes()
    assert len(axes) == 3 and axes[0].get_xlabel() == "rater1 MASI"
    assert all(len(ax.collections[0].get_offsets()) == 12 for ax in axes)


def test_dashboard_waits_for_two_complete_images(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    report = agreement_report(RatingStore(settings.data_dir / "annotations.sqlite"), settings).to_json()
    assert report["complete"] == 0 and "masi_icc" not in report and "at least 2" in report["note"]


def test_dashboard_shows_perfect_agreement(tmp_path: Path) -> None:
    """Identical scores from every rater: ICC 1.0 with no CI must not blank the dashboard."""
    from melasma.ui.annotate_text import report_markdown

    settings = Settings(data_dir=tmp_path)
    store = RatingStore(tmp_path / "annotations.sqlite")
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(4):
        pixels = np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
    ids = ingest(store, settings.photos_dir, sorted(folder.glob("*.png"))).added
    for n, image_id in enumerate(ids):
        scores = {r: {"area": 1 + n, "darkness": 2, "homogeneity": 1 + n % 2} for r in REGIONS}
        for rater in settings.raters:
            workflow.submit(store, settings, rater, image_id, scores)
    report = agreement_report(store, settings).to_json()
    assert report["masi_icc"]["2,1"]["icc"] == 1.0 and report["masi_icc"]["2,1"]["ci_low"] is None
    text = report_markdown(report)
    assert "1.000 (perfect agreement, 95% CI n/a)" in text
    assert "| rater1 | 4 | 0 |" in text and "Adjudication queue: 0 photo(s)" in text
