"""Photos with lesion outlines, as the lesion model trains and is measured on them.

A folder in the Roboflow layout: `melasma/*.jpg` with hand-drawn lesion polygons in
`_annotations.coco.json`, and `non-melasma/*.jpg` (no lesion anywhere). Each photo's `skin` is where
a lesion can be and where the loss and every measure look: the face's skin found by
`melasma.regions.find_regions`, or, when no face is found (close-ups, profiles), the skin-coloured
pixels of the whole photo.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from melasma.data.images import load_image
from melasma.data.manifest import IMAGE_EXTENSIONS
from melasma.data.masks import coco_masks
from melasma.data.tone import skin_mask
from melasma.errors import UserError
from melasma.regions.find import find_regions
from melasma.regions.tone import skin_ita
from melasma.regions.types import FaceNotFound, FaceRegions

COCO_FILE = "_annotations.coco.json"
FOLDERS = (("melasma", True), ("non-melasma", False))


class LesionDataError(UserError):
    """A folder that is not in the layout the lesion model trains on."""


@dataclass(frozen=True)
class LesionPhoto:
    """One photo, its lesion outline (all False for a photo without melasma) and its skin."""

    name: str
    rgb: np.ndarray  # uint8 (h, w, 3)
    lesion: np.ndarray  # bool (h, w)
    skin: np.ndarray  # bool (h, w): face skin, or skin-coloured pixels when no face was found
    melasma: bool
    face: bool
    ita: float  # median skin ITA, the tone baseline (melasma.regions.tone)


def photo_skin(rgb: np.ndarray) -> tuple[np.ndarray, FaceRegions | None]:
    """(skin mask, regions): the face's skin when a face is found, else skin-coloured pixels."""
    try:
        regions = find_regions(rgb)
    except FaceNotFound:
        return skin_mask(rgb), None
    return regions.skin_mask, regions


def load_photos(folder: str | Path, *, healthy: bool = True) -> list[LesionPhoto]:
    """Every photo of a Roboflow-layout folder, melasma first (sorted by name); `healthy=False`
    leaves out `non-melasma/`. Raises LesionDataError when the layout or the outlines are missing."""
    root = Path(folder).expanduser()
    if not (root / "melasma").is_dir() or not (root / COCO_FILE).is_file():
        raise LesionDataError(f"{root}: expected melasma/ (and non-melasma/) photos with {COCO_FILE} beside them")
    outlines = coco_masks(root / COCO_FILE)
    photos = []
    for sub, melasma in FOLDERS:
        if (sub == "non-melasma" and not healthy) or not (root / sub).is_dir():
            continue
        for path in sorted((root / sub).iterdir()):
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            rgb = np.asarray(load_image(path))
            lesion = outlines.get(path.name) if melasma else None
            if melasma and lesion is None:
                continue  # a melasma photo without an outline cannot teach where the lesion is
            if lesion is not None and lesion.shape != rgb.shape[:2]:
                raise LesionDataError(f"{path.name}: outline {lesion.shape[::-1]} does not match the photo "
                                      f"{rgb.shape[1::-1]}")
            skin, regions = photo_skin(rgb)
            photos.append(LesionPhoto(
                name=path.name, rgb=rgb, lesion=lesion if lesion is not None else np.zeros(rgb.shape[:2], bool),
                skin=skin, melasma=melasma, face=regions is not None, ita=skin_ita(rgb, regions)))
    if not any(photo.melasma for photo in photos):
        raise LesionDataError(f"{root}: no melasma photo with a lesion outline in {COCO_FILE}")
    return photos
