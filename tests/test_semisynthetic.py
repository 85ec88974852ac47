"""Semi-synthetic data: melasma painted into the MASI regions of real photos without melasma."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from melasma.cli import main
from melasma.data.synthetic import AREA_SHARES, rater_scores
from melasma.data.tone import mean_ita, rgb_to_lab, shift_ita, skin_mask
from melasma.masi import REGIONS, SEVERITIES, consensus
from melasma.semisynthetic.generate import (
    BaseError,
    generate,
    list_bases,
    split_bases,
    tone_targets,
)
from melasma.semisynthetic.paint import apply_pigment, paint

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

N_BASES = 3


@pytest.fixture(scope="module")
def bases_dir(roboflow_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three real photos without melasma, linked (not copied) into a temporary folder."""
    folder = tmp_path_factory.mktemp("bases") / "non-melasma"
    folder.mkdir()
    for source in sorted((roboflow_dir / "non-melasma").glob("*.jpg"))[3:3 + N_BASES]:
        (folder / source.name).symlink_to(source)
    return folder


@pytest.fixture(scope="module")
def semi_dir(bases_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-image, 64 px semi-synthetic set from the three bases (none held out)."""
    out = tmp_path_factory.mktemp("semi")
    generate(bases_dir, out, n=12, size=64, seed=1, holdout=0)
    return out


@pytest.fixture(scope="module")
def face(bases_dir: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A real base at 160 px and its visible region masks."""
    from melasma.regions import find_regions

    image = np.asarray(Image.open(min(bases_dir.iterdir())).convert("RGB").resize((160, 160)))
    found = find_regions(image)
    return image, {n: r.mask for n, r in found.regions.items() if r.visible and r.mask.sum() > 50}


def test_holdout_is_deterministic_and_never_a_training_base() -> None:
    names = [f"photo_{i:02d}.jpg" for i in range(47)]
    first, again = split_bases(names, holdout=15), split_bases(list(reversed(names)), holdout=15)
    assert first == again
    assert len(first.holdout) == 15 and len(first.train) == 32
    assert not set(first.holdout) & set(first.train)
    chosen = split_bases(names, holdout_list=["photo_03.jpg", "photo_40.jpg"])
    assert chosen.holdout == ["photo_03.jpg", "photo_40.jpg"] and len(chosen.train) == 45
    with pytest.raises(BaseError, match="not among the bases"):
        split_bases(names, holdout_list=["elsewhere.jpg"])


def test_melasma_photos_are_refused_as_bases(roboflow_dir: Path) -> None:
    with pytest.raises(BaseError, match="evaluation only"):
        list_bases(roboflow_dir / "melasma")


def test_tone_is_independent_of_severity_by_construction() -> None:
    rng = np.random.default_rng(0)
    classes = [SEVERITIES[i % 3] for i in rng.permutation(600)]
    targets = tone_targets(rng, classes)
    by_class = {s: targets[np.asarray(classes) == s] for s in SEVERITIES}
    means = [values.mean() for values in by_class.values()]
    assert max(means) - min(means) < 1.0  # stratified: every class spans the same tones
    quartiles = np.array([np.quantile(values, [0.25, 0.5, 0.75]) for values in by_class.values()])
    assert np.ptp(quartiles, axis=0).max() < 1.5
    severity_index = np.array([SEVERITIES.index(c) for c in classes])
    assert abs(np.corrcoef(severity_index, targets)[0, 1]) < 0.02


def test_generated_set_labels_masks_and_bases(semi_dir: Path, bases_dir: Path) -> None:
    table = pd.read_csv(semi_dir / "labels.csv")
    assert len(table) == 12
    assert table["severity"].value_counts().to_dict() == {s: 4 for s in SEVERITIES}
    for _, row in table.iterrows():
        raters = [rater_scores(row.to_dict(), k) for k in (1, 2, 3)]
        agreed = consensus(raters)
        assert agreed.masi == pytest.approx(row["masi"]) and agreed.severity == row["severity"]
        with Image.open(semi_dir / row["image"]) as image:
            assert image.size == (64, 64)
        mask = np.asarray(Image.open(semi_dir / "masks" / (Path(row["image"]).stem + ".png"))) > 0
        if row["true_masi"] == 0:
            assert not mask.any()
        if row["severity"] != "mild":  # a close-up may miss a mild face's few lesions, never a worse one's
            assert mask.any()
    assert set(table["base"]) <= {p.name for p in bases_dir.iterdir()}
    assert table.groupby("base")["split"].nunique().max() == 1  # one base, one split
    assert set(table["split"]) == {"train", "val", "test"}
    bases = json.loads((semi_dir / "bases.json").read_text())
    assert sorted(bases["train_bases"]) == sorted(p.name for p in bases_dir.iterdir())
    assert bases["holdout"] == []
    miss = (table["ita"] - table["ita_target"]).abs()  # the face reached its target tone
    assert miss.median() < 3.0 and miss.max() < 15.0  # dark targets clip at the gamut


def test_paint_follows_area_and_darkness(face: tuple[np.ndarray, dict[str, np.ndarray]]) -> None:
    image, regions = face
    name, inside = next(iter(regions.items()))
    zero = {r: {"area": 0, "darkness": 0, "homogeneity": 0} for r in REGIONS}
    drops = []
    for darkness in (1, 4):
        scores = {**zero, name: {"area": 4, "darkness": darkness, "homogeneity": 3}}
        painted = paint(np.random.default_rng(0), image, {name: inside}, scores)
        share = painted.regions[name].sum() / inside.sum()
        low, high = AREA_SHARES[4]
        assert low - 0.02 <= share <= high + 0.02
        assert not (painted.lesion & ~inside).any()
        lightness = rgb_to_lab(image)[..., 0], rgb_to_lab(painted.image)[..., 0]
        drops.append(float((lightness[0] - lightness[1])[painted.lesion].mean()))
        untouched = ~ndimage_dilate(inside)
        assert np.abs(painted.image.astype(int) - image.astype(int))[untouched].max() <= 1
    assert 1.0 < drops[0] < drops[1]


def ndimage_dilate(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_dilation(mask, iterations=6)


def test_pigment_is_brown_in_the_persons_own_hue() -> None:
    skin = np.full((4, 4, 3), (200, 150, 120), np.uint8)
    darker = apply_pigment(skin, np.full((4, 4), 0.6, np.float32)).astype(float)[0, 0]
    ratios = darker / np.array([200, 150, 120])
    assert ratios[0] > ratios[1] > ratios[2]  # blue absorbed most: browner, not greyer


def test_ita_shift_moves_the_face_to_the_target(face: tuple[np.ndarray, dict[str, np.ndarray]]) -> None:
    image, _ = face
    mask = skin_mask(image)
    for target in (-30.0, 10.0, 55.0):
        assert mean_ita(shift_ita(image, mask, target), mask) == pytest.approx(target, abs=4.0)


def test_cli_writes_a_semisynthetic_set(bases_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "set"
    code = main(["synth", "--base-photos", str(bases_dir), "--out", str(out), "-n", "6", "--size", "48",
                 "--seed", "2", "--holdout", "1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "wrote 6 semi-synthetic images (48 px) from 2 bases" in printed
    assert "held out 1 bases" in printed
    held = (out / "holdout.txt").read_text().split()
    assert len(held) == 1 and held[0] not in set(pd.read_csv(out / "labels.csv")["base"])


def test_cli_refuses_melasma_photos(roboflow_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["synth", "--base-photos", str(roboflow_dir / "melasma"), "--out", str(tmp_path / "x"), "-n", "3"])
    assert code == 2
    assert "evaluation only" in capsys.readouterr().err
