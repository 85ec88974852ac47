"""Explainer: set up once per model, same maps as the per-call path, batches, threads, close()."""

from __future__ import annotations

import gc
import threading

import pytest
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle
from zennit.core import Composite

from melasma.explain import Explainer, ExplainError, explain
from melasma.explain.canonizers import canonizers_for
from melasma.explain.explainer import METHODS
from melasma.models import create, get_spec

ARCHS = ("alexnet", "googlenet", "resnet18", "vgg16", "densenet121", "mobilenetv2_100")
SIZE = 64  # alexnet needs >= 63 px


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def _batch_norm_stats(model: nn.Module) -> nn.Module:
    """Non-trivial batch-norm statistics, so merging changes real numbers."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return model.eval()


@pytest.mark.parametrize("arch", ARCHS)
def test_maps_equal_the_per_call_path_for_a_batch(arch: str) -> None:
    torch.manual_seed(0)
    model = _batch_norm_stats(create(arch))
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with Explainer(model) as explainer:
        result = explainer.explain(x)
        again = explainer.explain(x[1:], methods=("lrp",), target=result.targets[1])
    assert _hooks(model) == 0  # the caller's model never carries the explainer's hooks
    assert result.targets == tuple(int(t) for t in result.logits.argmax(1))
    assert list(result.maps) == list(METHODS)
    for method in METHODS:
        reference = explain(model, x, method, target=list(result.targets))
        ours = result.maps[method]
        assert ours.shape == (2, SIZE, SIZE), (arch, method)
        scale = reference.abs().amax(dim=(1, 2)).clamp_min(1e-12)
        error = ((ours - reference).abs().amax(dim=(1, 2)) / scale).max().item()
        assert error <= 1e-5, (arch, method, error)
    # one image alone vs in a batch of two: the same up to the matrix kernels' summation order, which
    # differs by batch size and CPU; LRP's small denominators amplify it (on the 2026-12-06 dev CPU
    # AlexNet's maps differed by 8e-4 and GoogLeNet's by 2e-3 of the map's largest value)
    alone, in_batch = again.maps["lrp"][0], result.maps["lrp"][1]
    relative = ((alone - in_batch).abs().max() / in_batch.abs().max().clamp_min(1e-12)).item()
    assert relative <= 5e-3, (arch, relative)


def _norms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def test_the_lrp_copy_drops_every_batch_norm_it_merged() -> None:
    """A merged norm computes the identity: plain ones become nn.Identity, timm's BatchNormAct2d
    (MobileNetV2, DenseNet) its activation. DenseNet's pre-activation norms cannot merge and stay."""
    for arch in ("resnet18", "googlenet", "mobilenetv2_100", "densenet121"):
        model = create(arch).eval()
        with Explainer(model) as explainer:
            left = _norms(explainer._lrp_model)
        assert _norms(model) > 0
        if arch == "densenet121":
            assert 0 < left < _norms(model), (arch, left)
        else:
            assert left == 0, (arch, left)


def test_a_map_dominated_by_cancellation_still_equals_the_per_call_path() -> None:
    """A random-init ConvNeXt (layer norms, no LRP rule of their own) ends with an input relevance
    about 1e-9 of the start, a sum of far larger terms of both signs: any change in the order of
    summation changes it wholesale, so the lean rules must run autograd's kernels in its order."""
    torch.manual_seed(0)
    model = create("test_convnext").eval()
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with Explainer(model) as explainer:
        result = explainer.explain(x, methods=("lrp",))
    reference = explain(model, x, "lrp", target=list(result.targets))
    assert reference.abs().max() < 1e-6  # the cancellation this test is about
    assert ((result.maps["lrp"] - reference).abs().max() / reference.abs().max()).item() <= 1e-5


