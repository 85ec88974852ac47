"""Lesion masks: the synthetic set's `masks/*.png` and COCO polygon annotations (e.g. Roboflow).

COCO annotations without polygons (an empty `segmentation`, which carries only a bounding box)
are left out: a box is not a lesion outline. An image with no polygon gets no mask.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from melasma.errors import UserError

COCO_NAMES = ("_annotations.coco.json",)


class MaskError(UserError):
    """A mask file or annotation file cannot be read."""


def _synthetic_mask_path(image_path: Path) -> Path:
    return image_path.parent.parent / "masks" / f"{image_path.stem}.png"


def synthetic_mask(path: str | os.PathLike) -> np.ndarray:
    """The bool lesion mask of a synthetic image (`<set>/masks/<stem>.png` beside `images/`)."""
    mask_path = _synthetic_mask_path(Path(path))
    if not mask_path.is_file():
        raise MaskError(f"{path}: no mask at {mask_path}")
    with Image.open(mask_path, formats=["PNG"]) as mask:  # masks are PNGs; nothing else is opened
        return np.asarray(mask.convert("L")) >= 128


def _rasterise(width: int, height: int, polygons: list[list[float]]) -> np.ndarray:
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in polygons:
        points = list(zip(polygon[0::2], polygon[1::2]))
        if len(points) >= 3:
            draw.polygon(points, fill=255, outline=255)
    return np.asarray(canvas) > 0


def coco_masks(coco_json_path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Rasterise the polygons of a COCO file: {file_name: bool (height, width) union mask}."""
    path = Path(coco_json_path)
    try:
        data = json.loads(path.read_text())
        images = {im["id"]: im for im in data["images"]}
        polygons: dict[int, list[list[float]]] = {}
        for ann in data["annotations"]:
            segmentation = ann.get("segmentation") or []
            if isinstance(segmentation, dict):
                raise MaskError(f"{path}: RLE segmentation (annotation {ann.get('id')}) is not supported")
            polygons.setdefault(ann["image_id"], []).extend(segmentation)
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise MaskError(f"{path}: not a readable COCO annotation file ({error})") from None
    return {
        images[image_id]["file_name"]: _rasterise(
            images[image_id]["width"], images[image_id]["height"], polys
        )
        for image_id, polys in polygons.items()
        if polys and image_id in images
    }


@lru_cache(maxsize=8)
def _coco_cached(path: str, mtime: float) -> dict[str, np.ndarray]:
    return coco_masks(path)


def mask_for_image(image_path: str | os.PathLike) -> np.ndarray | None:
    """The lesion mask of an image, synthetic or COCO-annotated (looked up two folders up), or None."""
    image = Path(image_path)
    synthetic = _synthetic_mask_path(image)
    if synthetic.is_file():
        return synthetic_mask(image)
    for folder in (image.parent, image.parent.parent):
        for name in COCO_NAMES:
            coco = folder / name
            if coco.is_file():
                mask = _coco_cached(str(coco), coco.stat().st_mtime).get(image.name)
                if mask is not None:
                    return mask.copy()
    return None
