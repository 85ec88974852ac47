"""Layer-wise relevance propagation through zennit, with the canonizers of `canonizers.py`.

Composites: EpsilonPlusFlat (default: flat rule on the first layer, z+ on convolutions, epsilon on
dense layers) and EpsilonGammaBox (z-box on the first layer, bounded by the pixel range after
normalisation; gamma on convolutions). Relevance starts as the one-hot target logit, so with
biases excluded (`zero_bias=True`) the input relevance sums to ~1, except on AlexNet: its dense
layers' epsilon rule divides by bias-free pre-activations near 0 and the stabiliser's share of
those large, opposite-signed relevances does not cancel (docs/explanations.md; tested at 224 px).

Depthwise convolutions (MobileNetV2) get `ZPlusFlatFallback`: a 3x3 depthwise filter sees only 9
inputs, so often none contributes positively while the neuron is still active through its (merged
batch-norm) bias; plain z+ then drops that neuron's relevance (about 45 % of the total over
MobileNetV2's 17 blocks). The fallback spreads it uniformly over the receptive field instead.
DenseNet121 gets it on every convolution (`FALLBACK_EVERY_CONV`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from zennit.attribution import Gradient
from zennit.composites import EpsilonGammaBox, EpsilonPlusFlat
from zennit.core import BasicHook, Composite, ParamMod, Stabilizer
from zennit.rules import ClampMod, zero_bias

from melasma.errors import UserError
from melasma.explain.canonizers import canonizers_for
from melasma.explain.rules import Lean, lean_layer_maps
from melasma.models.registry import IMAGENET_MEAN, IMAGENET_STD, get_spec


class ExplainError(UserError):
    """Bad input to an explanation method (shape, method, target, composite)."""


def box_bounds(
    x: torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The lowest and highest normalised pixel values, (0 - mean) / std and (1 - mean) / std, as
    (1, C, 1, 1) tensors of x's dtype and device (zennit's ZBox broadcasts them to any batch)."""
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (0 - mean_t) / std_t, (1 - mean_t) / std_t


class ZPlusFlatFallback(BasicHook):
    """z+ rule; where a neuron has no positive contribution (z+ = 0), the flat rule instead."""

    def __init__(self, stabilizer: float = 1e-6, zero_params: str | list[str] | None = None) -> None:
        stabilize = Stabilizer.ensure(stabilizer)

        def gradient_mapper(out_grad: torch.Tensor, outputs: list[torch.Tensor]) -> list[torch.Tensor]:
            z_plus = outputs[0] + outputs[1]
            positive = z_plus > 0
            zero = torch.zeros_like(out_grad)
            through_z = torch.where(positive, out_grad / stabilize(z_plus), zero)
            flat = torch.where(positive, zero, out_grad / stabilize(outputs[2]))
            return [through_z, through_z, flat]

        super().__init__(
            input_modifiers=[lambda x: x.clamp(min=0), lambda x: x.clamp(max=0), torch.ones_like],
            param_modifiers=[
                ClampMod(min=0.0, zero_params=zero_params),
                ClampMod(max=0.0, zero_params=zero_bias(zero_params)),
                ParamMod(
                    lambda param, name: torch.ones_like(param),
                    zero_params=zero_bias(zero_params), require_params=False,
                ),
            ],
            output_modifiers=[lambda output: output] * 3,
            gradient_mapper=gradient_mapper,
            reducer=lambda inputs, grads: inputs[0] * grads[0] + inputs[1] * grads[1] + grads[2],
        )


class _DepthwiseMeta(type):
    def __instancecheck__(cls, module: object) -> bool:
        if not isinstance(module, nn.Conv2d):
            return False
        depthwise = module.groups > 1 and module.groups == module.in_channels
        return depthwise or bool(getattr(module, FLAT_FALLBACK, False))


#: A convolution carrying this attribute (set by a canonizer) gets the z+ rule with the flat fallback
#: too, not only depthwise ones: EfficientNet-Lite's pointwise convolutions after a merged batch norm
#: have positions where z+ (biases excluded) is 0 while the biased output is not, and plain z+
#: dropped 2.6 % of the relevance of a random-init network at 224 px there.
FLAT_FALLBACK = "lrp_flat_fallback"


