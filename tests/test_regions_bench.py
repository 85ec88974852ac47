"""benchmarks/regions_real.py on a small folder in the roboflow layout (links to the shared photos)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "regions_real.py"
KEYS = {"images", "faces_found", "dice_mean", "iou_mean", "area_corr", "auc_melasma", "tone_baseline_auc"}


def _load():
    spec = importlib.util.spec_from_file_location("regions_real", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_json_summary_on_a_small_folder(
    roboflow_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for sub in ("melasma", "non-melasma"):
        (tmp_path / sub).mkdir()
        for path in sorted((roboflow_dir / sub).glob("*.jpg"))[:4]:
            (tmp_path / sub / path.name).symlink_to(path)
    (tmp_path / "_annotations.coco.json").symlink_to(roboflow_dir / "_annotations.coco.json")
    assert _load().main([str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert KEYS <= set(summary)
    assert summary["images"] == 8 and 5 <= summary["faces_found"] <= 8
    assert 0 < summary["dice_mean"] <= 1 and 0 <= summary["iou_mean"] <= summary["dice_mean"]
    assert 0 <= summary["auc_melasma"] <= 1 and 0 <= summary["tone_baseline_auc"] <= 1


def test_overlap_counts_pixels() -> None:
    import numpy as np

    overlap = _load().overlap
    a = np.zeros((4, 4), bool)
    b = a.copy()
    a[:2] = True
    b[1:3] = True
    assert overlap(a, b) == pytest.approx((0.5, 1 / 3))
    assert overlap(a & False, b & False) == (1.0, 1.0)
