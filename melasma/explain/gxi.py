"""Gradient x input: the study's "LRP" (Zhang et al. 2025), summed over colour channels."""

from __future__ import annotations

import torch
from torch import nn

from melasma.explain.lrp import check_input, check_target


def gxi_map(model: nn.Module, x: torch.Tensor, target: int | None = None) -> torch.Tensor:
    """d logit[target] / d x, times x, summed over channels: (H, W). Target None: predicted class."""
    check_input(x)
    with torch.enable_grad():
        inputs = x.detach().clone().requires_grad_(True)
        logits = model(inputs)
        check_target(target, logits.shape[1])
        index = int(logits[0].argmax()) if target is None else int(target)
        (gradient,) = torch.autograd.grad(logits[0, index], inputs)
    return (gradient * inputs.detach())[0].sum(0)
