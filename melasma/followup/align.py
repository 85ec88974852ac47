"""Before / after: two photos of one patient brought into the same frame for side-by-side viewing.

With a face found in both (MediaPipe face mesh, `melasma.regions.landmarks`), the after photo is
mapped onto the before photo by a similarity transform (shift, turn, scale) estimated from the 468
landmark pairs with RANSAC and refined on its inliers (`cv2.estimateAffinePartial2D`, OpenCV's
defaults), and both are cropped to the before face (plus a margin). Without a face in either,
each photo is scaled and centre-cropped to the same square. Photos are first reduced to
`WORK_SIDE` on their longer side: this is for viewing, not for measuring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from PIL import Image, ImageOps

from melasma.regions.geometry import face_polygon
from melasma.regions.landmarks import detect_faces

WORK_SIDE = 1024
MARGIN = 0.12  # share of the face box added on each side of the crop
Method = Literal["landmarks", "scale and crop"]


@dataclass(frozen=True)
class AlignedPair:
    """The two photos, same size, and how they were aligned."""

    before: Image.Image
    after: Image.Image
    method: Method
    note: str = ""


def _reduce(photo: Image.Image) -> Image.Image:
    photo = photo.convert("RGB")
    photo.thumbnail((WORK_SIDE, WORK_SIDE))
    return photo


def _largest_face(rgb: np.ndarray) -> np.ndarray | None:
    faces = detect_faces(rgb)
    if not faces:
        return None
    spans = [float(np.ptp(face[:, 0]) * np.ptp(face[:, 1])) for face in faces]
    return faces[int(np.argmax(spans))][:, :2]


def _face_box(landmarks: np.ndarray, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A square around the face outline (forehead lifted), grown by MARGIN, inside the photo."""
    outline = face_polygon(landmarks)
    (x0, y0), (x1, y1) = outline.min(axis=0), outline.max(axis=0)
    side = max(x1 - x0, y1 - y0) * (1 + 2 * MARGIN)
    side = min(side, *size)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = round(min(max(cx - side / 2, 0), size[0] - side))
    top = round(min(max(cy - side / 2, 0), size[1] - side))
    return left, top, left + int(side), top + int(side)


def _scale_and_crop(before: Image.Image, after: Image.Image, size: int, note: str) -> AlignedPair:
    fit = (size, size)
    return AlignedPair(ImageOps.fit(before, fit), ImageOps.fit(after, fit), "scale and crop", note)


def align_pair(before: Image.Image, after: Image.Image, size: int = 512) -> AlignedPair:
    """`before` and `after` as two `size` x `size` photos in the same frame (see module docs)."""
    before, after = _reduce(before), _reduce(after)
    rgb_before, rgb_after = np.asarray(before), np.asarray(after)
    marks_before, marks_after = _largest_face(rgb_before), _largest_face(rgb_after)
    missing = [name for name, marks in (("before", marks_before), ("after", marks_after)) if marks is None]
    if marks_before is None or marks_after is None:
        return _scale_and_crop(before, after, size, f"no face found in the {' and '.join(missing)} photo")
    matrix, _ = cv2.estimateAffinePartial2D(marks_after.astype(np.float32), marks_before.astype(np.float32))
    if matrix is None:
        return _scale_and_crop(before, after, size, "the two faces could not be matched")
    warped = cv2.warpAffine(rgb_after, matrix, before.size, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    box = _face_box(marks_before, before.size)
    crop = (size, size)
    return AlignedPair(before.crop(box).resize(crop, Image.Resampling.LANCZOS),
                       Image.fromarray(warped).crop(box).resize(crop, Image.Resampling.LANCZOS), "landmarks")
