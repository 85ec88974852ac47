"""Typed results of `melasma.regions`: where the four MASI regions are, and what was measured there.

Masks are boolean arrays at the photo's resolution (height x width); `to_json()` leaves them out so
the results travel as plain JSON (CLI lines, the `/regions` API).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from melasma.errors import UserError


class FaceNotFound(UserError):
    """The photo shows no face the landmark model can find (or is unusable: too small, empty)."""


@dataclass(frozen=True)
class Region:
    """One MASI region: its outline, its skin pixels, and whether it can be judged at all."""

    name: str
    mask: np.ndarray  # bool (h, w): skin pixels of the region after exclusions
    polygon: np.ndarray  # (k, 2) float x, y in image pixels (may reach outside the frame)
    visible: bool
    reason: str = ""  # why not visible; empty when visible

    def to_json(self) -> dict[str, object]:
        """Name, outline, visibility and skin pixel count (no mask)."""
        return {
            "name": self.name,
            "visible": self.visible,
            "reason": self.reason,
            "pixels": int(self.mask.sum()),
            "polygon": np.round(self.polygon.astype(float), 1).tolist(),
        }


@dataclass(frozen=True)
class FaceRegions:
    """The face found in a photo: landmarks, the four regions and the face's skin mask."""

    image_size: tuple[int, int]  # (width, height)
    landmarks: np.ndarray  # (n, 2) float x, y in image pixels
    regions: dict[str, Region]  # keyed by melasma.masi.REGIONS
    skin_mask: np.ndarray  # bool (h, w): skin inside the face outline, exclusions removed
    note: str = ""  # e.g. "3 faces, used the largest"
    yaw: float = 0.0  # head turn, -1 (turned to the patient's right) .. 1 (to the left)

    @property
    def visible_regions(self) -> list[str]:
        """Names of the regions that can be measured."""
        return [name for name, region in self.regions.items() if region.visible]

    def to_json(self) -> dict[str, object]:
        """Everything but the masks and the landmark array."""
        return {
            "image_size": list(self.image_size),
            "landmarks": len(self.landmarks),
            "yaw": round(self.yaw, 3),
            "note": self.note,
            "skin_pixels": int(self.skin_mask.sum()),
            "regions": {name: region.to_json() for name, region in self.regions.items()},
        }


@dataclass(frozen=True)
class RegionMeasure:
    """Pigment measured in one visible region, relative to the person's own normal skin."""

    name: str
    pigmented_share: float  # share of the region's skin that is hyperpigmented, 0-1
    delta_L: float  # mean L* of normal skin minus mean L* of the pigmented pixels (>= 0: darker)
    delta_ITA: float  # same for the individual typology angle, degrees
    homogeneity: float  # 0 (speckled) .. 1 (confluent): how uniform the pigmented patches are
    area_item: int  # MASI A, 0-6
    darkness_item: int  # MASI D, 0-4
    homogeneity_item: int  # MASI H, 0-4

    def to_json(self) -> dict[str, object]:
        """All fields, floats rounded."""
        return {
            "name": self.name,
            "pigmented_share": round(self.pigmented_share, 4),
            "delta_L": round(self.delta_L, 2),
            "delta_ITA": round(self.delta_ITA, 2),
            "homogeneity": round(self.homogeneity, 3),
            "area": self.area_item,
            "darkness": self.darkness_item,
            "homogeneity_item": self.homogeneity_item,
        }


@dataclass(frozen=True)
class RegionMeasures:
    """Per-region measures plus the image-derived MASI / mMASI (regions not visible score 0)."""

    regions: dict[str, RegionMeasure]  # visible regions only
    masi: float
    mmasi: float
    pigment_mask: np.ndarray  # bool (h, w): hyperpigmented skin over the whole face
    skin_L: float  # median L* of the person's normal skin
    skin_ITA: float  # median ITA of the person's normal skin, degrees
    not_measured: dict[str, str] = field(default_factory=dict)  # region -> reason

    def to_json(self) -> dict[str, object]:
        """Everything but the pigment mask."""
        return {
            "masi": round(self.masi, 2),
            "mmasi": round(self.mmasi, 2),
            "skin_L": round(self.skin_L, 2),
            "skin_ITA": round(self.skin_ITA, 2),
            "pigmented_pixels": int(self.pigment_mask.sum()),
            "regions": {name: measure.to_json() for name, measure in self.regions.items()},
            "not_measured": dict(self.not_measured),
        }
