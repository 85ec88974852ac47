"""LRP, Grad-CAM and gradient x input on EfficientNet-Lite0 (the demo model) at 224 px: relevance
conserved on real photos with ImageNet and random weights, the Explainer's lean path equal to the
per-call path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from zennit.core import Composite

from melasma.data.images import load_image
from melasma.explain import METHODS, Explainer, explain
from melasma.explain.canonizers import canonizers_for
from melasma.explain.lrp import lrp_attribution
from melasma.models import create, get_spec

SIZE = 224
PHOTOS = ("melasma/melasma17_jpg.rf.8f08dc5cf47133490c108fc83c57d745.jpg",
          "melasma/melasma43_jpg.rf.b65e6adea69502312d0efc688ba85df8.jpg")


def _batch(folder: Path, names: tuple[str, ...] | None = None) -> torch.Tensor:
    """Real photos squashed to 224 px, scaled to [-1, 1] (the packaged weights' normalisation)."""
    paths = [folder / n for n in names] if names else []
    if not paths:  # a healthy photo too: the first of non-melasma/
        paths = [folder / n for n in PHOTOS] + [min((folder / "non-melasma").glob("*.jpg"))]
    arrays = [np.asarray(load_image(p).resize((SIZE, SIZE), resample=3), np.float32) / 255 for p in paths]
    return (torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) - 0.5) / 0.5


def test_efficientnet_lite0_has_its_own_spec() -> None:
    spec = get_spec("efficientnet_lite0")
    assert spec.lrp_canonizer == "timm_efficientnet_lite"
    assert spec.cam_layer == "bn2"
    model = create("efficientnet_lite0")
    composite = Composite(canonizers=canonizers_for(spec.lrp_canonizer))
    composite.register(model)
    try:  # every block with a skip adds through a Sum module (the first of each stage has none)
        skips = [m for m in model.modules() if getattr(m, "has_skip", False)]
        assert len(skips) == 9 and all(hasattr(m, "canonizer_sum") for m in skips)
    finally:
        composite.remove()


@pytest.mark.realdata
@pytest.mark.parametrize("weights", ["auto", "off"])
def test_relevance_is_conserved_on_real_photos_at_224(roboflow_dir: Path, weights: str) -> None:
    torch.manual_seed(0)
    model = create("efficientnet_lite0", 3, pretrained=weights).eval()
    x = _batch(roboflow_dir)
    with torch.no_grad():
        reference = model(x)
    composite = Composite(canonizers=canonizers_for(get_spec(model).lrp_canonizer))
    composite.register(model)
    try:
        with torch.no_grad():
            canonized = model(x)
    finally:
        composite.remove()
    assert ((canonized - reference).norm() / reference.norm()).item() <= 1e-4
    for i in range(len(x)):
        _, relevance = lrp_attribution(model, x[i:i + 1], canonizer="timm_efficientnet_lite", zero_bias=True)
        # the start relevance is the one-hot target logit: 1
        assert relevance.sum().item() == pytest.approx(1.0, abs=0.02), (weights, i)
        _, plain = lrp_attribution(model, x[i:i + 1], canonizer="generic", zero_bias=True)
        assert abs(plain.sum().item() - 1.0) > 0.02, "without the Sum modules relevance is not conserved"


@pytest.mark.realdata
def test_explainer_lean_path_equals_per_call_path_at_224(roboflow_dir: Path) -> None:
    model = create("efficientnet_lite0", 3, pretrained="auto").eval()
    x = _batch(roboflow_dir, PHOTOS)
    with Explainer(model, mean=(0.5,) * 3, std=(0.5,) * 3) as explainer:
        result = explainer.explain(x)
        merged_left = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in explainer._lrp_model.modules())
    assert merged_left == 0  # every batch norm merged into its convolution and dropped
    assert result.cam_grid == (7, 7)
    for method in METHODS:
        reference = explain(model, x, method, target=list(result.targets))
        ours = result.maps[method]
        assert ours.shape == (2, SIZE, SIZE)
        assert torch.isfinite(ours).all() and ours.abs().sum() > 0, method
        scale = reference.abs().amax(dim=(1, 2)).clamp_min(1e-12)
        error = ((ours - reference).abs().amax(dim=(1, 2)) / scale).max().item()
        assert error <= 1e-4, (method, error)
