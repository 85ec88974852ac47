"""How much of an explanation's positive relevance falls inside each MASI region."""

from __future__ import annotations

import cv2
import numpy as np

from melasma.regions.types import FaceRegions


def relevance_share(regions: FaceRegions, heatmap: np.ndarray) -> dict[str, float]:
    """Share (0-1) of the heatmap's positive relevance inside each region's skin mask.

    `heatmap` is (h, w) or (h, w, c) (channels summed) at any size; it is resized to the photo.
    Shares are of the whole photo's positive relevance, so they sum to at most 1 (the rest lies
    elsewhere: nose, eyes, hair, background). All zeros when the heatmap has no positive relevance.
    """
    values = np.asarray(heatmap, dtype=np.float32)
    if values.ndim == 3:
        values = values.sum(axis=2)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"heatmap must be (h, w) or (h, w, c), got shape {values.shape}")
    width, height = regions.image_size
    positive = np.clip(np.nan_to_num(cv2.resize(values, (width, height), interpolation=cv2.INTER_LINEAR)), 0, None)
    total = float(positive.sum())
    if total <= 0:
        return {name: 0.0 for name in regions.regions}
    return {name: float(positive[region.mask].sum() / total) for name, region in regions.regions.items()}
