"""LRP on the six study networks: relevance conserved, canonized model equal to the original."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from zennit.core import Composite

from melasma.explain import ExplainError, explain
from melasma.explain.canonizers import CANONIZERS, UnknownCanonizerError, canonizers_for
from melasma.explain.lrp import lrp_attribution
from melasma.models import create, get_spec
from melasma.models.factory import build

ARCHS = ("alexnet", "googlenet", "resnet18", "vgg16", "densenet121", "mobilenetv2_100")
SIZE = 64  # alexnet needs >= 63 px


def _hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules()
    )


def trained_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random affine batch-norm parameters and running statistics from a few train-mode passes,
    so merging batch norms into convolutions changes real numbers."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
        model.train()
        for _ in range(3):
            model(torch.randn(4, 3, SIZE, SIZE, generator=generator) * 1.5 + 0.2)
    return model.eval()


@pytest.fixture(params=ARCHS)
def arch_model(request) -> tuple[str, nn.Module]:
    torch.manual_seed(0)
    return request.param, trained_stats(create(request.param))


def test_relevance_is_conserved_and_canonizers_keep_outputs(arch_model) -> None:
    arch, model = arch_model
    key = get_spec(model).lrp_canonizer
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = model(x)
    composite = Composite(canonizers=canonizers_for(key))
    composite.register(model)
    try:
        with torch.no_grad():
            canonized = model(x)
    finally:
        composite.remove()
    assert ((canonized - reference).norm() / reference.norm()).item() <= 1e-4, arch

    _, relevance = lrp_attribution(model, x, 2, canonizer=key, zero_bias=True)
    assert relevance.shape == x.shape
    assert relevance.sum().item() == pytest.approx(1.0, abs=0.05), arch
    with torch.no_grad():
        assert torch.equal(model(x), reference), f"{arch}: canonizers were not reverted"
    assert _hook_count(model) == 0


def test_without_our_canonizers_residual_networks_inflate_relevance() -> None:
    model = trained_stats(create("resnet18"))
    x = torch.randn(1, 3, SIZE, SIZE)
    _, plain = lrp_attribution(model, x, canonizer="generic", zero_bias=True)
    _, canonized = lrp_attribution(model, x, canonizer="timm_resnet", zero_bias=True)
    assert plain.sum().item() > 100  # 8 residual additions copy relevance to both branches: 2**8
    assert canonized.sum().item() == pytest.approx(1.0, abs=0.05)


def test_googlenet_with_imagenet_input_transform_conserves() -> None:
    torch.manual_seed(0)
    model = trained_stats(build(get_spec("googlenet"), 3, {"transform_input": True}))
    x = torch.randn(1, 3, SIZE, SIZE)
    _, generic = lrp_attribution(model, x, canonizer="generic", zero_bias=True)
    _, ours = lrp_attribution(model, x, canonizer="googlenet", zero_bias=True)
    assert generic.sum().item() < 0.6  # the functional re-normalisation scales relevance by std / 0.5
    assert ours.sum().item() == pytest.approx(1.0, abs=0.05)


def test_epsilon_gamma_box_gives_finite_relevance() -> None:
    model = trained_stats(create("resnet18"))
    x = torch.randn(1, 3, SIZE, SIZE)
    relevance = explain(model, x, "lrp", composite="epsilon_gamma_box")
    assert relevance.shape == (SIZE, SIZE)
    assert torch.isfinite(relevance).all() and relevance.abs().sum() > 0
    assert _hook_count(model) == 0


@pytest.mark.parametrize("arch", ["resnet18", "mobilenetv2_100"])
def test_canonized_residual_blocks_keep_channels_last(arch: str) -> None:
    """The residual Sum adds slices, so a channels-last network stays channels-last past it
    (`torch.sum` over a stack returns a contiguous tensor: every later convolution then ran on a
    converted copy), with the same values as `a + b`."""
    model = create(arch).eval().to(memory_format=torch.channels_last)
    composite = Composite(canonizers=canonizers_for(get_spec(model).lrp_canonizer))
    composite.register(model)
    try:
        sums = [m.canonizer_sum for m in model.modules() if hasattr(m, "canonizer_sum")]
        assert sums
        seen: list[torch.Tensor] = []
        handles = [m.register_forward_hook(lambda _m, _a, out: seen.append(out)) for m in sums]
        with torch.no_grad():
            model(torch.randn(1, 3, SIZE, SIZE).contiguous(memory_format=torch.channels_last))
        for handle in handles:
            handle.remove()
    finally:
        composite.remove()
    assert len(seen) == len(sums)
    assert all(out.is_contiguous(memory_format=torch.channels_last) for out in seen)
    a, b = (torch.randn(1, 8, 5, 5).contiguous(memory_format=torch.channels_last) for _ in range(2))
    assert torch.equal(sums[0](torch.stack([a, b])), a + b)


def test_every_registry_key_has_canonizers() -> None:
    from melasma.models import ARCHITECTURES

    assert {spec.lrp_canonizer for spec in ARCHITECTURES.values()} | {"generic"} <= set(CANONIZERS)
    with pytest.raises(UnknownCanonizerError, match="unknown LRP canonizer"):
        canonizers_for("nope")


def test_bad_input_is_a_one_line_error() -> None:
    model = create("resnet18").eval()
    with pytest.raises(ExplainError, match=r"\(N, 3, H, W\)"):
        explain(model, torch.randn(3, SIZE, SIZE))
    with pytest.raises(ExplainError, match="method must be one of"):
        explain(model, torch.randn(1, 3, SIZE, SIZE), method="shap")
    with pytest.raises(ExplainError, match="composite must be one of"):
        explain(model, torch.randn(1, 3, SIZE, SIZE), composite="alpha_beta")
    with pytest.raises(ExplainError, match="target must be a class index"):
        explain(model, torch.randn(1, 3, SIZE, SIZE), target=3)


#: The study's input size; conservation is checked at it on real photos.
STUDY_SIZE = 224


def _real_photos(folder, count: int = 2) -> torch.Tensor:
    """The first `count` melasma photos of `folder`, squashed to 224 px and ImageNet-normalised."""
    import numpy as np

    from melasma.data.images import load_array
    from melasma.models.registry import IMAGENET_MEAN, IMAGENET_STD

    paths = sorted((folder / "melasma").glob("*.jpg"))[:count]
    pixels = torch.from_numpy(np.stack([load_array(p, STUDY_SIZE) for p in paths])).permute(0, 3, 1, 2) / 255
    return (pixels - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def photo_stats(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Batch-norm running statistics equal to the statistics of `x` (one cumulative train pass)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    with torch.no_grad():
        model.train()(x)
    return model.eval()


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize("arch", ARCHS)
def test_relevance_at_224_px_on_real_photos(arch: str, roboflow_dir) -> None:
    """Random init (seed 0) with batch-norm statistics from two real photos, EpsilonPlusFlat with
    biases excluded (the maps the app shows): five networks conserve within 0.02 at 224 px. AlexNet
    does not, and the test pins down why: in its dense layers (epsilon rule) the bias-free
    pre-activation z of units that are active only through their bias is tiny, so relevance there
    is R / z times each input's share, large and of both signs; the epsilon stabiliser keeps the
    share z / (z + eps sign z) < 1 of it, which no longer cancels, and the total drifts."""
    x = _real_photos(roboflow_dir)
    torch.manual_seed(0)
    model = photo_stats(create(arch), x)
    key = get_spec(model).lrp_canonizer
    if arch != "alexnet":
        _, relevance = lrp_attribution(model, x, None, canonizer=key, zero_bias=True)
        assert (relevance.sum((1, 2, 3)) - 1).abs().max().item() <= 0.02, relevance.sum((1, 2, 3))
        return
    dense = model.classifier[1]  # Linear 9216 -> 4096 under the epsilon rule
    seen: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(_module, args) -> None:
            seen[f"{name} input"] = args[0].detach()
            args[0].register_hook(lambda grad: seen.__setitem__(f"{name} relevance", grad.detach()))
        return hook

    handles = [model.classifier[1].register_forward_pre_hook(keep("in")),
               model.classifier[2].register_forward_pre_hook(keep("out"))]
    try:
        _, relevance = lrp_attribution(model, x, None, canonizer=key, zero_bias=True)
    finally:
        for handle in handles:
            handle.remove()
    totals = relevance.sum((1, 2, 3))
    worst = int((totals - 1).abs().argmax())
    assert abs(totals[worst].item() - 1) > 0.1, totals  # not conserved (measured 1.007 and 2.41)
    z = seen["in input"] @ dense.weight.T  # bias-free pre-activations
    out = seen["out relevance"]
    sign = torch.where(z == 0, 1.0, z.sign())
    eps_share = out * 1e-6 * sign / (z + 1e-6 * sign)  # what zennit's stabiliser (eps 1e-6) keeps back
    assert torch.allclose(seen["in relevance"].sum(1), out.sum(1) - eps_share.sum(1), atol=1e-2)  # the rule
    assert (out[worst] > 1).any() and (out[worst] < -1).any()  # units holding more than the whole, both signs
    tiny = z[worst].abs() < 1e-4  # 37 of 4096 units: they account for the drift
    assert abs(eps_share[worst][tiny].sum() - eps_share[worst].sum()) < 0.2 * abs(eps_share[worst].sum())
    assert abs(eps_share[worst].sum()) > 0.5


@pytest.mark.realdata
def test_the_trained_demo_checkpoint_conserves_on_real_photos(roboflow_dir) -> None:
    """Trained weights: the demo checkpoint (EfficientNet-Lite0, 224 px) on ten real photos (measured
    0.99953-0.99970)."""
    import numpy as np

    from melasma.data.images import load_array
    from melasma.inference import default_checkpoint
    from melasma.models import load_checkpoint

    model, meta = load_checkpoint(default_checkpoint())
    paths = sorted(roboflow_dir.glob("*/*.jpg"))[::10]
    pixels = np.stack([load_array(p, meta.image_size) for p in paths])
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2) / 255
    x = (x - torch.tensor(meta.mean).view(1, 3, 1, 1)) / torch.tensor(meta.std).view(1, 3, 1, 1)
    _, relevance = lrp_attribution(model.eval(), x, None, canonizer=get_spec(model).lrp_canonizer, zero_bias=True,
                                   mean=meta.mean, std=meta.std)
    assert len(paths) == 10 and (relevance.sum((1, 2, 3)) - 1).abs().max().item() <= 0.02
