"""The demo model's recipe: outline-derived MASI labels, soft targets, seeded stratified folds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from melasma.data.masks import coco_masks
from melasma.regions.polygon_masi import area_item, darkness_item, polygon_masi
from melasma.training.demo_real import Photo, folds, soft_target


def test_area_and_darkness_items_follow_the_bands() -> None:
    assert [area_item(s) for s in (0.0, 0.05, 0.1, 0.29, 0.3, 0.69, 0.7, 0.95)] == [0, 1, 2, 2, 3, 4, 5, 6]
    assert [darkness_item(d) for d in (-10.0, 0.0, 3.9, 4.0, 8.0, 40.0)] == [2, 2, 2, 3, 4, 4]


def test_soft_target_spreads_a_masi_over_the_bins() -> None:
    for masi in (0.0, 10.0, 16.0, 40.0):
        assert soft_target(masi).sum() == pytest.approx(1.0)
    assert soft_target(0.0)[0] > 0.999  # a healthy face: mild
    assert soft_target(16.0)[1] == pytest.approx(0.5, abs=1e-3)  # on the cut-off: half moderate
    assert soft_target(40.0).argmax() == 2


def test_folds_are_stratified_and_seeded() -> None:
    photos = [Photo(f"p{i}", Path(f"p{i}"), i < 10, 0.0, np.zeros((1, 1))) for i in range(20)]
    assignment = folds(photos, 5, seed=0)
    assert assignment == folds(photos, 5, seed=0) and assignment != folds(photos, 5, seed=1)
    for k in range(5):  # two melasma and two other photos per fold
        assert sum(f == k and p.melasma for f, p in zip(assignment, photos)) == 2
        assert sum(f == k and not p.melasma for f, p in zip(assignment, photos)) == 2


@pytest.mark.realdata
def test_outline_masi_of_real_photos(roboflow_dir: Path) -> None:
    from melasma.data.images import load_image

    masks = coco_masks(roboflow_dir / "_annotations.coco.json")
    name = "melasma27_jpg.rf.d53257056353ef33020f2bac0279c1bf.jpg"  # both cheeks outlined, 95 % each
    result = polygon_masi(np.asarray(load_image(roboflow_dir / "melasma" / name)), masks[name])
    assert result.face_found and result.items["right_malar"]["area"] == 6 and result.items["forehead"]["area"] == 0
    assert result.masi == pytest.approx(0.3 * 6 * (result.items["right_malar"]["darkness"] + 2)
                                        + 0.3 * 6 * (result.items["left_malar"]["darkness"] + 2))
    healthy = next((roboflow_dir / "non-melasma").glob("*.jpg"))
    assert polygon_masi(np.asarray(load_image(healthy)), None).masi == 0.0
