"""The face landmark model: MediaPipe's face mesh (468 points), bundled in the mediapipe wheel.

`face_landmark.tflite` and the short-range face detector ship inside mediapipe 0.10.14, so nothing
is downloaded at run time. The model is created once per process, lazily, and used under a lock
(one graph; MediaPipe's `process` is not re-entrant).
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

import numpy as np

#: Photos where the face fills the frame (clinical close-ups) defeat the face detector; shrinking the
#: face by padding the photo with its own edge pixels finds some of them. Each entry: pad per side as
#: a share of the longer side, tried in order after the unpadded photo.
RETRY_PADS: tuple[float, ...] = (0.3, 0.8)
MAX_FACES = 4
MIN_DETECTION_CONFIDENCE = 0.3

_lock = threading.Lock()
_mesh: Any = None


def _model() -> Any:
    global _mesh
    if _mesh is None:
        from mediapipe.python.solutions import face_mesh

        _mesh = face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=MAX_FACES,
            refine_landmarks=False,
            min_detection_confidence=MIN_DETECTION_CONFIDENCE,
        )
    return _mesh


def _run(rgb: np.ndarray) -> list[np.ndarray]:
    """Landmarks (468, 3) per face: x, y in pixels of `rgb`, z in the same scale as x."""
    height, width = rgb.shape[:2]
    with warnings.catch_warnings():  # mediapipe 0.10.14 calls a protobuf API deprecated in 4.25
        warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype", category=UserWarning)
        result = _model().process(rgb)
    faces = result.multi_face_landmarks or []
    return [
        np.array([(p.x * width, p.y * height, p.z * width) for p in face.landmark], dtype=np.float32)
        for face in faces
    ]


def detect_faces(rgb: np.ndarray) -> list[np.ndarray]:
    """Landmarks of every face in an RGB uint8 photo (h, w, 3), in its pixel coordinates.

    Tries the photo as it is, then padded (see `RETRY_PADS`); returns [] when no face is found.
    """
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    with _lock:
        faces = _run(rgb)
        for share in RETRY_PADS:
            if faces:
                break
            pad = round(max(rgb.shape[:2]) * share)
            padded = np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
            faces = [face - np.array([pad, pad, 0], dtype=np.float32) for face in _run(padded)]
    return faces
