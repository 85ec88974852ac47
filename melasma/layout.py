"""The data folder's layout: the one place that names its databases, sub-folders and stored photo files.

`Settings` exposes these as properties (`settings.ratings_db`, `settings.runs_dir`, ...); code that only
has a data folder (the job queue, `melasma jobs`) uses `DataLayout(data_dir)` directly.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from melasma.errors import UserError

RATINGS_DB = "annotations.sqlite"
JOBS_DB = "jobs.sqlite"
#: SQLite's companion files of a database (write-ahead log, shared memory, rollback journal).
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")
#: A stored photo's id: the first hex digits of the SHA-256 of its decoded pixels (annotation.ingest).
ID_LENGTH = 16
_IMAGE_ID = re.compile(f"[0-9a-f]{{{ID_LENGTH}}}")


class ImageIdError(UserError):
    """A photo id that is not one the store gives (16 lower-case hex digits)."""


def absolute(path: str | os.PathLike[str]) -> Path:
    """`path` made absolute against the working folder now (`~` expanded, links kept): resolved once,
    at start-up, so that no later step reads a relative data folder against itself again."""
    return Path(os.path.abspath(Path(path).expanduser()))


def photo_path(photos_dir: str | Path, image_id: str) -> Path:
    """Where the stripped copy of `image_id` is stored; ImageIdError for a malformed id."""
    if not _IMAGE_ID.fullmatch(image_id):
        raise ImageIdError(f"malformed image id {image_id!r}")
    return Path(photos_dir) / f"{image_id}.jpg"


@dataclass(frozen=True)
class DataLayout:
    """Paths inside one data folder (`MELASMA_DATA_DIR`, default ./data); `root` is made absolute."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", absolute(self.root))

    @property
    def ratings_db(self) -> Path:
        """The rater store's SQLite file (unless MELASMA_DATABASE_URL names another database)."""
        return self.root / RATINGS_DB

    @property
    def jobs_db(self) -> Path:
        """The training queue."""
        return self.root / JOBS_DB

    @property
    def databases(self) -> tuple[Path, ...]:
        """Both SQLite databases with their journals: files the web server must never serve."""
        return tuple(Path(f"{db}{suffix}") for db in (self.ratings_db, self.jobs_db) for suffix in SQLITE_SUFFIXES)

    @property
    def photos_dir(self) -> Path:
        return self.root / "photos"

    @property
    def exports_dir(self) -> Path:
        return self.root / "exports"

    @property
    def demo_dir(self) -> Path:
        return self.root / "demo"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def synthetic_list(self) -> Path:
        """Ids of the stored photos that `synth` wrote (melasma.data.synthetic_marks), one a line."""
        return self.root / "synthetic_photos.txt"

    @property
    def cache_dir(self) -> Path:
        """Decoded training images (melasma.data.cache) and per-photo results."""
        return self.root / "cache"