@pytest.mark.parametrize("arch", ARCHS)
def test_canonized_models_keep_every_batch_norm_eps_positive(arch: str) -> None:
    model = _batch_norm_stats(create(arch))
    eps_before = {name: m.eps for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    composite = Composite(canonizers=canonizers_for(get_spec(model).lrp_canonizer))
    composite.register(model)
    try:
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        assert all(m.eps > 0 for m in norms), arch
        with torch.no_grad():
            assert torch.isfinite(model(torch.randn(1, 3, SIZE, SIZE))).all()
    finally:
        composite.remove()
    after = {name: m.eps for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    assert after == eps_before


def test_a_zennit_that_zeroes_eps_is_undone() -> None:
    from zennit.canonizers import MergeBatchNorm

    from melasma.explain.canonizers import SiblingMergeBatchNorm

    conv, norm = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4).eval()
    original = MergeBatchNorm.merge_batch_norm

    def zeroing(modules, batch_norm):  # what a zennit release that sets eps to 0 does
        original(modules, batch_norm)
        batch_norm.eps = 0.0

    MergeBatchNorm.merge_batch_norm = staticmethod(zeroing)
    try:
        SiblingMergeBatchNorm.merge_batch_norm((conv,), norm)
    finally:
        MergeBatchNorm.merge_batch_norm = staticmethod(original)
    assert norm.eps == pytest.approx(1e-5)
    x = torch.randn(1, 4, 5, 5)
    torch.testing.assert_close(norm(x), x)  # the merged norm is the identity


def test_threads_share_one_explainer_and_close_releases_it() -> None:
    torch.manual_seed(0)
    model = create("resnet18").eval()
    x = torch.randn(1, 3, SIZE, SIZE)
    explainer = Explainer(model)
    expected = explainer.explain(x).maps
    results: list[dict[str, torch.Tensor]] = []
    threads = [threading.Thread(target=lambda: results.append(explainer.explain(x).maps)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3
    for maps in results:
        for method in METHODS:
            torch.testing.assert_close(maps[method], expected[method])
    lrp_copy, grad_copy = explainer._lrp_model, explainer._grad_model
    explainer.close()
    explainer.close()  # idempotent
    assert _hooks(lrp_copy) == 0 and _hooks(grad_copy) == 0
    with pytest.raises(ExplainError, match="closed"):
        explainer.explain(x)


def _live_hook_handles() -> int:
    gc.collect()
    return sum(type(o) is RemovableHandle for o in gc.get_objects())  # no isinstance: no module proxies probed


def test_repeated_calls_keep_no_state() -> None:
    """zennit keeps a handle per layer and call for its per-tensor hooks until the composite is
    removed; a long-lived explainer (a Space serving for weeks) must drop them after each call."""
    torch.manual_seed(0)
    explainer = Explainer(create("resnet18").eval())
    x = torch.randn(1, 3, SIZE, SIZE)
    explainer.explain(x)
    before = _live_hook_handles()
    for _ in range(5):
        explainer.explain(x)
    assert _live_hook_handles() == before
    explainer.close()


def test_coarse_grad_cam_is_flagged_and_bad_requests_fail() -> None:
    model = create("resnet18").eval()
    with Explainer(model) as explainer:
        small = explainer.explain(torch.randn(1, 3, SIZE, SIZE), methods=("gradcam",))
        assert small.cam_grid == (2, 2) and small.cam_is_coarse
        assert list(small.maps) == ["gradcam"]
        large = explainer.explain(torch.randn(1, 3, 160, 160), methods=("gradcam",))
        assert large.cam_grid == (5, 5) and not large.cam_is_coarse
        with pytest.raises(ExplainError, match="methods must be among"):
            explainer.explain(torch.randn(1, 3, SIZE, SIZE), methods=("shap",))
        with pytest.raises(ExplainError, match="target"):
            explainer.explain(torch.randn(1, 3, SIZE, SIZE), target=5)
        with pytest.raises(ExplainError, match="2 targets"):
            explainer.explain(torch.randn(2, 3, SIZE, SIZE), target=[0, 1, 2])


def test_epsilon_gamma_box_matches_the_per_call_path() -> None:
    torch.manual_seed(0)
    model = _batch_norm_stats(create("googlenet"))
    x = torch.randn(2, 3, SIZE, SIZE)
    with Explainer(model, composite="epsilon_gamma_box") as explainer:
        ours = explainer.explain(x, methods=("lrp",), target=1).maps["lrp"]
    reference = explain(model, x, "lrp", target=1, composite="epsilon_gamma_box")
    assert ((ours - reference).abs().max() / reference.abs().max()).item() <= 1e-5
