"""Gradient x input: the study's "LRP" (Zhang et al. 2025), summed over colour channels."""

from __future__ import annotations

import torch
from torch import nn

from melasma.explain.lrp import Targets, check_input, target_indices


def gxi_map(model: nn.Module, x: torch.Tensor, target: Targets = None) -> torch.Tensor:
    """d logit[target] / d x, times x, summed over channels: (N, H, W). Target None: predicted class.

    Images of a batch are independent in eval mode, so one backward of the summed target logits
    gives each image its own gradient.
    """
    check_input(x)
    with torch.enable_grad():
        inputs = x.detach().clone().requires_grad_(True)
        logits = model(inputs)
        index = target_indices(target, logits)
        (gradient,) = torch.autograd.grad(logits.gather(1, index[:, None]).sum(), inputs)
    return (gradient * inputs.detach()).sum(1)
