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
from collections.abc import Sequence

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


def deletion_curves(
    model: nn.Module,
    x: torch.Tensor,
    relevance: np.ndarray | torch.Tensor,
    targets: Sequence[int],
    *,
    patch: int | None = None,
    steps: int = 16,
    baseline: str = "mean",
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Deletion curves of a batch: fractions deleted (K,) and each image's target probability after
    deleting its patches in order of summed relevance (N, K); x (N, 3, H, W), relevance (N, H, W).

    Patches are `patch` px squares (default: 1/8 of the side); `steps + 1` points from 0 to 1 (ties
    in relevance are deleted in reading order). The N x K deleted images go through the model
    `batch_size` at a time, without gradients. The model must be in eval mode.
    """
    check_input(x)
    count, _, height, width = x.shape
    relevance_t = torch.as_tensor(_array(relevance), dtype=torch.float32, device=x.device)
    if relevance_t.shape != (count, height, width):
        raise ExplainError(f"relevance {tuple(relevance_t.shape)} must be one map per input image, "
                           f"{(count, height, width)}")
    if len(targets) != count:
        raise ExplainError(f"expected {count} targets (one per image), got {len(targets)}")
    patch = patch or max(1, min(height, width) // 8)
    scores = F.avg_pool2d(relevance_t[:, None], patch, ceil_mode=True)[:, 0]
    grid_w = scores.shape[2]
    order = torch.argsort(scores.flatten(1), dim=1, descending=True, stable=True)
    cells = order.shape[1]
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(cells, device=x.device).expand(count, cells))
    pixel_rank = F.interpolate(
        rank.view(count, 1, -1, grid_w).float(), scale_factor=patch, mode="nearest"
    )[:, 0, :height, :width]
    counts = np.unique(np.linspace(0, cells, steps + 1).round().astype(int))
    image = torch.arange(count, device=x.device).repeat_interleave(len(counts))
    deleted_cells = torch.as_tensor(counts, device=x.device, dtype=torch.float32).repeat(count)
    target = torch.as_tensor([int(t) for t in targets], device=x.device)[image]
    fill = _baseline(x, baseline)
    probabilities = []
    with torch.no_grad():
        for start in range(0, len(image), batch_size):
            rows = slice(start, start + batch_size)
            which = image[rows]
            deleted = (pixel_rank[which] < deleted_cells[rows, None, None])[:, None]
            output = model(torch.where(deleted, fill[which], x[which])).float()
            chosen = torch.softmax(output, dim=1).gather(1, target[rows, None])[:, 0]
            probabilities.append(chosen.cpu())
    return counts / cells, torch.cat(probabilities).view(count, len(counts)).numpy()


def deletion_aucs(
    model: nn.Module, x: torch.Tensor, relevance: np.ndarray | torch.Tensor, targets: Sequence[int], **options
) -> np.ndarray:
    """Per image of a batch: the area under its deletion curve divided by its starting probability
    (lower: more faithful). Options as `deletion_curves`."""
    fractions, probabilities = deletion_curves(model, x, relevance, targets, **options)
    start = np.maximum(probabilities[:, :1], 1e-12)
    return np.trapezoid(probabilities / start, fractions, axis=1)


def deletion_curve(
    model: nn.Module, x: torch.Tensor, relevance: np.ndarray | torch.Tensor, target: int, **options
) -> tuple[np.ndarray, np.ndarray]:
    """One image's deletion curve: (fraction deleted, target probability); x (1, 3, H, W),
    relevance (H, W). Options as `deletion_curves`."""
    fractions, probabilities = deletion_curves(model, x, _array(relevance)[None], [target], **options)
    return fractions, probabilities[0]


def deletion_auc(
    model: nn.Module, x: torch.Tensor, relevance: np.ndarray | torch.Tensor, target: int, **options
) -> float:
    """One image's area under the deletion curve divided by the starting probability."""
    return float(deletion_aucs(model, x, _array(relevance)[None], [target], **options)[0])
