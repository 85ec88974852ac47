"""Convolutions that act as dense layers, computed as dense layers.

timm's VGG16 ends in `ConvMlp`, whose first layer is a 7 x 7 convolution (4096 x 512 x 7 x 7, 411 MB
of weights) over the 7 x 7 map of a 224 px image. On the CPU, oneDNN lays that weight out afresh on
every call: 100 k page faults and 134 ms a call on the 2-core dev machine, where the same product as
a matrix multiply takes 14 ms (`benchmarks/dense_conv.py`; a 1 x 1 kernel is not laid out again
and gains nothing). `DenseConv2d` computes it as one whenever its kernel covers its whole unpadded
input, and is an ordinary convolution otherwise (larger inputs slide the kernel as before).
Parameters, their names and checkpoints are unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Convolutions with at least this many weights are worth it (VGG16's fc1 has 103 M).
MIN_DENSE_WEIGHTS = 1 << 20


class DenseConv2d(nn.Conv2d):
    """`nn.Conv2d` that runs as `F.linear` when its kernel covers its whole input (no padding)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        if tuple(x.shape[-2:]) != self.kernel_size or self.groups != 1:
            return super().forward(x)
        if weight.is_contiguous():
            rows, matrix = x.flatten(1), weight.flatten(1)
        elif weight.is_contiguous(memory_format=torch.channels_last):  # (O, kh, kw, C) order in memory
            rows, matrix = x.permute(0, 2, 3, 1).flatten(1), weight.permute(0, 2, 3, 1).flatten(1)
        else:
            return super().forward(x)
        return F.linear(rows, matrix, self.bias)[:, :, None, None]


def use_dense_convolutions(model: nn.Module, min_weights: int = MIN_DENSE_WEIGHTS) -> int:
    """Turn each plain, unpadded, ungrouped `nn.Conv2d` of `model` with a kernel larger than 1 x 1
    and at least `min_weights` weights into a `DenseConv2d` in place (same parameters and hooks);
    returns how many."""
    changed = 0
    for module in model.modules():
        if (type(module) is nn.Conv2d and module.weight.numel() >= min_weights and module.groups == 1
                and module.kernel_size != (1, 1)
                and module.padding_mode == "zeros" and module.dilation == (1, 1)
                and module.padding in ((0, 0), "valid")):
            module.__class__ = DenseConv2d  # a subclass that adds no state: the module stays as it is
            changed += 1
    return changed
