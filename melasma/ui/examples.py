"""The Predict tab's example photos: real photos from a folder you name (first), then synthetic ones.

Real photos cannot ship in this repository (the Roboflow sample is CC BY 4.0 and kept outside it),
so `--examples DIR` / MELASMA_EXAMPLES_DIR points the tab at a folder of them. Its credit is read
from an `ATTRIBUTION.md` or `CREDITS.md` in the folder or its parent and shown with the photos, as
CC BY requires. The real set keeps only photos in which the face finder sees a face, so the first
example shows the four MASI regions and their table (close-ups of one cheek are skipped).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from pathlib import Path

import numpy as np

from melasma.data.images import ImageLoadError, load_image
from melasma.data.manifest import IMAGE_EXTENSIONS
from melasma.regions.landmarks import detect_faces

CREDIT_FILES = ("ATTRIBUTION.md", "CREDITS.md")
#: Photos offered per set.
EXAMPLES = 4
#: Photos of a real folder looked at (name order) to find EXAMPLES with a face; bounds start-up time.
CANDIDATES = 16
#: Side (pixels) the face finder sees a candidate at.
FACE_CHECK_SIDE = 512
_LICENCE = re.compile(r"\bCC[ -]BY(?:[ -](?:SA|NC|ND))*(?:\s+\d(?:\.\d)?)?", re.IGNORECASE)


@dataclass(frozen=True)
class ExampleSet:
    """Photos for one `gr.Examples` block and the label above them (with the credit, if any)."""

    label: str
    photos: tuple[Path, ...]


def _photos(folder: Path, limit: int) -> tuple[Path, ...]:
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                   key=lambda p: p.name.lower())
    return tuple(files[:limit])


def credit(folder: Path) -> str:
    """"<title>, <licence>" from the first credit file in `folder` or its parent; "" when none."""
    for place in (folder, folder.parent):
        for name in CREDIT_FILES:
            path = place / name
            if path.is_file():
                text = path.read_text(encoding="utf-8", errors="replace")
                title = next((line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("# ")), "")
                licence = _LICENCE.search(text)
                return ", ".join(part for part in (title, licence.group(0) if licence else "") if part)
    return ""


def shows_a_face(path: Path) -> bool:
    """Whether the face finder of `melasma.regions` sees a face in the photo at `path`."""
    try:
        photo = load_image(path, draft=(FACE_CHECK_SIDE, FACE_CHECK_SIDE))
    except ImageLoadError:
        return False
    photo.thumbnail((FACE_CHECK_SIDE, FACE_CHECK_SIDE))
    return bool(detect_faces(np.asarray(photo.convert("RGB"))))


@lru_cache(maxsize=8)
def real_examples(
    folder: Path | None, limit: int = EXAMPLES, keep: Callable[[Path], bool] | None = shows_a_face,
) -> ExampleSet | None:
    """Up to `limit` photos of `folder` that `keep` accepts (default: a face is found), in name order
    among its first CANDIDATES photos, labelled with the folder's credit; None without any. Cached:
    the tab and the server's allowed paths get the same files."""
    if folder is None:
        return None
    candidates = _photos(folder, CANDIDATES)
    photos = tuple(islice((p for p in candidates if keep is None or keep(p)), limit))
    if not photos:
        return None
    source = credit(folder)
    return ExampleSet(f"Real photos ({source})" if source else "Real photos (no credit file beside them)", photos)


def synthetic_examples(demo_dir: Path, limit: int = EXAMPLES) -> ExampleSet | None:
    """The first photos of the synthetic demo set, or None before it exists."""
    images = demo_dir / "images"
    if not images.is_dir():
        return None
    photos = _photos(images, limit)
    return ExampleSet("Synthetic examples", photos) if photos else None
