"""Skin-tone groups for subgroup metrics: the manifest's `skin_type` when every image has one, else
ITA groups (Chardon et al. 1991) from each image's mean skin colour (`melasma.data.tone.mean_ita`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from melasma.data.tone import mean_ita

#: Lower ITA bound (degrees) -> group name, lightest first.
ITA_GROUPS: tuple[tuple[float, str], ...] = (
    (55.0, "very light"), (41.0, "light"), (28.0, "intermediate"), (10.0, "tan"), (-30.0, "brown"),
    (-np.inf, "dark"),
)


def ita_group(angle: float) -> str:
    """The ITA group of an angle in degrees ("ITA tan", ...)."""
    return "ITA " + next(name for low, name in ITA_GROUPS if angle > low or low == -np.inf)


def skin_groups(given: Sequence[str | None], images: np.ndarray) -> list[str]:
    """One group per image: `given` when every entry is filled, else the ITA group of each image
    (`images`: uint8 (N, H, W, 3))."""
    if all(isinstance(value, str) and value for value in given):
        return list(given)  # type: ignore[arg-type]
    return [ita_group(mean_ita(image)) for image in np.asarray(images)]