class DepthwiseConv2d(metaclass=_DepthwiseMeta):
    """Matches depthwise `nn.Conv2d` instances (and those a canonizer marked with `FLAT_FALLBACK`)
    in zennit layer maps (`isinstance` only)."""


class LeanZPlusFlatFallback(Lean, ZPlusFlatFallback):
    """`ZPlusFlatFallback` with cached parameters and its negative-input branch skipped when empty.

    Both denominators are non-negative (z+ sums non-negative terms, the flat branch counts inputs),
    where zennit's stabiliser adds exactly +eps: so each is `z + eps`, two operations instead of six
    on MobileNetV2's largest activations; z+'s sign (0 or 1) selects each branch by a product
    instead of `torch.where`. Same values as the stock rule.
    """

    negative_branches, positive_branches = (1,), (0,)

    def __init__(self, stabilizer: float = 1e-6, zero_params: str | list[str] | None = None) -> None:
        super().__init__(stabilizer=stabilizer, zero_params=zero_params)

        def gradient_mapper(out_grad: torch.Tensor, outputs: list[torch.Tensor]) -> list[torch.Tensor]:
            z_plus = outputs[0] if outputs[1].ndim == 0 else outputs[0] + outputs[1]
            active = torch.sign(z_plus)  # z+ >= 0: 1 where positive, 0 where not (no slow `where`)
            through_z = out_grad / (z_plus + stabilizer) * active
            flat = out_grad / (outputs[2] + stabilizer) * (1 - active)
            return [through_z, through_z, flat]

        def reducer(inputs: list[torch.Tensor], gradients: list[torch.Tensor]) -> torch.Tensor:
            through_z = inputs[0] * gradients[0]
            if inputs[1].ndim != 0:
                through_z = through_z + inputs[1] * gradients[1]
            return through_z + gradients[2]

        self.gradient_mapper, self.reducer = gradient_mapper, reducer


#: `lrp_canonizer` keys of the networks whose every convolution (not only depthwise ones) gets
#: `ZPlusFlatFallback`: DenseNet's pre-activation batch norms (Pass rule) hand relevance to
#: convolution outputs that have no positive contribution (z+ = 0), which plain z+ drops; relevance
#: of both signs (from the epsilon rule of the classifier) then no longer cancels, and at 224 px on
#: real photos the input relevance summed to 0.96 and 1.15 (0.9996-1.0001 with the fallback).
FALLBACK_EVERY_CONV = frozenset({"timm_densenet"})


def _every_conv(model: nn.Module) -> bool:
    return hasattr(model, "arch_name") and get_spec(model).lrp_canonizer in FALLBACK_EVERY_CONV


def _maps(composite: str, zero_params: str | None, lean: bool, low=None, high=None,
          every_conv: bool = False) -> tuple[list, list]:
    """(layer_map, first_map) to prepend to zennit's composite: the flat fallback on depthwise (with
    `every_conv`, all) convolutions, and with `lean` zennit's own rules in their lean form
    (`melasma.explain.rules`)."""
    fallback = (LeanZPlusFlatFallback if lean else ZPlusFlatFallback)(zero_params=zero_params)
    convolutions: tuple[type, ...] = (nn.Conv2d,) if every_conv else (DepthwiseConv2d,)
    depthwise: list[tuple[tuple[type, ...], BasicHook]] = [(convolutions, fallback)]
    if not lean:
        return depthwise, []
    layer_map, first_map = lean_layer_maps(composite, zero_params, low=low, high=high)
    return depthwise + layer_map, first_map


def _epsilon_plus_flat(model, x, canonizers, zero_params, mean, std, lean=False) -> Composite:
    layer_map, first_map = _maps("epsilon_plus_flat", zero_params, lean, every_conv=_every_conv(model))
    return EpsilonPlusFlat(zero_params=zero_params, canonizers=canonizers, layer_map=layer_map, first_map=first_map)


def _epsilon_gamma_box(model, x, canonizers, zero_params, mean, std, lean=False) -> Composite:
    low, high = box_bounds(x, mean, std)
    if getattr(model, "transform_input", False):  # GoogLeNet: the first conv sees re-normalised input
        low, high = model._transform_input(low), model._transform_input(high)
    layer_map, first_map = _maps("epsilon_gamma_box", zero_params, lean, low, high)
    return EpsilonGammaBox(
        low=low, high=high, zero_params=zero_params, canonizers=canonizers, layer_map=layer_map, first_map=first_map,
    )


