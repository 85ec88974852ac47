"""LRP canonizers: rewrite each architecture, temporarily, into a form zennit's rules conserve.

zennit ships canonizers only for torchvision VGG and ResNet. The six study networks need more:

- batch norms merged into the convolution right before them (`SiblingMergeBatchNorm`: only where
  the two are adjacent children of one parent, which excludes DenseNet's pre-activation norms; those
  stay and get zennit's Pass rule, an element-wise affine map that keeps relevance);
- residual additions (`x += shortcut` in timm ResNet blocks, `x + shortcut` in timm MobileNetV2
  and EfficientNet-Lite blocks) as a `zennit.layer.Sum` module, so relevance splits in proportion to each branch's
  contribution instead of being copied to both (which doubles it per block);
- GoogLeNet's functional input re-normalisation (`transform_input=True`, as with its ImageNet
  weights) as a per-channel affine module, which the Pass rule crosses without rescaling relevance;
- functional pooling as a module: timm VGG's `ConvMlp` pads small feature maps up to its 7x7 kernel
  with `F.adaptive_avg_pool2d`; as an `nn.AdaptiveAvgPool2d` it gets zennit's Norm rule.

Concatenation (GoogLeNet, DenseNet), flatten, max pooling and eval-mode dropout route gradients to
their inputs unchanged in sum, so they conserve relevance as they are. `CANONIZERS` maps the
`lrp_canonizer` key of an architecture's ArchSpec to a factory of fresh canonizer instances.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from zennit.canonizers import AttributeCanonizer, Canonizer, MergeBatchNorm
from zennit.layer import Sum
from zennit.types import BatchNorm, Linear

from melasma.errors import UserError
from melasma.models.registry import IMAGENET_MEAN, IMAGENET_STD


class UnknownCanonizerError(UserError):
    """An `lrp_canonizer` key that `CANONIZERS` does not define."""


class SiblingMergeBatchNorm(MergeBatchNorm):
    """Merge each batch norm into the linear layer registered right before it under the same parent.

    Batch norms with children (timm's `BatchNormAct2d`) count as one unit. After the merge the batch
    norm computes the exact identity (running variance `1 - eps`, not zennit's `1`, which scales by
    `1 / sqrt(1 + eps)` and drifts by ~1e-4 over MobileNetV2's 52 norms). Its `eps` stays the
    positive value it had (a zennit that zeroes it gets it back): torch 2.11 rejects
    `batch_norm` with eps 0 ("batch_norm eps must be positive").
    """

    def apply(self, root_module: nn.Module) -> list[Canonizer]:
        instances = []
        for parent in root_module.modules():
            if isinstance(parent, BatchNorm):
                continue
            children = list(parent.children())
            for linear, norm in itertools.pairwise(children):
                if isinstance(linear, Linear) and isinstance(norm, BatchNorm) and _fits(linear, norm):
                    instance = self.copy()
                    instance.register((linear,), norm)
                    instances.append(instance)
        return instances

    @staticmethod
    def merge_batch_norm(modules: tuple[nn.Module, ...], batch_norm: Any) -> None:
        eps = batch_norm.eps
        MergeBatchNorm.merge_batch_norm(modules, batch_norm)
        batch_norm.eps = eps
        batch_norm.running_var.data = torch.full_like(batch_norm.running_var.data, 1.0 - eps)


def _fits(linear: nn.Module, norm: nn.Module) -> bool:
    out_features = getattr(linear, "out_channels", getattr(linear, "out_features", None))
    return (
        out_features == norm.num_features
        and norm.running_mean is not None
        and norm.weight is not None
    )


class _ForwardCanonizer(AttributeCanonizer):
    """Overload `forward` with the subclass's `forward` (and add a `canonizer_sum` module) on
    the instances of `block_types` that `applies_to` accepts."""

    block_types: tuple[type, ...] = ()

    def __init__(self) -> None:
        super().__init__(self._attribute_map)

    def _attribute_map(self, name: str, module: nn.Module) -> dict | None:
        if isinstance(module, self.block_types) and self.applies_to(module):
            return {"forward": type(self).forward.__get__(module), "canonizer_sum": SliceSum()}
        return None

    def applies_to(self, module: nn.Module) -> bool:
        """Whether this block needs the rewrite (default: every instance)."""
        return True

    def copy(self) -> _ForwardCanonizer:
        return type(self)()


class SliceSum(Sum):
    """zennit's Sum (the Norm rule's layer type) over a stack along dim 0, as additions of its
    slices: the same value, in the memory format of the tensors stacked, where `torch.sum` returns a
    contiguous tensor. A channels-last network stays channels-last past each residual addition
    instead of running every convolution after it on a converted copy."""

    def __init__(self) -> None:
        super().__init__(dim=0)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        first, *rest = input.unbind(0)
        for term in rest:
            first = first + term
        return first


def _add(module: Any, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """`a + b` through the block's Sum module, so LRP splits relevance proportionally."""
    return module.canonizer_sum(torch.stack([a, b]))


class TimmResNetBlockCanonizer(_ForwardCanonizer):
    """timm ResNet BasicBlock / Bottleneck with `x += shortcut` replaced by a Sum module."""

    def __init__(self) -> None:
        from timm.models.resnet import BasicBlock, Bottleneck

        self.block_types = (BasicBlock, Bottleneck)
        super().__init__()

    @staticmethod
    def forward(self: Any, x: torch.Tensor) -> torch.Tensor:  # noqa: PLW0211 (bound to the block)
        shortcut = x
        if hasattr(self, "conv3"):  # Bottleneck
            x = self.act1(self.bn1(self.conv1(x)))
            x = self.aa(self.act2(self.drop_block(self.bn2(self.conv2(x)))))
            x, last_act = self.bn3(self.conv3(x)), self.act3
        else:  # BasicBlock
            x = self.aa(self.act1(self.drop_block(self.bn1(self.conv1(x)))))
            x, last_act = self.bn2(self.conv2(x)), self.act2
        if self.se is not None:
            x = self.se(x)
        if self.drop_path is not None:
            x = self.drop_path(x)
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        return last_act(_add(self, x, shortcut))


class TimmMobileNetSkipCanonizer(_ForwardCanonizer):
    """timm MobileNetV2 blocks with a skip: `x + shortcut` replaced by a Sum module."""

    def __init__(self) -> None:
        from timm.models._efficientnet_blocks import DepthwiseSeparableConv, InvertedResidual

        self.block_types = (DepthwiseSeparableConv, InvertedResidual)
        super().__init__()

    def applies_to(self, module: nn.Module) -> bool:
        return bool(module.has_skip)

    @staticmethod
    def forward(self: Any, x: torch.Tensor) -> torch.Tensor:  # noqa: PLW0211 (bound to the block)
        shortcut = x
        if self.conv_s2d is not None:
            x = self.bn_s2d(self.conv_s2d(x))
        if hasattr(self, "conv_pwl"):  # InvertedResidual
            x = self.bn2(self.conv_dw(self.bn1(self.conv_pw(x))))
            x = self.bn3(self.conv_pwl(self.se(self.aa(x))))
        else:  # DepthwiseSeparableConv
            x = self.bn1(self.conv_dw(x))
            x = self.bn2(self.conv_pw(self.se(self.aa(x))))
        return _add(self, self.drop_path(x), shortcut)


class AtLeastAvgPool2d(nn.AdaptiveAvgPool2d):
    """Average pooling that enlarges a map to at least `min_size` per side (timm ConvMlp's padding)."""

    def __init__(self, min_size: int) -> None:
        super().__init__(min_size)
        self.min_size = min_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (max(self.min_size, x.shape[-2]), max(self.min_size, x.shape[-1]))
        return F.adaptive_avg_pool2d(x, size)


class TimmConvMlpCanonizer(AttributeCanonizer):
    """timm VGG's ConvMlp (pre-logits) with its functional `adaptive_avg_pool2d` as a module."""

    def __init__(self) -> None:
        super().__init__(self._attribute_map)

    @classmethod
    def _attribute_map(cls, name: str, module: nn.Module) -> dict | None:
        from timm.models.vgg import ConvMlp

        if isinstance(module, ConvMlp):
            return {
                "forward": cls.forward.__get__(module),
                "canonizer_pool": AtLeastAvgPool2d(module.input_kernel_size),
            }
        return None

    def copy(self) -> TimmConvMlpCanonizer:
        return TimmConvMlpCanonizer()

    @staticmethod
    def forward(self: Any, x: torch.Tensor) -> torch.Tensor:  # noqa: PLW0211 (bound to the block)
        if min(x.shape[-2:]) < self.input_kernel_size:
            x = self.canonizer_pool(x)
        x = self.drop(self.act1(self.fc1(x)))
        return self.act2(self.fc2(x))


class ChannelAffine(nn.BatchNorm2d):
    """`x * scale + shift` per channel, as an eval-mode batch norm (so zennit's Pass rule applies)."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        super().__init__(len(scale), device=scale.device, dtype=scale.dtype)
        self.eval()
        with torch.no_grad():
            self.weight.copy_(scale)
            self.bias.copy_(shift)
            assert self.running_var is not None  # track_running_stats is on by default
            self.running_var.fill_(1.0 - self.eps)


class GoogLeNetInputCanonizer(AttributeCanonizer):
    """torchvision GoogLeNet with `transform_input=True` (its ImageNet weights): the functional
    re-normalisation of the input as a `ChannelAffine` module, so relevance passes it unscaled."""

    def __init__(self) -> None:
        super().__init__(self._attribute_map)

    @classmethod
    def _attribute_map(cls, name: str, module: nn.Module) -> dict | None:
        from torchvision.models import GoogLeNet

        if isinstance(module, GoogLeNet) and module.transform_input:
            reference = next(module.parameters())
            # torchvision's GoogLeNet hard-codes ImageNet's statistics in `_transform_input`
            mean = torch.tensor(IMAGENET_MEAN, device=reference.device, dtype=reference.dtype)
            std = torch.tensor(IMAGENET_STD, device=reference.device, dtype=reference.dtype)
            return {
                "forward": cls.forward.__get__(module),
                "canonizer_transform": ChannelAffine(std / 0.5, (mean - 0.5) / 0.5),
            }
        return None

    def copy(self) -> GoogLeNetInputCanonizer:
        return GoogLeNetInputCanonizer()

    @staticmethod
    def forward(self: Any, x: torch.Tensor) -> torch.Tensor:  # noqa: PLW0211 (bound to the block)
        return self._forward(self.canonizer_transform(x))[0]


class FlatFallbackConvCanonizer(AttributeCanonizer):
    """Mark every convolution for the z+ rule with the flat fallback (`melasma.explain.lrp`'s
    `FLAT_FALLBACK`): where z+ is 0 the relevance spreads over the receptive field instead of
    vanishing. EfficientNet-Lite needs it beyond its depthwise convolutions (see that constant)."""

    def __init__(self) -> None:
        super().__init__(self._attribute_map)

    @staticmethod
    def _attribute_map(name: str, module: nn.Module) -> dict | None:
        return {"lrp_flat_fallback": True} if isinstance(module, nn.Conv2d) else None

    def copy(self) -> FlatFallbackConvCanonizer:
        return FlatFallbackConvCanonizer()


#: ArchSpec.lrp_canonizer key -> factory of the canonizers that architecture family needs.
CANONIZERS: dict[str, Callable[[], list[Canonizer]]] = {
    "alexnet": list,
    # merge first: the input canonizer adds a batch-norm-like module after `fc`
    "googlenet": lambda: [SiblingMergeBatchNorm(), GoogLeNetInputCanonizer()],
    "timm_resnet": lambda: [SiblingMergeBatchNorm(), TimmResNetBlockCanonizer()],
    "timm_vgg": lambda: [SiblingMergeBatchNorm(), TimmConvMlpCanonizer()],
    "timm_densenet": lambda: [SiblingMergeBatchNorm()],
    "timm_mobilenetv2": lambda: [SiblingMergeBatchNorm(), TimmMobileNetSkipCanonizer()],
    # EfficientNet-Lite: the same timm blocks (DepthwiseSeparableConv, InvertedResidual), no SE
    "timm_efficientnet_lite": lambda: [SiblingMergeBatchNorm(), TimmMobileNetSkipCanonizer(),
                                       FlatFallbackConvCanonizer()],
    "generic": lambda: [SiblingMergeBatchNorm()],
}


def canonizers_for(key: str) -> list[Canonizer]:
    """Fresh canonizer instances for an `lrp_canonizer` key; raises UnknownCanonizerError."""
    try:
        factory = CANONIZERS[key]
    except KeyError:
        raise UnknownCanonizerError(
            f"unknown LRP canonizer {key!r}; known: {', '.join(CANONIZERS)}"
        ) from None
    return factory()
