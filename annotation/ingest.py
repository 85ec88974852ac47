"""Add photos (files or zip archives) to the store: content-hash ids, duplicates, metadata stripped.

Each photo is decoded with `melasma.data.images.load_image` (pixel cap, EXIF orientation applied)
and stored as a fresh JPEG without any metadata at `photos/<id>.jpg`, where the id is the first 16
hex digits of the SHA-256 of the decoded pixels: the same picture with other EXIF data, or saved
under another name, is a duplicate. Zip member names are never used as paths.

A file is a zip only when it starts with a zip's magic bytes: a JPEG with a zip appended is one
JPEG (and the summary says so). Before any pixel is decoded, every image's size is read from its
header: one image over `max_pixels`, or the images past `max_batch_pixels` for the whole call, are
refused with the reason. The result is an `IngestSummary` of one `FileOutcome` per file.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np

from annotation.store import AnnotationError, ImageRecord, RatingStore, utc_now
from melasma.data.images import (
    MAX_PIXELS,
    MAX_UPLOAD_BYTES,
    ImageLoadError,
    check_upload_size,
    decode_image,
    read_header,
    to_jpeg_bytes,
)
from melasma.errors import UserError
from melasma.layout import ID_LENGTH, photo_path

#: Most photos accepted from one zip archive.
MAX_ZIP_MEMBERS = 2000
#: Largest total uncompressed size read from one zip archive, in bytes.
MAX_ZIP_BYTES = 2 * 1024**3
#: Most pixels (width x height, summed from the headers) decoded in one ingest call.
MAX_BATCH_PIXELS = 200_000_000
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_PATIENT_ID = re.compile(r"^[^\x00-\x1f\x7f]{1,64}$")


Outcome = Literal["added", "duplicate", "refused"]


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one file (or zip member): added, duplicate or refused, and why."""

    file: str
    outcome: Outcome
    reason: str = ""
    photo_id: str | None = None

    def line(self) -> str:
        """One line for people: `file: outcome photo_id (reason)`."""
        text = f"{self.file}: {self.outcome}"
        if self.photo_id:
            text += f" {self.photo_id}"
        return f"{text} ({self.reason})" if self.reason else text


@dataclass
class IngestSummary:
    """One `FileOutcome` per file of an ingest call, in the order the files were read."""

    files: list[FileOutcome] = field(default_factory=list)

    @property
    def added(self) -> list[str]:
        return [f.photo_id for f in self.files if f.outcome == "added" and f.photo_id]

    @property
    def duplicates(self) -> list[str]:
        return [f.photo_id for f in self.files if f.outcome == "duplicate" and f.photo_id]

    @property
    def errors(self) -> list[str]:
        """`file: reason` of every refused file."""
        return [f"{f.file}: {f.reason}" for f in self.files if f.outcome == "refused"]

    def refuse(self, file: str, reason: str) -> None:
        """Record a refusal; a reason that starts with the file's name is not repeated."""
        prefix = f"{file}: "
        self.files.append(FileOutcome(file, "refused", reason.removeprefix(prefix)))

    def as_dict(self) -> dict[str, object]:
        """A JSON-able summary with counts and the per-file outcomes."""
        return {
            "added": len(self.added), "duplicates": len(self.duplicates), "errors": self.errors,
            "added_ids": self.added, "duplicate_ids": self.duplicates,
            "files": [
                {"file": f.file, "outcome": f.outcome, "reason": f.reason, "photo_id": f.photo_id}
                for f in self.files
            ],
        }


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


def _zip_members(path: Path, max_bytes: int, summary: IngestSummary) -> Iterator[tuple[str, bytes]]:
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
                summary.refuse(path.name, f"{member.filename!r} has an unsafe path, skipped")
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
                summary.refuse(name, f"cannot extract ({error})")
                continue
            if len(data) > budget:
                summary.refuse(
                    path.name,
                    f"stopped at {name}, the archive unpacks to more than {MAX_ZIP_BYTES / 1e6:,.0f} MB",
                )
                return
            if len(data) > limit:
                summary.refuse(name, f"larger than the {max_bytes / 1e6:.0f} MB limit")
                continue
            budget -= len(data)
            yield name, data


def _starts_like_zip(path: Path) -> bool:
    """A zip by content: the local-file (or empty-archive) magic at offset 0, not a zip's tail."""
    with open(path, "rb") as handle:
        return handle.read(4) in _ZIP_MAGIC


def _sources(
    paths: Iterable[str | Path], max_bytes: int, summary: IngestSummary
) -> Iterator[tuple[str, bytes, str]]:
    """(display name, bytes, note) of every photo in `paths`; refused files go to `summary`."""
    for raw in paths:
        path = Path(raw)
        try:
            if _starts_like_zip(path):
                for name, data in _zip_members(path, max_bytes, summary):
                    yield name, data, ""
                continue
            check_upload_size(path.stat().st_size, path.name, max_bytes)
            note = "data appended after the image (e.g. a zip) was ignored" if zipfile.is_zipfile(path) else ""
            yield path.name, path.read_bytes(), note
        except (UserError, OSError) as error:
            message = str(error).splitlines()[0] if str(error) else "unreadable"
            summary.refuse(path.name, message)


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
    max_pixels: int = MAX_PIXELS,
    max_batch_pixels: int = MAX_BATCH_PIXELS,
) -> IngestSummary:
    """Add photos and zips of photos to `store`; every file gets an outcome, bad ones are not raised.

    Patient id and visit date (optional) apply to every photo of the call. A malformed patient id
    or date raises AnnotationError before anything is stored. Sizes are read from the headers
    first: images past `max_batch_pixels` (summed over the call) are refused without decoding.
    """
    patient = clean_patient_id(patient_id)
    visit = clean_visit_date(visit_date)
    summary = IngestSummary()
    budget = max_batch_pixels
    for name, data, note in _sources(paths, max_bytes, summary):
        if budget < 0:
            summary.refuse(name, f"not decoded: this upload's {max_batch_pixels:,} pixel budget is spent")
            continue
        try:
            header = read_header(data, name=name)
            if header.pixels > budget and header.pixels <= max_pixels:
                budget = -1
                summary.refuse(name, f"{header.width}x{header.height} pixels would pass this upload's "
                                     f"{max_batch_pixels:,} pixel budget, not decoded")
                continue
            decoded = decode_image(data, name=name, max_pixels=max_pixels)
        except ImageLoadError as error:
            summary.refuse(name, str(error))
            continue
        budget -= header.pixels
        image = decoded.image
        pixels = np.asarray(image, dtype=np.uint8)
        digest = hashlib.sha256(f"{image.width}x{image.height}:".encode() + pixels.tobytes())
        image_id = digest.hexdigest()[:ID_LENGTH]
        target = photo_path(photos_dir, image_id)
        try:
            if not target.exists():
                _write_atomic(target, to_jpeg_bytes(image))
        except (OSError, ValueError) as error:  # JPEG's size limits, a full disk: this file only
            summary.refuse(name, f"cannot store the photo ({type(error).__name__}: {error})")
            continue
        record = ImageRecord(
            id=image_id, filename=Path(name).name[:255], width=image.width, height=image.height,
            patient_id=patient, visit_date=visit, added_at=utc_now(),
        )
        outcome: Outcome = "added" if store.add_image(record) else "duplicate"
        reason = "; ".join(filter(None, (note, *decoded.notes)))
        summary.files.append(FileOutcome(name, outcome, reason, image_id))
    return summary
