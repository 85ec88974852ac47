"""Localisation and faithfulness of relevance maps, beside the study's mean relevance.

- relevance mass accuracy (Arras et al. 2022): share of the positive relevance inside a lesion mask;
- pointing game (Zhang et al. 2018): is the most relevant pixel on the lesion (small tolerance);
- deletion AUC (Petsiuk et al. 2018): replace the most relevant patches first with a baseline
  (the image mean or a blur) and follow the target probability; the area under that curve, scaled
  by the starting probability, is low when the map found what the model relies on;
- the study's "mean relevance": the mean of gradient x input over pixels (Zhang et al. 2025, Table 2).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from melasma.explain.lrp import ExplainError, check_input

#: Pointing-game tolerance as a share of the map's longer side (15 px at 224 px in Zhang et al.).
POINTING_TOLERANCE = 15 / 224
BASELINES = ("mean", "blur")


def _array(values: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu().numpy()
    return np.asarray(values)


def _pair(relevance: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    relevance, mask = _array(relevance).astype(np.float64), _array(mask).astype(bool)
    if relevance.ndim != 2 or relevance.shape != mask.shape:
        raise ExplainError(f"relevance {relevance.shape} and mask {mask.shape} must be the same (H, W)")
    return relevance, mask


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A bool mask resized (nearest) to `size` = (width, height), the way photos are squashed."""
    from PIL import Image

    image = Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255)
    return np.asarray(image.resize(size, Image.Resampling.NEAREST)) >= 128


def relevance_mass_accuracy(relevance: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor) -> float:
    """Positive relevance inside the mask / all positive relevance (NaN when there is none)."""
    relevance, mask = _pair(relevance, mask)
    positive = np.clip(relevance, 0.0, None)
    total = positive.sum()
    return float(positive[mask].sum() / total) if total > 0 else math.nan


def pointing_game(
    relevance: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor, tolerance: float = POINTING_TOLERANCE
) -> bool:
    """Whether the most relevant pixel lies within `tolerance` x (longer side) pixels of the mask."""
    relevance, mask = _pair(relevance, mask)
    if not mask.any():
        raise ExplainError("the pointing game needs a mask with at least one lesion pixel")
    row, col = np.unravel_index(np.argmax(relevance), relevance.shape)
    radius = tolerance * max(relevance.shape)
    rows, cols = np.nonzero(mask)
    return bool(np.min((rows - row) ** 2 + (cols - col) ** 2) <= radius ** 2)


def mean_relevance(relevance: np.ndarray | torch.Tensor) -> float:
    """The study's per-image summary: the mean of the map over pixels."""
    return float(_array(relevance).astype(np.float64).mean())


def _baseline(x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    if kind == "blur":
        side = max(3, (min(x.shape[-2:]) // 8) | 1)
        return gaussian_blur(x, kernel_size=[side, side], sigma=side / 3)
    raise ExplainError(f"baseline must be one of {', '.join(BASELINES)}, got {kind!r}")


def deletion_curve(
    model: nn.Module,
    x: torch.Tensor,
    relevance: np.ndarray | torch.Tensor,
    target: int,
    *,
    patch: int | None = None,
    steps: int = 16,
    baseline: str = "mean",
    batch_size: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """(fraction deleted, target probability) after deleting patches in order of summed relevance.

    Patches are `patch` px squares (default: 1/8 of the side); `steps + 1` points from 0 to 1.
    The model must be in eval mode.
    """
    check_input(x)
    relevance_t = torch.as_tensor(_array(relevance), dtype=torch.float32, device=x.device)
    height, width = x.shape[-2:]
    if relevance_t.shape != (height, width):
        raise ExplainError(f"relevance {tuple(relevance_t.shape)} must match the input's {(height, width)}")
    patch = patch or max(1, min(height, width) // 8)
    scores = F.avg_pool2d(relevance_t[None, None], patch, ceil_mode=True)[0, 0]
    order = torch.argsort(scores.flatten(), descending=True)
    grid_w = scores.shape[1]
    counts = np.unique(np.linspace(0, order.numel(), steps + 1).round().astype(int))
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    pixel_rank = F.interpolate(
        rank.view(1, 1, -1, grid_w).float(), scale_factor=patch, mode="nearest"
    )[0, 0, :height, :width]
    fill = _baseline(x, baseline)
    probabilities = []
    with torch.no_grad():
        for start in range(0, len(counts), batch_size):
            chunk = torch.as_tensor(counts[start:start + batch_size], device=x.device, dtype=torch.float32)
            deleted = (pixel_rank[None] < chunk[:, None, None])[:, None]
            batch = torch.where(deleted, fill, x)
            probabilities.append(torch.softmax(model(batch).float(), dim=1)[:, target].cpu())
    return counts / order.numel(), torch.cat(probabilities).numpy()


def deletion_auc(
    model: nn.Module, x: torch.Tensor, relevance: np.ndarray | torch.Tensor, target: int, **options
) -> float:
    """Area under the deletion curve divided by the starting probability (lower: more faithful)."""
    fractions, probabilities = deletion_curve(model, x, relevance, target, **options)
    start = max(float(probabilities[0]), 1e-12)
    return float(np.trapezoid(probabilities, fractions) / start)
