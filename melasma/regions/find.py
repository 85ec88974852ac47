"""`find_regions`: the four MASI regions of the (largest) face in a photo, or `FaceNotFound`."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from melasma.masi import REGIONS
from melasma.regions import geometry
from melasma.regions.color import is_grayscale, to_lab
from melasma.regions.landmarks import detect_faces
from melasma.regions.skin import fit_skin
from melasma.regions.types import FaceNotFound, FaceRegions, Region

MIN_SIDE = 32  # pixels; smaller photos are refused
MIN_FACE_SHARE = 0.02  # the face outline must cover this share of the photo
MIN_INTEROCULAR = 16  # pixels between the outer eye corners, in the photo: smaller faces are refused
#: a region is not visible when less than this share of its outline lies inside the photo...
MIN_IN_FRAME = 0.6
#: ... or when less than this share of its in-frame, non-excluded area is skin ...
MIN_SKIN_SHARE = 0.35
#: ... or when the head is turned so far that the cheek keeps under this share of the face width
MIN_SIDE_SHARE = 0.18
MIN_PIXELS = 64
#: landmarks and masks are computed on a copy at most this many pixels on the long side, then the
#: masks are scaled back to the photo (the face mesh itself reads 192 px; pigment is smoothed anyway)
ANALYSIS_SIDE = 512


def as_rgb(image: Image.Image | np.ndarray) -> np.ndarray:
    """An RGB uint8 array (h, w, 3) from a PIL image or an array (gray, RGB, RGBA; uint8 or float
    0-1); raises FaceNotFound for an empty or unusable array."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or array.size == 0:
        raise FaceNotFound(f"not a photo: expected (h, w) or (h, w, 3) pixels, got shape {array.shape}")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    array = array[..., :3]
    if array.dtype != np.uint8:
        values = array.astype(np.float32)
        if not np.isfinite(values).any():
            raise FaceNotFound("not a photo: no finite pixel values")
        if np.issubdtype(array.dtype, np.integer):
            scale = 255.0 / np.iinfo(array.dtype).max if values.max() > 255 else 1.0
        else:
            scale = 255.0 if float(np.nanmax(values)) <= 1.0 else 1.0
        array = np.clip(np.nan_to_num(values * scale), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array)


def analysis_size(size: tuple[int, int]) -> tuple[int, int]:
    """The (w, h) the regions are computed at for a photo of `size` (w, h)."""
    scale = min(1.0, ANALYSIS_SIDE / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A bool mask resized (nearest) to `size` (w, h)."""
    if mask.shape[::-1] == tuple(size):
        return mask
    return cv2.resize(mask.view(np.uint8), size, interpolation=cv2.INTER_NEAREST).view(bool)


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An RGB array resized (area averaging) to `size` (w, h)."""
    if rgb.shape[1::-1] == tuple(size):
        return rgb
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _largest(faces: list[np.ndarray]) -> tuple[np.ndarray, str]:
    areas = [geometry.polygon_area(geometry.face_polygon(face)) for face in faces]
    note = f"{len(faces)} faces, used the largest" if len(faces) > 1 else ""
    return faces[int(np.argmax(areas))], note


def _hidden_reason(name: str, side_share: dict[str, float]) -> str:
    if side_share.get(name, 1.0) < MIN_SIDE_SHARE:
        side = name.split("_")[0]
        return f"turned away: the patient's {side} cheek faces away from the camera"
    return ""


def find_regions(image: Image.Image | np.ndarray) -> FaceRegions:
    """Landmarks, region outlines and skin masks of the largest face in `image`.

    Raises FaceNotFound (a UserError with a plain message) when the photo is too small or shows no
    face. Regions out of frame, turned away or covered are returned with `visible=False` and a reason.
    """
    rgb = as_rgb(image)
    height, width = rgb.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise FaceNotFound(f"photo too small ({width}x{height} px): need at least {MIN_SIDE} px a side")
    full = (width, height)
    size = analysis_size(full)
    small = resize_rgb(rgb, size)
    faces = detect_faces(small)
    if not faces:
        raise FaceNotFound("no face found in the photo (a frontal or three-quarter view of a face is needed)")
    landmarks, note = _largest(faces)
    outline = geometry.face_polygon(landmarks)
    if geometry.polygon_area(outline) < MIN_FACE_SHARE * size[0] * size[1]:
        raise FaceNotFound("the face is too small in the photo to measure regions")
    eyes = geometry.interocular(landmarks) * width / size[0]
    if eyes < MIN_INTEROCULAR:
        raise FaceNotFound(
            f"the face is too small to measure regions: eyes {eyes:.0f} px apart, need {MIN_INTEROCULAR}"
        )

    colour = not is_grayscale(small)
    if not colour:
        note = "; ".join(filter(None, [note, "grayscale photo: skin found by lightness only"]))
    lab = to_lab(small)
    excluded = geometry.exclusion_mask(landmarks, size)
    face = geometry.fill(outline, size)
    reference = face & ~excluded
    if not reference.any():
        raise FaceNotFound("the face lies outside the photo")
    skin_mask = fit_skin(lab, reference, colour).mask(lab) & reference

    turn = geometry.yaw(landmarks)
    side_share = {"right_malar": (1 + turn) / 2, "left_malar": (1 - turn) / 2}
    scale = width / size[0]
    regions: dict[str, Region] = {}
    for name, polygon in geometry.region_polygons(landmarks).items():
        inside = geometry.fill(polygon, size)
        mask = inside & skin_mask
        in_frame = inside.sum() / max(geometry.polygon_area(polygon), 1.0)
        usable = (inside & ~excluded).sum()
        reason = _hidden_reason(name, side_share)
        if not reason and in_frame < MIN_IN_FRAME:
            reason = f"out of frame: only {in_frame:.0%} of the region is inside the photo"
        if not reason and mask.sum() < max(MIN_SKIN_SHARE * usable, MIN_PIXELS * (size[0] / width) ** 2):
            reason = (
                f"covered: only {mask.sum() / max(usable, 1):.0%} of the region looks like skin "
                "(hair, a privacy bar, shadow or an object)"
            )
        regions[name] = Region(
            name=name, mask=resize_mask(mask, full), polygon=polygon * scale, visible=not reason, reason=reason
        )
    ordered = {name: regions[name] for name in REGIONS}
    return FaceRegions(
        image_size=full,
        landmarks=landmarks[:, :2] * scale,
        regions=ordered,
        skin_mask=resize_mask(skin_mask, full),
        note=note,
        yaw=turn,
    )
