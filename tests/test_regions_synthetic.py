"""melasma.regions on the synthetic cartoon faces: plain outcome for find_regions, and the pigment
measure's D estimate agreeing with the truth (benchmarks/regions_synthetic.py geometry)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from melasma.regions import FaceNotFound, FaceRegions, find_regions
from melasma.stats.agreement import icc

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "regions_synthetic.py"


def _bench():
    spec = importlib.util.spec_from_file_location("regions_synthetic", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_cartoon_faces_get_regions_or_a_plain_message(synth_dir: Path) -> None:
    for path in sorted((synth_dir / "images").glob("*.jpg"))[:4]:
        try:
            found = find_regions(Image.open(path))
        except FaceNotFound as error:
            assert "face" in str(error)
        else:
            assert isinstance(found, FaceRegions) and found.image_size == (64, 64)


def test_area_and_darkness_estimates_follow_the_true_scores() -> None:
    truth, measured = _bench().collect(n=16, seed=5, settings=_bench().CARTOON)
    assert np.corrcoef(truth[:, 0], measured[:, 0])[0, 1] > 0.5  # area: ranks right, overestimates
    assert icc(np.stack([truth[:, 1], measured[:, 1]], axis=1)) > 0.7
