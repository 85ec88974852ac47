"""Add photos (files or zip archives) to the store: content-hash ids, duplicates, metadata stripped.

Each photo is decoded with `melasma.data.images.load_image` (pixel cap, EXIF orientation applied)
and stored as a fresh JPEG without any metadata at `photos/<id>.jpg`, where the id is the first 16
hex digits of the SHA-256 of the decoded pixels: the same picture with other EXIF data, or saved
under another name, is a duplicate. Zip member names are never used as paths.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator

import numpy as np

from annotation.store import AnnotationError, ImageRecord, RatingStore, utc_now
from melasma.data.images import MAX_UPLOAD_BYTES, ImageLoadError, check_upload_size, load_image, to_jpeg_bytes

#: Most photos accepted from one zip archive.
MAX_ZIP_MEMBERS = 2000
#: Largest total uncompressed size read from one zip archive, in bytes.
MAX_ZIP_BYTES = 2 * 1024**3
ID_LENGTH = 16
_PATIENT_ID = re.compile(r"^[^\x00-\x1f\x7f]{1,64}$")


@dataclass
class IngestSummary:
    """What one ingest call did: new ids, duplicate ids and the files it refused (with why)."""

    added: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """A JSON-able summary with counts."""
        return {
            "added": len(self.added), "duplicates": len(self.duplicates), "errors": self.errors,
            "added_ids": self.added, "duplicate_ids": self.duplicates,
        }


def photo_path(photos_dir: str | Path, image_id: str) -> Path:
    """Where the stripped copy of `image_id` is stored."""
    if not re.fullmatch(r"[0-9a-f]{%d}" % ID_LENGTH, image_id):
        raise AnnotationError(f"malformed image id {image_id!r}")
    return Path(photos_dir) / f"{image_id}.jpg"


def clean_patient_id(value: str | None) -> str | None:
    """Strip a patient id; None or blank means none. Raises AnnotationError when malformed."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not _PATIENT_ID.match(value):
        raise AnnotationError("patient id must be 1-64 printable characters")
    return value


def clean_visit_date(value: str | date | None) -> str | None:
    """A visit date as ISO `YYYY-MM-DD`; None or blank means none. Raises AnnotationError."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, date):
        return value.isoformat()
    try:
        return date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        raise AnnotationError(f"visit date must look like YYYY-MM-DD, got {value!r}") from None


def _member_parts(member: zipfile.ZipInfo) -> tuple[str, ...]:
    return PurePosixPath(member.filename.replace("\\", "/")).parts


def _is_hidden(member: zipfile.ZipInfo) -> bool:
    """Nameless members, dot files and macOS resource forks are skipped silently."""
    parts = _member_parts(member)
    return not parts or any(
        (part.startswith(".") and part != "..") or part == "__MACOSX" for part in parts
    )


def _is_unsafe(member: zipfile.ZipInfo) -> bool:
    """Members that climb out of the archive (`..`) or are absolute are refused and reported."""
    name = member.filename.replace("\\", "/")
    return name.startswith("/") or ".." in PurePosixPath(name).parts


def _zip_members(path: Path, max_bytes: int, errors: list[str]) -> Iterator[tuple[str, bytes]]:
    """(display name, bytes) of the photos in a zip, within the member count and size caps.

    Header sizes are not trusted: at most the remaining budget is decompressed from any member.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise AnnotationError(f"{path.name}: not a readable zip archive ({error})") from None
    with archive:
        members = []
        for member in archive.infolist():
            if member.is_dir() or _is_hidden(member):
                continue
            if _is_unsafe(member):
                errors.append(f"{path.name}: {member.filename!r} has an unsafe path, skipped")
            else:
                members.append(member)
        if len(members) > MAX_ZIP_MEMBERS:
            raise AnnotationError(
                f"{path.name}: {len(members)} files, more than the {MAX_ZIP_MEMBERS} allowed in one zip"
            )
        budget = MAX_ZIP_BYTES
        for member in members:
            name = f"{path.name}:{_member_parts(member)[-1]}"
            limit = min(max_bytes, budget)
            try:
                with archive.open(member) as stream:
                    data = stream.read(limit + 1)
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError) as error:
                errors.append(f"{name}: cannot extract ({error})")
                continue
            if len(data) > budget:
                errors.append(
                    f"{path.name}: stopped at {name}, the archive unpacks to more than "
                    f"{MAX_ZIP_BYTES / 1e6:,.0f} MB"
                )
                return
            if len(data) > limit:
                errors.append(f"{name}: larger than the {max_bytes / 1e6:.0f} MB limit")
                continue
            budget -= len(data)
            yield name, data


def _sources(
    paths: Iterable[str | Path], max_bytes: int, errors: list[str]
) -> Iterator[tuple[str, bytes]]:
    """(display name, bytes) of every photo in `paths`; refused files go to `errors`."""
    for raw in paths:
        path = Path(raw)
        try:
            if zipfile.is_zipfile(path):
                yield from _zip_members(path, max_bytes, errors)
            else:
                check_upload_size(path.stat().st_size, path.name, max_bytes)
                yield path.name, path.read_bytes()
        except (ValueError, OSError) as error:
            errors.append(str(error).splitlines()[0] if str(error) else f"{path.name}: unreadable")


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ingest(
    store: RatingStore,
    photos_dir: str | Path,
    paths: Iterable[str | Path],
    *,
    patient_id: str | None = None,
    visit_date: str | date | None = None,
    max_bytes: int = MAX_UPLOAD_BYTES,
) -> IngestSummary:
    """Add photos and zips of photos to `store`; bad files are listed in `errors`, not raised.

    Patient id and visit date (optional) apply to every photo of the call. A malformed patient id
    or date raises AnnotationError before anything is stored.
    """
    patient = clean_patient_id(patient_id)
    visit = clean_visit_date(visit_date)
    summary = IngestSummary()
    for name, data in _sources(paths, max_bytes, summary.errors):
        try:
            image = load_image(data, name=name)
        except ImageLoadError as error:
            summary.errors.append(str(error))
            continue
        pixels = np.asarray(image, dtype=np.uint8)
        digest = hashlib.sha256(f"{image.width}x{image.height}:".encode() + pixels.tobytes())
        image_id = digest.hexdigest()[:ID_LENGTH]
        target = photo_path(photos_dir, image_id)
        if not target.exists():
            _write_atomic(target, to_jpeg_bytes(image))
        record = ImageRecord(
            id=image_id, filename=Path(name).name[:255], width=image.width, height=image.height,
            patient_id=patient, visit_date=visit, added_at=utc_now(),
        )
        (summary.added if store.add_image(record) else summary.duplicates).append(image_id)
    return summary
