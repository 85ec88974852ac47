"""Bulk ingest of a patient's visits: a CSV manifest, or a folder whose file names say who and when.

Manifest columns: `image` (path, relative to the CSV's folder), `patient_id`, `visit_date`
(YYYY-MM-DD), optional `treatment` and `notes`. Folder pattern: `<patient>_<YYYY-MM-DD>[_<anything>].<ext>`
(e.g. `P007_2026-03-02_left.jpg`; patient ids of letters, digits and `-`).

Everything is checked first (columns, ids, dates, files present, readable image headers within the
size caps, no photo listed twice); any problem stops the call before anything is stored, and the
error lists every problem. Then the photos go through `annotation.ingest.ingest` (metadata stripped,
duplicates found) one visit at a time, and treatment / notes go to the `visit_notes` side table.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from annotation.ingest import (
    MAX_BATCH_PIXELS,
    FileOutcome,
    IngestSummary,
    clean_patient_id,
    clean_visit_date,
    ingest,
)
from annotation.store import AnnotationError, RatingStore
from annotation.visit_notes import MAX_NOTES, MAX_TREATMENT, VisitNote, VisitNotes
from melasma.data.images import MAX_PIXELS, MAX_UPLOAD_BYTES, check_upload_size, read_header
from melasma.errors import UserError

REQUIRED_COLUMNS: tuple[str, ...] = ("image", "patient_id", "visit_date")
OPTIONAL_COLUMNS: tuple[str, ...] = ("treatment", "notes")
FOLDER_PATTERN = re.compile(
    r"^(?P<patient>[A-Za-z0-9-]{1,64})_(?P<date>\d{4}-\d{2}-\d{2})(?:_[^/\\]*)?"
    r"\.(?:jpe?g|png|tiff?|webp|bmp)$", re.IGNORECASE,
)
#: Most rows of one manifest.
MAX_ROWS = 20_000


class ManifestError(AnnotationError):
    """A manifest or folder with problems: the message's first line counts them, one `  - ` line each."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        super().__init__(f"{source}: {len(problems)} problem(s), nothing stored:\n  - " + "\n  - ".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class VisitEntry:
    """One photo of one visit, as the manifest (or the file name) gives it."""

    image: Path
    patient_id: str
    visit_date: str
    treatment: str | None = None
    notes: str | None = None
    where: str = ""  # "visits.csv line 3" or the file name, for messages


def _text(value: str | None, limit: int, name: str, where: str, problems: list[str]) -> str | None:
    value = (value or "").strip()
    if len(value) > limit:
        problems.append(f"{where}: {name} is longer than {limit} characters")
    return value or None


def _entry(row: dict[str, str], base: Path, where: str, problems: list[str]) -> VisitEntry | None:
    before = len(problems)
    image = (row.get("image") or "").strip()
    if not image:
        problems.append(f"{where}: image is empty")
    patient = date = None
    try:
        patient = clean_patient_id(row.get("patient_id"))
        if patient is None:
            problems.append(f"{where}: patient_id is empty")
    except AnnotationError as error:
        problems.append(f"{where}: {error}")
    try:
        date = clean_visit_date(row.get("visit_date"))
        if date is None:
            problems.append(f"{where}: visit_date is empty")
    except AnnotationError as error:
        problems.append(f"{where}: {error}")
    treatment = _text(row.get("treatment"), MAX_TREATMENT, "treatment", where, problems)
    notes = _text(row.get("notes"), MAX_NOTES, "notes", where, problems)
    if len(problems) > before or patient is None or date is None:
        return None
    return VisitEntry(base / image, patient, date, treatment, notes, where)