#: Whether LRP excludes biases for display, per composite. EpsilonPlusFlat: yes, so the map holds
#: the whole one-hot start (conserved); zennit's Gamma picks signs from the biased output, which
#: with zeroed biases divides by near-zero sums, so EpsilonGammaBox keeps them.
LRP_ZERO_BIAS: dict[str, bool] = {"epsilon_plus_flat": True, "epsilon_gamma_box": False}

#: composite name -> builder(model, x, canonizers, zero_params, mean, std, lean=False); `lean`: the
#: rules of `melasma.explain.rules` (same maps, work cached across calls: for `Explainer`).
COMPOSITES: dict[str, Callable[..., Composite]] = {
    "epsilon_plus_flat": _epsilon_plus_flat,
    "epsilon_gamma_box": _epsilon_gamma_box,
}


def check_input(x: torch.Tensor) -> None:
    """Raise ExplainError unless x is an (N, 3, H, W) floating-point tensor with N >= 1."""
    if (
        not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[0] < 1 or x.shape[1] != 3
        or not x.is_floating_point()
    ):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ExplainError(f"expected a float (N, 3, H, W) input tensor, got {shape}")


def check_target(target: int | None, num_classes: int) -> None:
    """Raise ExplainError unless target is None or a class index below num_classes."""
    if target is not None and not 0 <= int(target) < num_classes:
        raise ExplainError(f"target must be a class index in 0..{num_classes - 1}, got {target}")


#: A class index for every image, one index per image, or None (each image's predicted class).
Targets = int | Sequence[int] | None


def target_indices(target: Targets, logits: torch.Tensor) -> torch.Tensor:
    """The (N,) long class indices that `target` names for a batch of (N, C) logits."""
    count, classes = logits.shape
    if target is None:
        return logits.detach().argmax(1)
    values = [int(target)] * count if isinstance(target, (int, np.integer)) else [int(t) for t in target]
    if len(values) != count:
        raise ExplainError(f"expected {count} targets (one per image), got {len(values)}")
    for value in values:
        check_target(value, classes)
    return torch.tensor(values, dtype=torch.long, device=logits.device)


def one_hot_start(target: Targets) -> Callable[[torch.Tensor], torch.Tensor]:
    """A zennit output-relevance function: one-hot at target (None: each image's predicted class)."""

    def start(output: torch.Tensor) -> torch.Tensor:
        return F.one_hot(target_indices(target, output), output.shape[1]).to(output.dtype)

    return start


def lrp_attribution(
    model: nn.Module,
    x: torch.Tensor,
    target: Targets = None,
    *,
    canonizer: str = "generic",
    composite: str = "epsilon_plus_flat",
    zero_bias: bool = False,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The model output and the input relevance (same shape as x) for one-hot `target`.

    `canonizer` is an ArchSpec `lrp_canonizer` key; `zero_bias` excludes biases from the rules
    (zennit `zero_params="bias"`), which makes relevance conserve exactly. The model must be in
    eval mode; hooks and canonizer changes are removed before this returns.
    """
    check_input(x)
    if composite not in COMPOSITES:
        raise ExplainError(f"composite must be one of {', '.join(COMPOSITES)}, got {composite!r}")
    if model.training:
        raise ExplainError("LRP needs the model in eval mode (batch norms are merged with running stats)")
    zero_params = "bias" if zero_bias else None
    built = COMPOSITES[composite](model, x, canonizers_for(canonizer), zero_params, mean, std)
    with torch.enable_grad(), Gradient(model, built, attr_output=one_hot_start(target)) as attributor:
        output, relevance = attributor(x.detach().clone())
    return output.detach(), relevance.detach()


def lrp_map(model: nn.Module, x: torch.Tensor, target: Targets = None, **options) -> torch.Tensor:
    """Signed LRP relevance summed over colour channels: (N, H, W). Options as `lrp_attribution`."""
    _, relevance = lrp_attribution(model, x, target, **options)
    return relevance.sum(1)
