"""The per-call explanation path: `explain(model, x, method, target)` leaves the model as it found it
(canonizers and hooks removed on exit, the train/eval flag and the parameters' `requires_grad`
flags restored); `melasma.explain` re-exports it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from melasma.explain.cam import gradcam_map
from melasma.explain.gxi import gxi_map
from melasma.explain.lrp import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LRP_ZERO_BIAS,
    ExplainError,
    Targets,
    check_input,
    lrp_map,
)
from melasma.explain.methods import METHODS
from melasma.models.registry import get_spec, resolve_module


@contextlib.contextmanager
def inference_state(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and frozen parameters (no weight gradients: faster, no `.grad` left behind)."""
    training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    try:
        for parameter, _ in flags:
            parameter.requires_grad_(False)
        yield model
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)
        model.train(training)


def _lrp(model, x, target, spec, composite, mean, std) -> torch.Tensor:
    if composite not in LRP_ZERO_BIAS:
        raise ExplainError(f"composite must be one of {', '.join(LRP_ZERO_BIAS)}, got {composite!r}")
    return lrp_map(
        model, x, target, canonizer=spec.lrp_canonizer, composite=composite,
        zero_bias=LRP_ZERO_BIAS[composite], mean=mean, std=std,
    )


def _gradcam(model, x, target, spec, composite, mean, std) -> torch.Tensor:
    return gradcam_map(model, x, resolve_module(model, spec.cam_layer), target)


def _gxi(model, x, target, spec, composite, mean, std) -> torch.Tensor:
    return gxi_map(model, x, target)


#: method name (`melasma.explain.methods.TABLE`) -> implementation(model, x, target, spec, composite,
#: mean, std) -> (N, H, W).
IMPLEMENTATIONS: dict[str, Callable[..., torch.Tensor]] = {"lrp": _lrp, "gradcam": _gradcam, "gxi": _gxi}
assert tuple(IMPLEMENTATIONS) == METHODS, "every method of the table needs a per-call implementation"


def explain(
    model: nn.Module,
    x: torch.Tensor,
    method: str = "lrp",
    target: Targets = None,
    composite: str = "epsilon_plus_flat",
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """Float maps on the CPU explaining `target` for x (N, 3, H, W): (H, W) when N is 1, else
    (N, H, W). `target`: a class index, one per image, or None (each image's predicted class).

    "lrp": signed relevance (sums to ~1 with EpsilonPlusFlat); "gradcam": [0, 1] heat; "gxi":
    gradient x input. `mean`/`std` (the input normalisation) bound EpsilonGammaBox's first layer.
    The model must come from `melasma.models.create` / `load_checkpoint` (it has `arch_name`).
    This per-call path sets up (and removes) canonizers and hooks each time; `Explainer` keeps
    them for a model's lifetime and is what the app and the report use.
    """
    if method not in METHODS:
        raise ExplainError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    check_input(x)
    spec = get_spec(model)
    with inference_state(model):
        relevance = IMPLEMENTATIONS[method](model, x, target, spec, composite, mean, std)
    relevance = relevance.detach().float().cpu()
    return relevance[0] if x.shape[0] == 1 else relevance

