"""What the machine says about a patient's photos, for the timeline beside the raters: a checkpoint's
predicted severity (and MASI, for a regression head), and the image-derived MASI of the face-region
analysis (`melasma.regions`), per stored photo."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from PIL import Image

from melasma.followup.visits import ModelScore
from melasma.inference import Predictor
from melasma.layout import photo_path
from melasma.lesions import analyse


def checkpoint_scores(predictor: Predictor, photos_dir: str | Path, image_ids: Iterable[str]) -> dict[str, ModelScore]:
    """Photo id -> the checkpoint's severity and (regression head) MASI."""
    scores = {}
    for image_id in image_ids:
        prediction = predictor.predict(photo_path(photos_dir, image_id))
        scores[image_id] = ModelScore(prediction.severity, prediction.masi)
    return scores


def image_derived_masi(photos_dir: str | Path, image_ids: Iterable[str]) -> dict[str, float]:
    """Photo id -> the region analysis's MASI; photos without a usable face are left out."""
    values = {}
    for image_id in image_ids:
        with Image.open(photo_path(photos_dir, image_id)) as photo:
            report = analyse(photo.convert("RGB"), labels=False)
        if report.measures is not None:
            values[image_id] = report.measures.masi
    return values
