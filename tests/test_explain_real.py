"""The 94 real photos of ../shared/data/roboflow-melasma explain without error; polygons become masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from melasma.explain_report import explain_report
from melasma.models import create, save_checkpoint

pytestmark = pytest.mark.realdata

SIZE = 64


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("ckpt") / "resnet18"
    save_checkpoint(directory, create("resnet18").eval(), {
        "arch": "resnet18", "classes": ["mild", "moderate", "severe"], "cutoffs": [16, 32],
        "image_size": SIZE, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
    })
    return directory


def test_all_real_photos_explain_and_masks_come_from_polygons(checkpoint: Path, roboflow_dir: Path,
                                                               tmp_path: Path) -> None:
    explain_report([checkpoint], roboflow_dir, tmp_path, methods=["gxi"], deletion_steps=2)
    per_image = pd.read_csv(tmp_path / "per_image.csv")
    photos = sorted(p for p in roboflow_dir.rglob("*.jpg"))
    assert len(photos) == 94 and len(per_image) == 94
    assert set(per_image["image"]) == {str(p.resolve()) for p in photos}
    assert np.isfinite(per_image[["mean_relevance", "deletion_auc", "probability"]].to_numpy()).all()
    masked = per_image.dropna(subset=["mass_in_mask"])
    assert len(masked) >= 40  # the melasma photos carry lesion polygons
    assert masked["image"].str.contains("/melasma/").all()
    assert masked["mask_share"].between(0, 1).all() and (masked["mask_share"] > 0).all()


def test_a_few_real_photos_with_all_three_methods(checkpoint: Path, roboflow_dir: Path, tmp_path: Path) -> None:
    summary = explain_report([checkpoint], roboflow_dir / "melasma", tmp_path, max_images=3, deletion_steps=2)
    per_image = pd.read_csv(tmp_path / "per_image.csv")
    assert len(per_image) == 9 and set(per_image["method"]) == {"lrp", "gradcam", "gxi"}
    assert per_image["mass_in_mask"].between(0, 1).all()
    assert set(summary["severity"]) <= {"mild", "moderate", "severe"}  # unlabelled: the prediction


@pytest.mark.slow
def test_the_explainer_gives_the_per_call_maps_on_every_real_photo(roboflow_dir: Path) -> None:
    """The demo checkpoint (the model the Predict tab serves) on all 94 real photos: the Explainer's
    lean path equals the per-call zennit / pytorch-grad-cam path exactly, for all three methods."""
    from melasma.explain import explain
    from melasma.explain.explainer import METHODS
    from melasma.inference import Predictor, default_checkpoint

    predictor = Predictor.from_checkpoint(default_checkpoint())
    photos = sorted(roboflow_dir.rglob("*.jpg"))
    assert len(photos) == 94
    try:
        for photo in photos:
            x = predictor.preprocess(predictor.decode(photo))
            result = predictor.explainer.explain(x)
            for method in METHODS:
                reference = explain(predictor.model, x, method, target=list(result.targets))
                assert torch.equal(result.maps[method], reference.reshape(result.maps[method].shape)), (photo, method)
    finally:
        predictor.close()