def read_manifest(path: str | Path) -> list[VisitEntry]:
    """The entries of a CSV manifest; ManifestError listing every problem, row by row (text and
    files; `ingest_visits` checks the files again under the caller's size caps)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            reader.fieldnames = columns
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ManifestError(path.name, [f"cannot read the manifest ({error})"]) from None
    problems = [f"missing column {c!r}" for c in REQUIRED_COLUMNS if c not in columns]
    problems += [f"unknown column {c!r} (columns: {', '.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)})"
                 for c in columns if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if not rows:
        problems.append("no rows")
    if len(rows) > MAX_ROWS:
        problems.append(f"{len(rows)} rows, more than the {MAX_ROWS} allowed")
    if problems:
        raise ManifestError(path.name, problems)
    entries: list[VisitEntry] = []
    seen: dict[Path, str] = {}
    for n, row in enumerate(rows, start=2):
        entry = _entry(row, path.parent, f"{path.name} line {n}", problems)
        if entry is not None:
            problem = _file_problem(entry, seen, MAX_UPLOAD_BYTES, MAX_PIXELS)
            problems += [problem] if problem else []
            entries.append(entry)
    if problems:
        raise ManifestError(path.name, problems)
    return entries


def entries_from_folder(folder: str | Path) -> list[VisitEntry]:
    """One entry per photo of `folder` named `<patient>_<YYYY-MM-DD>[_...].<ext>` (hidden files
    skipped); ManifestError listing every file that does not follow the pattern."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ManifestError(str(folder), ["not a folder"])
    problems: list[str] = []
    entries = []
    for path in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
        match = FOLDER_PATTERN.match(path.name)
        if not match:
            problems.append(f"{path.name}: name does not follow <patient>_<YYYY-MM-DD>[_...].<jpg|png|...>")
            continue
        row = {"image": path.name, "patient_id": match["patient"], "visit_date": match["date"]}
        entry = _entry(row, folder, path.name, problems)
        if entry is not None:
            entries.append(entry)
    if not entries and not problems:
        problems.append("no photos")
    if problems:
        raise ManifestError(folder.name, problems)
    return entries


def _file_problem(entry: VisitEntry, seen: dict[Path, str], max_bytes: int, max_pixels: int) -> str | None:
    """What is wrong with the entry's file (missing, listed twice, too large, not an image), or None."""
    key = entry.image.resolve()
    if key in seen:
        return f"{entry.where}: {entry.image.name} is already listed ({seen[key]})"
    seen[key] = entry.where
    if not entry.image.is_file():
        return f"{entry.where}: {entry.image} is not a file"
    try:
        check_upload_size(entry.image.stat().st_size, entry.image.name, max_bytes)
        header = read_header(entry.image, name=entry.image.name)
    except (UserError, OSError) as error:
        return f"{entry.where}: {str(error).splitlines()[0]}"
    if header.pixels > max_pixels:
        return f"{entry.where}: {header.width}x{header.height} pixels, more than the {max_pixels:,} allowed"
    return None


def check_entries(
    entries: Sequence[VisitEntry], *, max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_PIXELS,
) -> list[str]:
    """Every problem of the entries' files: missing, listed twice, too large, not a readable image."""
    seen: dict[Path, str] = {}
    found = (_file_problem(entry, seen, max_bytes, max_pixels) for entry in entries)
    return [problem for problem in found if problem]


def ingest_visits(
    store: RatingStore,
    photos_dir: str | Path,
    entries: Iterable[VisitEntry],
    *,
    max_bytes: int = MAX_UPLOAD_BYTES,
    max_pixels: int = MAX_PIXELS,
    max_batch_pixels: int = MAX_BATCH_PIXELS,
    source: str = "visits",
) -> IngestSummary:
    """Check every entry, then ingest each visit's photos with its patient id and date and store
    treatment / notes. Raises ManifestError (nothing stored) when any entry has a problem.

    A duplicate photo keeps the patient and date it was first stored with (its outcome says so)."""
    entries = list(entries)
    problems = check_entries(entries, max_bytes=max_bytes, max_pixels=max_pixels)
    if problems:
        raise ManifestError(source, problems)
    visits: dict[tuple[str, str], list[VisitEntry]] = {}
    for entry in entries:
        visits.setdefault((entry.patient_id, entry.visit_date), []).append(entry)
    summary = IngestSummary()
    notes = []
    for (patient, day), group in visits.items():
        part = ingest(store, photos_dir, [e.image for e in group], patient_id=patient, visit_date=day,
                      max_bytes=max_bytes, max_pixels=max_pixels, max_batch_pixels=max_batch_pixels)
        for entry, result in zip(group, part.files, strict=True):  # one outcome per checked photo
            if result.outcome == "duplicate" and result.photo_id:
                stored = store.get_image(result.photo_id)
                if stored is not None and (stored.patient_id, stored.visit_date) != (patient, day):
                    result = FileOutcome(result.file, result.outcome,
                                          f"already stored for patient {stored.patient_id} on "
                                          f"{stored.visit_date}; kept that", result.photo_id)
            elif result.outcome == "added" and result.photo_id and (entry.treatment or entry.notes):
                notes.append(VisitNote(result.photo_id, entry.treatment, entry.notes))
            summary.files.append(result)
    VisitNotes(store).put(notes)
    return summary
