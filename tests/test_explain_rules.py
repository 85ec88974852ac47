"""Lean LRP rules (cached parameters, skipped zero branches, one forward hook per layer and no
discarded backward), batched explanations and deletion curves, and the one table of explanation
methods."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.profiler import profile
from zennit.composites import EpsilonPlusFlat
from zennit.core import Stabilizer
from zennit.rules import Flat, ZPlus

from melasma.explain import IMPLEMENTATIONS, METHODS, TABLE, explain, views
from melasma.explain.faithfulness import deletion_auc, deletion_aucs, deletion_curve, deletion_curves
from melasma.explain.lrp import one_hot_start
from melasma.explain.rules import LeanFlat, LeanZPlus, SignStabilizer, lean_layer_maps
from melasma.models import create


def _tiny(activation: type[nn.Module] = nn.ReLU, inplace: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), activation(inplace=inplace), nn.Conv2d(8, 8, 3, padding=1),
        activation(inplace=inplace), nn.Conv2d(8, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8, 3),
    ).eval()


def _relevance(model: nn.Module, composite, x: torch.Tensor) -> torch.Tensor:
    composite.register(model)
    try:
        inputs = x.clone().requires_grad_(True)
        output = model(inputs)
        (relevance,) = torch.autograd.grad(output, inputs, grad_outputs=one_hot_start(1)(output.detach()))
    finally:
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


def test_lean_rules_give_zennits_relevance() -> None:
    model = _tiny()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    reference = _relevance(model, EpsilonPlusFlat(zero_params="bias"), x)
    ours = _relevance(model, _lean(), x)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-6 * float(reference.abs().max()))
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())  # all removed


def test_lean_pass_crosses_in_place_capped_activations_as_zennit_does() -> None:
    """zennit's Pass hands relevance through an activation unchanged, where the gradient of ReLU6
    would stop it above 6; the lean Pass must too, also for an in-place activation."""
    x = 8 * torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    reference = _relevance(_tiny(nn.ReLU6), EpsilonPlusFlat(zero_params="bias"), x)
    in_place = _tiny(nn.ReLU6, inplace=True)
    with torch.no_grad():
        assert (in_place[:2](x) == 6).any()  # the cap is reached, so Pass and the gradient differ
    ours = _relevance(in_place, _lean(), x)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6 * float(reference.abs().max()))


def test_the_negative_branch_runs_only_for_a_negative_input() -> None:
    conv = nn.Conv2d(3, 4, 3).eval()
    grad = torch.randn(1, 4, 6, 6)
    for x in (torch.rand(1, 3, 8, 8), torch.randn(1, 3, 8, 8)):  # non-negative, then mixed signs
        results = []
        for rule in (ZPlus(zero_params="bias"), LeanZPlus(zero_params="bias")):
            with profile() as prof:
                if isinstance(rule, LeanZPlus):
                    relevance = rule.relevance(conv, x, (), grad)
                else:
                    rule.stored_tensors["input"] = (x,)
                    (relevance,) = rule.backward(conv, (torch.zeros_like(x),), (grad,))
            convolutions = sum(e.count for e in prof.key_averages() if e.key == "aten::convolution")
            results.append((relevance, convolutions))
        (theirs, their_count), (ours, our_count) = results
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-7)
        assert their_count == 2 and our_count == (1 if x.min() >= 0 else 2)


@pytest.mark.parametrize("stride", [1, 2])
def test_the_flat_rule_computes_its_forward_once_per_image_shape(stride: int) -> None:
    conv = nn.Conv2d(3, 16, 5, stride=stride, padding=2).eval()
    x = torch.randn(2, 3, 15, 15, generator=torch.Generator().manual_seed(0))  # odd size: output padding matters
    grad = torch.randn_like(conv(x).detach())
    stock = Flat(zero_params="bias")
    stock.stored_tensors["input"] = (x,)
    (reference,) = stock.backward(conv, (torch.zeros_like(x),), (grad,))
    lean = LeanFlat(zero_params="bias")
    lean.relevance(conv, x, (), grad)  # the first call computes the forward of ones once
    with profile() as prof:
        ours = lean.relevance(conv, x, (), grad)
    assert torch.equal(ours, reference)  # the same kernels in the same order as autograd's
    assert "aten::convolution" not in {e.key for e in prof.key_averages()}  # the forward of ones is reused
    (_, cached), = lean.__dict__["_lean_constants"].values()
    assert cached.shape[0] == 1  # kept for one image of the batch of 2, expanded per call


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
    for composite in (EpsilonPlusFlat(zero_params="bias"), _lean()):
        with profile() as prof:
            _relevance(model, composite, x)
        counts.append(sum(e.count for e in prof.key_averages() if e.key == "aten::convolution_backward"))
    # three convolutions. zennit: the flat rule's backward (1), z+'s two branches (2 x 2) and each
    # layer's own backward, whose result its hook discards (3); lean: each rule's one backward (3)
    assert counts == [8, 3]


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
