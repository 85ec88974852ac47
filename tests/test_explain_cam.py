"""Grad-CAM, gradient x input, views and the faithfulness metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image
from torch import nn

from melasma.explain import ExplainError, explain, views
from melasma.explain.faithfulness import (
    deletion_auc,
    deletion_curve,
    mean_relevance,
    pointing_game,
    relevance_mass_accuracy,
    resize_mask,
)
from melasma.models import create

pytestmark = pytest.mark.slow

SIZE = 64


def _state(model: nn.Module) -> tuple:
    hooks = sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules()
    )
    grads = sum(p.grad is not None for p in model.parameters())
    return hooks, grads, all(p.requires_grad for p in model.parameters()), model.training


@pytest.mark.parametrize("arch", ["googlenet", "resnet18", "mobilenetv2_100"])
def test_maps_have_input_size_and_leave_the_model_alone(arch: str) -> None:
    torch.manual_seed(0)
    model = create(arch).eval()
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        before = model(x)
    predicted = int(before.argmax())
    for method in ("gradcam", "gxi", "lrp"):
        relevance = explain(model, x, method)
        assert relevance.shape == (SIZE, SIZE) and relevance.dtype == torch.float32, method
        assert torch.isfinite(relevance).all(), method
        assert torch.allclose(relevance, explain(model, x, method, target=predicted)), method
        if method == "gradcam":
            assert 0.0 <= float(relevance.min()) and float(relevance.max()) <= 1.0
    with torch.no_grad():
        assert torch.equal(model(x), before)
    assert _state(model) == (0, 0, True, False)


def test_train_mode_is_restored_and_bad_targets_fail() -> None:
    model = create("resnet18").train()
    x = torch.randn(1, 3, SIZE, SIZE)
    explain(model, x, "gradcam", target=1)
    assert model.training
    for method in ("gradcam", "gxi"):
        with pytest.raises(ExplainError, match="target"):
            explain(model, x, method, target=7)


def test_gxi_is_gradient_times_input_of_the_target_logit() -> None:
    model = create("resnet18").eval()
    x = torch.randn(1, 3, SIZE, SIZE, requires_grad=True)
    model(x)[0, 1].backward()
    expected = (x.grad * x).detach()[0].sum(0)
    assert torch.allclose(explain(model, x.detach(), "gxi", target=1), expected, atol=1e-6)


def test_overlay_keeps_the_photo_aspect_ratio_and_zero_shows_the_photo() -> None:
    photo = Image.new("RGB", (120, 80), (200, 150, 120))
    relevance = torch.zeros(SIZE, SIZE)
    relevance[:8, :8] = 1.0
    relevance[-8:, -8:] = -1.0
    image = views.overlay(photo, relevance, "lrp")
    assert image.size == (120, 80) and image.mode == "RGB"
    pixels = np.asarray(image).astype(int)
    assert tuple(pixels[40, 60]) == (200, 150, 120)  # zero relevance: the photo shows through
    assert pixels[2, 2, 0] > pixels[2, 2, 2]  # positive: red
    assert pixels[-2, -2, 2] > pixels[-2, -2, 0]  # negative: blue
    norm = views.color_norm(relevance.numpy(), "lrp")
    assert norm.vmin == -norm.vmax  # symmetric limits for signed relevance
    with pytest.raises(views.ViewError, match="method must be one of"):
        views.overlay(photo, relevance, "occlusion")


def test_side_by_side_has_one_panel_and_legend_per_method() -> None:
    photo = Image.new("RGB", (90, 60), (180, 140, 110))
    maps = {"lrp": torch.randn(SIZE, SIZE), "gradcam": torch.rand(SIZE, SIZE), "gxi": torch.randn(SIZE, SIZE)}
    figure = views.side_by_side(photo, maps, title="resnet18: severe")
    assert isinstance(figure, Figure)
    image_axes = [a for a in figure.axes if a.get_images()]
    assert len(image_axes) == 4
    assert len(figure.axes) == 7  # photo, three overlays, three colour bars
    array = views.figure_to_array(figure)
    assert array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8


def test_mass_accuracy_pointing_and_mean() -> None:
    relevance = np.zeros((10, 10))
    relevance[2, 2] = 3.0
    relevance[8, 8] = 1.0
    relevance[5, 5] = -4.0
    mask = np.zeros((10, 10), bool)
    mask[0:4, 0:4] = True
    assert relevance_mass_accuracy(relevance, mask) == pytest.approx(0.75)
    assert pointing_game(relevance, mask)
    assert not pointing_game(relevance, ~mask & (np.arange(10)[:, None] > 6))
    assert mean_relevance(relevance) == pytest.approx(0.0)
    assert math.isnan(relevance_mass_accuracy(-np.abs(relevance), mask))
    assert resize_mask(mask, (20, 20)).sum() == 4 * mask.sum()
    with pytest.raises(ExplainError, match="same"):
        relevance_mass_accuracy(relevance, mask[:5])


class QuadrantModel(nn.Module):
    """Class 1 logit: texture energy of channel 0 in the top-left quadrant; class 0 logit = 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        evidence = 5 * x[:, 0, : x.shape[2] // 2, : x.shape[3] // 2].pow(2).mean(dim=(1, 2)) - 5
        return torch.stack([torch.zeros_like(evidence), evidence], dim=1)


def test_deletion_auc_is_lower_for_the_map_that_finds_the_evidence() -> None:
    model = QuadrantModel()
    x = torch.zeros(1, 3, 32, 32)
    checkerboard = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2 * 4.0 - 2.0
    x[0, 0, :16, :16] = checkerboard  # zero mean, so both the mean and a blur erase it
    right = torch.zeros(32, 32)
    right[:16, :16] = 1.0
    wrong = 1.0 - right
    fractions, probabilities = deletion_curve(model, x, right, 1, steps=8)
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and len(fractions) == 9
    assert probabilities[0] > 0.99 and probabilities[-1] < probabilities[0]
    for baseline in ("mean", "blur"):
        good = deletion_auc(model, x, right, 1, steps=8, baseline=baseline)
        bad = deletion_auc(model, x, wrong, 1, steps=8, baseline=baseline)
        assert good < bad - 0.2, baseline
    with pytest.raises(ExplainError, match="baseline"):
        deletion_auc(model, x, right, 1, baseline="noise")
