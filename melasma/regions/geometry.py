"""Region outlines from MediaPipe face-mesh landmarks, by the MASI definitions.

Indices are MediaPipe's canonical 468-point mesh. "Right" and "left" are the PATIENT's: the
patient's right cheek lies on the image's left in an unmirrored frontal photo (mesh point 234).

- forehead: from the upper edge of the brows up to the hairline; the mesh stops short of the
  hairline, so its top edge is pushed up by `FOREHEAD_LIFT` of the glabella-to-mesh-top distance
  and the skin mask then cuts the hair off;
- malar (cheek): below the lower eyelid's infraorbital line, from the nasolabial fold (nose ala to
  mouth corner) out to the face outline at the ear, down to the jaw at the mouth-corner level;
- chin: below the lower lip, down to the chin outline, between the lines under the mouth corners.
"""

from __future__ import annotations

import cv2
import numpy as np

RIGHT_MALAR = (234, 143, 111, 117, 118, 119, 120, 121, 47, 126, 209, 129, 203, 206, 216, 212, 214, 172,
               58, 132, 93)
LEFT_MALAR = (454, 372, 340, 346, 347, 348, 349, 350, 277, 355, 429, 358, 423, 426, 436, 432, 434, 397,
              288, 361, 323)
CHIN = (202, 204, 106, 182, 83, 18, 313, 406, 335, 424, 422, 430, 394, 378, 400, 377, 152, 148, 176, 149,
        169, 210)
#: forehead top edge (patient's right temple -> left temple), then the brows' upper edges back
FOREHEAD_TOP = (21, 54, 103, 67, 109, 10, 338, 297, 332, 284, 251)
FOREHEAD_BOTTOM = (300, 293, 334, 296, 336, 9, 107, 66, 105, 63, 70)
FOREHEAD_LIFT = 0.6

FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
             148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)

#: Never skin for MASI: eyes (with lids), brows, lips, nostrils.
EXCLUDED = {
    "right_eye": (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246),
    "left_eye": (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466),
    "right_brow": (70, 63, 105, 66, 107, 55, 65, 52, 53, 46),
    "left_brow": (300, 293, 334, 296, 336, 285, 295, 282, 283, 276),
    "lips": (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185),
    "nostrils": (129, 98, 97, 2, 326, 327, 358, 294, 278, 275, 4, 45, 48, 64),
}
#: Exclusions grow by this share of the inter-ocular distance (lashes, lip line, brow hairs).
EXCLUSION_MARGIN = 0.06

NOSE_TIP, RIGHT_SIDE, LEFT_SIDE, RIGHT_EYE_OUTER, LEFT_EYE_OUTER, GLABELLA = 1, 234, 454, 33, 263, 9


def _lifted_top(landmarks: np.ndarray) -> np.ndarray:
    lift = FOREHEAD_LIFT * (landmarks[10] - landmarks[GLABELLA])
    return landmarks[list(FOREHEAD_TOP)] + lift


def region_polygons(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """Outline (k, 2) of each MASI region, keyed by `melasma.masi.REGIONS` names."""
    xy = landmarks[:, :2]
    forehead = np.concatenate([_lifted_top(xy), xy[list(FOREHEAD_BOTTOM)]])
    return {
        "forehead": forehead,
        "right_malar": xy[list(RIGHT_MALAR)],
        "left_malar": xy[list(LEFT_MALAR)],
        "chin": xy[list(CHIN)],
    }


def face_polygon(landmarks: np.ndarray) -> np.ndarray:
    """The face outline with the forehead lifted to the hairline."""
    xy = landmarks[:, :2].copy()
    xy[list(FOREHEAD_TOP)] = _lifted_top(xy)
    return xy[list(FACE_OVAL)]


def interocular(landmarks: np.ndarray) -> float:
    """Distance between the outer eye corners, the face's scale in pixels."""
    return float(np.linalg.norm(landmarks[RIGHT_EYE_OUTER, :2] - landmarks[LEFT_EYE_OUTER, :2]))


def yaw(landmarks: np.ndarray) -> float:
    """Head turn from the nose tip's position between the face sides along the eye axis:
    0 frontal, -1 the patient's right side turned fully away, +1 the left side."""
    xy = landmarks[:, :2]
    axis = xy[LEFT_EYE_OUTER] - xy[RIGHT_EYE_OUTER]
    axis = axis / max(float(np.linalg.norm(axis)), 1e-6)
    right = max(float((xy[NOSE_TIP] - xy[RIGHT_SIDE]) @ axis), 0.0)
    left = max(float((xy[LEFT_SIDE] - xy[NOSE_TIP]) @ axis), 0.0)
    return (right - left) / max(right + left, 1e-6)


def fill(polygon: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Boolean mask (h, w) of a polygon, for an image of `size` (w, h); parts outside are clipped."""
    width, height = size
    mask = np.zeros((height, width), dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
    return mask.astype(bool)


def polygon_area(polygon: np.ndarray) -> float:
    """Area of a polygon in square pixels (shoelace), counting parts outside the image."""
    x, y = polygon[:, 0], polygon[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def exclusion_mask(landmarks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Eyes, brows, lips and nostrils (grown by `EXCLUSION_MARGIN`), as one boolean mask."""
    xy = landmarks[:, :2]
    mask = np.zeros((size[1], size[0]), dtype=np.uint8)
    for indices in EXCLUDED.values():
        hull = cv2.convexHull(np.round(xy[list(indices)]).astype(np.int32))
        cv2.fillPoly(mask, [hull], 1)
    grow = max(round(EXCLUSION_MARGIN * interocular(landmarks)), 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    return cv2.dilate(mask, kernel).astype(bool)
