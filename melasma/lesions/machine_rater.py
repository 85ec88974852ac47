"""The image-derived MASI (read by the lesion model) as a non-human "rater" for the Agreement dashboard.

Each stored photo is analysed once (photos are content-addressed, so an id fixes the pixels) and the
result kept in a small JSON cache beside the photos. A photo without a usable face gets no machine
score, never a guess. The scores go to coordinators only: raters never see them.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from melasma.data.images import ImageLoadError, load_image
from melasma.layout import photo_path
from melasma.lesions.reading import analyse

# Bump when the region finder or the lesion reading changes what it reports: old scores are dropped.
# 2: the lesion model's reading replaced the colour rules.
MEASURE_VERSION = 2
_LOCK = threading.Lock()


@dataclass(frozen=True)
class MachineScore:
    """The image-derived MASI of one stored photo, or why there is none."""

    image_id: str
    masi: float | None
    error: str = ""


def _read_cache(path: Path) -> dict[str, MachineScore]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != MEASURE_VERSION:
        return {}
    scores = data.get("scores", {})
    return {key: MachineScore(key, value.get("masi"), value.get("error", ""))
            for key, value in scores.items() if isinstance(value, dict)}


def _write_cache(path: Path, scores: dict[str, MachineScore]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"version": MEASURE_VERSION,
               "scores": {key: {"masi": s.masi, "error": s.error} for key, s in sorted(scores.items())}}
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(payload))
    os.replace(temporary, path)


def score_photo(photos_dir: str | Path, image_id: str) -> MachineScore:
    """Analyse one stored photo: its image-derived MASI, or the reason there is none."""
    try:
        photo = load_image(photo_path(photos_dir, image_id))
    except (OSError, ImageLoadError) as error:
        return MachineScore(image_id, None, f"photo unreadable: {error}")
    report = analyse(photo, labels=False)
    if report.measures is None:
        return MachineScore(image_id, None, report.error)
    return MachineScore(image_id, round(float(report.measures.masi), 2))


def machine_scores(image_ids: Iterable[str], photos_dir: str | Path,
                   cache_path: str | Path) -> dict[str, MachineScore]:
    """Machine scores for `image_ids`, analysing only photos not in the cache yet."""
    cache_path = Path(cache_path)
    with _LOCK:
        cached = _read_cache(cache_path)
        wanted = list(dict.fromkeys(image_ids))
        missing = [image_id for image_id in wanted if image_id not in cached]
        for image_id in missing:
            cached[image_id] = score_photo(photos_dir, image_id)
        if missing:
            _write_cache(cache_path, cached)
    return {image_id: cached[image_id] for image_id in wanted}
