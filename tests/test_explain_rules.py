"""Lean LRP rules (cached parameters, skipped zero branches, no discarded backward), batched
explanations and deletion curves, and the one table of explanation methods."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.profiler import profile
from zennit.composites import EpsilonPlusFlat
from zennit.core import Stabilizer
from zennit.rules import ZPlus

from melasma.explain import IMPLEMENTATIONS, METHODS, TABLE, explain, views
from melasma.explain.faithfulness import deletion_auc, deletion_aucs, deletion_curve, deletion_curves
from melasma.explain.lrp import one_hot_start
from melasma.explain.rules import LeanZPlus, SignStabilizer, lean_layer_maps, skip_replaced_backward
from melasma.models import create


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3),
    ).eval()


def _relevance(model: nn.Module, composite, x: torch.Tensor, detour: bool = False) -> torch.Tensor:
    composite.register(model)
    handles = skip_replaced_backward(model, composite) if detour else []
    try:
        inputs = x.clone().requires_grad_(True)
        output = model(inputs)
        (relevance,) = torch.autograd.grad(output, inputs, grad_outputs=one_hot_start(1)(output.detach()))
    finally:
        for handle in handles:
            handle.remove()
        composite.remove()
    return relevance


def _lean(zero_params: str | None = "bias") -> EpsilonPlusFlat:
    layer_map, first_map = lean_layer_maps("epsilon_plus_flat", zero_params)
    return EpsilonPlusFlat(zero_params=zero_params, layer_map=layer_map, first_map=first_map)


def test_sign_stabilizer_equals_zennits() -> None:
    z = torch.tensor([-2.0, -1e-7, -0.0, 0.0, 1e-7, 3.0, float("nan"), float("inf"), -float("inf")])
    ours, theirs = SignStabilizer(1e-6)(z), Stabilizer(1e-6)(z)
    assert torch.equal(ours.isnan(), theirs.isnan())
    assert torch.equal(ours[~ours.isnan()], theirs[~theirs.isnan()])


@pytest.mark.parametrize("detour", [False, True])
def test_lean_rules_give_zennits_relevance(detour: bool) -> None:
    model = _tiny()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    reference = _relevance(model, EpsilonPlusFlat(zero_params="bias"), x)
    ours = _relevance(model, _lean(), x, detour=detour)
    assert torch.equal(ours, reference)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())  # all removed


def test_the_negative_branch_runs_only_for_a_negative_input() -> None:
    conv = nn.Conv2d(3, 4, 3).eval()
    grad = torch.randn(1, 4, 6, 6)
    for x in (torch.rand(1, 3, 8, 8), torch.randn(1, 3, 8, 8)):  # non-negative, then mixed signs
        results = []
        for rule in (ZPlus(zero_params="bias"), LeanZPlus(zero_params="bias")):
            rule.stored_tensors["input"] = (x,)
            with profile() as prof:
                (relevance,) = rule.backward(conv, (torch.zeros_like(x),), (grad,))
            convolutions = sum(e.count for e in prof.key_averages() if e.key == "aten::convolution")
            results.append((relevance, convolutions))
        (theirs, their_count), (ours, our_count) = results
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-7)
        assert their_count == 2 and our_count == (1 if x.min() >= 0 else 2)


def test_cached_parameters_follow_a_weight_change() -> None:
    model = _tiny()
    x = torch.rand(1, 3, 16, 16)
    composite = _lean()
    composite.register(model)  # kept registered: the second call reuses the rules and their caches

    def relevance() -> torch.Tensor:
        inputs = x.clone().requires_grad_(True)
        output = model(inputs)
        return torch.autograd.grad(output, inputs, grad_outputs=one_hot_start(1)(output.detach()))[0]

    try:
        first = relevance()
        with torch.no_grad():
            model[2].weight.mul_(-1.0)  # in place: same tensor, new version
        changed = relevance()
    finally:
        composite.remove()
    assert torch.equal(changed, _relevance(model, EpsilonPlusFlat(zero_params="bias"), x))
    assert not torch.equal(changed, first)


def test_the_discarded_convolution_backward_is_not_run() -> None:
    model = _tiny()
    x = torch.rand(1, 3, 16, 16)
    counts = []
    for detour in (False, True):
        with profile() as prof:
            _relevance(model, _lean(), x, detour=detour)
        counts.append(sum(e.count for e in prof.key_averages() if e.key == "aten::convolution_backward"))
    # three convolutions: each rule's own backward (3) plus, without detours, the discarded one (3)
    assert counts == [6, 3]


def test_explain_returns_one_map_per_image() -> None:
    model = create("resnet18").eval()
    x = torch.randn(3, 3, 32, 32)
    for method in METHODS:
        maps = explain(model, x, method)
        assert maps.shape == (3, 32, 32), method
        single = explain(model, x[2:], method)
        assert single.shape == (32, 32)
        torch.testing.assert_close(maps[2], single, rtol=1e-4, atol=1e-6 * float(single.abs().max()))


class _Quadrant(nn.Module):
    """Class 1 logit: energy of channel 0 in the top-left quadrant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        evidence = 5 * x[:, 0, : x.shape[2] // 2, : x.shape[3] // 2].pow(2).mean(dim=(1, 2)) - 5
        return torch.stack([torch.zeros_like(evidence), evidence], dim=1)


def test_batched_deletion_equals_one_image_at_a_time() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, 32, 32, generator=generator) * 2
    relevance = torch.randn(5, 32, 32, generator=generator)
    relevance[1] = 0.0  # all ties: deleted in reading order, in both paths
    targets = [1, 1, 0, 1, 0]
    model = _Quadrant()
    fractions, curves = deletion_curves(model, x, relevance, targets, steps=8, batch_size=7)
    aucs = deletion_aucs(model, x, relevance, targets, steps=8)
    assert curves.shape == (5, 9) and aucs.shape == (5,)
    for i in range(5):
        single_fractions, single = deletion_curve(model, x[i:i + 1], relevance[i], targets[i], steps=8)
        np.testing.assert_array_equal(single_fractions, fractions)
        np.testing.assert_allclose(single, curves[i], rtol=1e-6, atol=1e-7)
        assert deletion_auc(model, x[i:i + 1], relevance[i], targets[i], steps=8) == pytest.approx(aucs[i])
    with pytest.raises(ValueError, match="one map per input image"):
        deletion_curves(model, x, relevance[:2], targets)


def test_one_table_names_draws_and_implements_every_method() -> None:
    from melasma.cli.explain import add_arguments
    from melasma.ui.predict import REGION_HEADERS

    assert METHODS == tuple(TABLE) == tuple(IMPLEMENTATIONS)
    assert [h for h in REGION_HEADERS if h.endswith("% in region")] == [f"{TABLE[m].short} % in region" for m in METHODS]
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    method_action = next(a for a in parser._actions if a.dest == "method")
    assert tuple(method_action.choices) == METHODS
    relevance = np.linspace(-1, 1, 64, dtype=np.float32).reshape(8, 8)
    for method in METHODS:
        assert TABLE[method].title in views.colour_scale_html(relevance, method)
    with pytest.raises(views.ViewError, match="method must be one of lrp, gradcam, gxi"):
        views.colour_scale_html(relevance, "shap")
