"""The synthetic demo set: deterministic, labels consistent with the raters, masks that match."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from melasma.cli import synth as synth_cli
from melasma.data.masks import MaskError, mask_for_image, synthetic_mask
from melasma.data.synthetic import CLASS_PRIORS, generate, rater_scores
from melasma.masi import ITEMS, REGION_WEIGHTS, REGIONS, SEVERITIES, consensus, masi


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a, b, c = (generate(tmp_path / k, n=4, seed=s, size=48).parent for k, s in (("a", 3), ("b", 3), ("c", 4)))
    assert _files(a) == _files(b)
    assert len(_files(a)) == 9  # 4 images, 4 masks, labels.csv
    assert _files(a)["images/synth_0000.jpg"] != _files(c)["images/synth_0000.jpg"]


def test_labels_are_the_consensus_of_the_raters(synth_dir: Path) -> None:
    table = pd.read_csv(synth_dir / "labels.csv")
    assert len(table) == 60
    for row in table.to_dict("records"):
        agreed = consensus([rater_scores(row, k) for k in (1, 2, 3)])
        assert row["masi"] == pytest.approx(agreed.masi, abs=1e-9)
        assert row["severity"] == agreed.severity
        true = {r: {i: row[f"true_{r}_{i}"] for i in ITEMS} for r in REGIONS}
        assert row["true_masi"] == pytest.approx(masi(true))
        low, high = CLASS_PRIORS[row["true_severity"]][3]
        assert low <= row["true_masi"] <= high
    assert table["true_severity"].value_counts().to_dict() == {s: 20 for s in SEVERITIES}
    moved = (table["severity"] != table["true_severity"]).mean()
    assert 0 < moved <= 0.2  # realistic but moderate label noise
    spread = table[[f"r{k}_forehead_darkness" for k in (1, 2, 3)]].nunique(axis=1)
    assert (spread > 1).any()  # raters do disagree


def test_patients_have_one_to_three_photos_and_one_skin_tone(synth_dir: Path) -> None:
    table = pd.read_csv(synth_dir / "labels.csv")
    sizes = table.groupby("patient_id").size()
    assert sizes.between(1, 3).all() and (sizes > 1).any()
    assert (table.groupby("patient_id")["fitzpatrick"].nunique() == 1).all()
    assert table["fitzpatrick"].nunique() >= 4


def test_masks_follow_the_area_scores(synth_dir: Path) -> None:
    table = pd.read_csv(synth_dir / "labels.csv")
    shares, weighted_area = [], []
    for row in table.to_dict("records"):
        image = synth_dir / row["image"]
        mask = synthetic_mask(image)
        assert mask.shape == (64, 64) and np.array_equal(mask, mask_for_image(image))
        shares.append(mask.mean())
        weighted_area.append(sum(REGION_WEIGHTS[r] * row[f"true_{r}_area"] for r in REGIONS))
    assert np.corrcoef(shares, weighted_area)[0, 1] > 0.8
    with pytest.raises(MaskError, match="no mask"):
        synthetic_mask(synth_dir / "images" / "missing.jpg")


def test_lesions_are_darker_than_the_skin_and_darker_for_severe(synth_dir: Path) -> None:
    table = pd.read_csv(synth_dir / "labels.csv")
    contrast = {s: [] for s in SEVERITIES}
    for row in table.to_dict("records"):
        image = synth_dir / row["image"]
        mask = synthetic_mask(image)
        if mask.sum() < 4:
            continue
        gray = np.asarray(Image.open(image).convert("L"), float)
        around = gray[_dilate(mask, 3) & ~mask]
        contrast[row["true_severity"]].append(1 - gray[mask].mean() / around.mean())
    assert np.median(contrast["mild"]) > 0
    assert np.median(contrast["severe"]) > np.median(contrast["mild"]) + 0.05


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(steps):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def test_cli_prints_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    synth_cli.add_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path / "demo"), "--n", "9", "--seed", "1", "--size", "32"])
    assert synth_cli.run(args) == 0
    out = capsys.readouterr().out
    assert "wrote 9 images (32 px)" in out and "classes (rater consensus): mild" in out
    assert f"labels: {tmp_path / 'demo' / 'labels.csv'}" in out
    assert len(list((tmp_path / "demo" / "images").glob("*.jpg"))) == 9


def test_unbalanced_and_bad_arguments(tmp_path: Path) -> None:
    table = pd.read_csv(generate(tmp_path, n=40, seed=0, size=32, balanced=False))
    counts = table["true_severity"].value_counts()
    assert counts.get("mild", 0) > counts.get("severe", 0)
    with pytest.raises(ValueError, match="n must be at least 1"):
        generate(tmp_path, n=0)
    with pytest.raises(ValueError, match="size must be 16-2048"):
        generate(tmp_path, size=8)
