"""Batch augmentation on the device, per-sample random: the study's flip, rotation +-15 degrees and
colour jitter, applied to float images in [0, 1] shaped (B, 3, H, W); then ImageNet normalisation."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from melasma.models.registry import IMAGENET_MEAN, IMAGENET_STD

_GREY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


@dataclass(frozen=True)
class Augment:
    """Augmentation strengths; jitter factors are drawn from [1 - s, 1 + s] per sample."""

    flip: bool = True
    max_degrees: float = 15.0
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None, rows: torch.Tensor | None = None,
                 batch: int | None = None) -> torch.Tensor:
        """Augmented copy of `x` (B, 3, H, W) in [0, 1]; randomness from `generator` (on x's device).

        With `rows`, `x` holds only those rows of a batch of `batch` images (one rank's share in a
        multi-process run): the draws are made for the whole batch, as one process would, and each
        row gets its own."""
        size = x.shape[0] if rows is None or batch is None else batch

        def uniform(low: float, high: float) -> torch.Tensor:
            u = torch.rand(size, 1, 1, 1, generator=generator, device=x.device, dtype=x.dtype)
            return low + (high - low) * (u if rows is None else u[rows])

        if self.flip:
            x = torch.where(uniform(0, 1) < 0.5, x.flip(-1), x)
        if self.max_degrees > 0:
            x = rotate(x, uniform(-self.max_degrees, self.max_degrees).flatten())
        grey_weights = torch.tensor(_GREY, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        if self.brightness > 0:
            x = x * uniform(1 - self.brightness, 1 + self.brightness)
        if self.contrast > 0:
            mean = (x * grey_weights).sum(1, keepdim=True).mean((2, 3), keepdim=True)
            x = (x - mean) * uniform(1 - self.contrast, 1 + self.contrast) + mean
        if self.saturation > 0:
            grey = (x * grey_weights).sum(1, keepdim=True)
            x = (x - grey) * uniform(1 - self.saturation, 1 + self.saturation) + grey
        return x.clamp(0, 1)


def rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each image of `x` by its own angle about the centre; corners fill with black."""
    if x.shape[0] == 0:  # a rank's empty share of a batch
        return x
    radians = degrees.to(torch.float32) * (math.pi / 180)
    cos, sin = torch.cos(radians), torch.sin(radians)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [0, 1], keeping the channels-last memory layout."""
    return images.permute(0, 3, 1, 2).float().div_(255)


def normalize(x: torch.Tensor, mean: tuple[float, ...] = IMAGENET_MEAN,
              std: tuple[float, ...] = IMAGENET_STD) -> torch.Tensor:
    """(x - mean) / std per channel."""
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s
