"""The rating store: one SQLite file (WAL, foreign keys, CHECK constraints, append-only audit trail).

Every call opens its own short-lived connection, so the store is safe to share between threads and
processes. Writes run in `BEGIN IMMEDIATE` transactions with `synchronous=FULL`: once a write
returns, it survives the process being killed.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Mapping

from melasma.masi import ITEM_RANGES, ITEMS, REGIONS

SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 30_000
#: (region, item) in the order of the 12 score columns and of every 12-value score list.
SCORE_FIELDS: tuple[tuple[str, str], ...] = tuple((r, i) for r in REGIONS for i in ITEMS)
SCORE_COLUMNS: tuple[str, ...] = tuple(f"{r}_{i}" for r, i in SCORE_FIELDS)


class AnnotationError(ValueError):
    """A request the annotation store or workflow refuses (the message says why, in one line)."""


class UnknownImageError(AnnotationError):
    """The image id is not in the store."""


class UnknownRaterError(AnnotationError):
    """The rater is not one of the configured raters."""


class ImageCompleteError(AnnotationError):
    """The image already has all the ratings it needs."""


class ImageClosedError(AnnotationError):
    """The image has all its ratings: raters can no longer change theirs (a coordinator adjudicates)."""


def _score_column(region: str, item: str) -> str:
    low, high = ITEM_RANGES[item]
    name = f"{region}_{item}"
    return f"{name} INTEGER NOT NULL CHECK (typeof({name}) = 'integer' AND {name} BETWEEN {low} AND {high})"


_SCORES_SQL = ",\n    ".join(_score_column(r, i) for r, i in SCORE_FIELDS)

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY CHECK (length(id) = 16 AND id NOT GLOB '*[^0-9a-f]*'),
    filename TEXT NOT NULL,
    width INTEGER NOT NULL CHECK (width > 0),
    height INTEGER NOT NULL CHECK (height > 0),
    patient_id TEXT CHECK (patient_id IS NULL OR length(patient_id) BETWEEN 1 AND 64),
    visit_date TEXT CHECK (visit_date IS NULL OR date(visit_date) IS visit_date),
    added_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ratings (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE RESTRICT,
    rater TEXT NOT NULL CHECK (length(rater) BETWEEN 1 AND 64),
    {_SCORES_SQL},
    masi REAL NOT NULL CHECK (masi BETWEEN 0 AND 48),
    mmasi REAL NOT NULL CHECK (mmasi BETWEEN 0 AND 24),
    revision INTEGER NOT NULL CHECK (revision >= 1),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    hidden TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (image_id, rater)
);
CREATE TABLE IF NOT EXISTS rating_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE RESTRICT,
    rater TEXT NOT NULL,
    changed_at TEXT NOT NULL,
    revision INTEGER NOT NULL CHECK (revision >= 1),
    old_scores TEXT CHECK (old_scores IS NULL OR json_valid(old_scores)),
    new_scores TEXT NOT NULL CHECK (json_valid(new_scores)),
    old_masi REAL CHECK (old_masi IS NULL OR old_masi BETWEEN 0 AND 48),
    new_masi REAL NOT NULL CHECK (new_masi BETWEEN 0 AND 48)
);
CREATE TRIGGER IF NOT EXISTS rating_audit_no_update BEFORE UPDATE ON rating_audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS rating_audit_no_delete BEFORE DELETE ON rating_audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE INDEX IF NOT EXISTS ratings_by_rater ON ratings (rater);
CREATE TABLE IF NOT EXISTS adjudications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE RESTRICT,
    coordinator TEXT NOT NULL CHECK (length(coordinator) BETWEEN 1 AND 64),
    decided_at TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('adjudicate', 'rerate')),
    rater TEXT CHECK ((action = 'rerate') = (rater IS NOT NULL)),
    old_masi REAL CHECK (old_masi IS NULL OR old_masi BETWEEN 0 AND 48),
    new_masi REAL CHECK ((action = 'adjudicate') = (new_masi IS NOT NULL) AND
                         (new_masi IS NULL OR new_masi BETWEEN 0 AND 48)),
    reason TEXT NOT NULL CHECK (length(trim(reason)) BETWEEN 1 AND 500)
);
CREATE TRIGGER IF NOT EXISTS adjudications_no_update BEFORE UPDATE ON adjudications
BEGIN SELECT RAISE(ABORT, 'the adjudication log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS adjudications_no_delete BEFORE DELETE ON adjudications
BEGIN SELECT RAISE(ABORT, 'the adjudication log is append-only'); END;
"""


def utc_now() -> str:
    """The current UTC time as an ISO 8601 string with microseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class ImageRecord:
    """One stored photo (its pixels live in `photos/<id>.jpg`)."""

    id: str
    filename: str
    width: int
    height: int
    patient_id: str | None
    visit_date: str | None
    added_at: str


@dataclass(frozen=True)
class Rating:
    """One rater's current scores for one image."""

    image_id: str
    rater: str
    scores: dict[str, dict[str, int]]
    masi: float
    mmasi: float
    revision: int
    created_at: str
    updated_at: str
    #: regions the rater marked "not visible in this photo" (their scores are stored as 0)
    hidden: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuditEntry:
    """One change to a rating: who, when, the scores before (None for the first) and after."""

    id: int
    image_id: str
    rater: str
    changed_at: str
    revision: int
    old_scores: dict[str, dict[str, int]] | None
    new_scores: dict[str, dict[str, int]]
    old_masi: float | None
    new_masi: float


@dataclass(frozen=True)
class Adjudication:
    """A coordinator's decision on a closed image: an adjudicated MASI, or a re-rating request.

    `old_masi` is the consensus MASI when the decision was made; `new_masi` the adjudicated one
    (None for a re-rating request, which names the `rater` asked to rate again)."""

    id: int
    image_id: str
    coordinator: str
    decided_at: str
    action: str
    rater: str | None
    old_masi: float | None
    new_masi: float | None
    reason: str


def _image(row: sqlite3.Row) -> ImageRecord:
    return ImageRecord(**{key: row[key] for key in ImageRecord.__dataclass_fields__})


def _rating(row: sqlite3.Row) -> Rating:
    scores: dict[str, dict[str, int]] = {r: {} for r in REGIONS}
    for (region, item), column in zip(SCORE_FIELDS, SCORE_COLUMNS):
        scores[region][item] = row[column]
    return Rating(
        image_id=row["image_id"], rater=row["rater"], scores=scores, masi=row["masi"],
        mmasi=row["mmasi"], revision=row["revision"], created_at=row["created_at"],
        updated_at=row["updated_at"], hidden=tuple(r for r in row["hidden"].split(",") if r),
    )


def _audit(row: sqlite3.Row) -> AuditEntry:
    old = row["old_scores"]
    return AuditEntry(
        id=row["id"], image_id=row["image_id"], rater=row["rater"], changed_at=row["changed_at"],
        revision=row["revision"], old_scores=json.loads(old) if old is not None else None,
        new_scores=json.loads(row["new_scores"]), old_masi=row["old_masi"], new_masi=row["new_masi"],
    )


def _missing_columns(conn: sqlite3.Connection) -> str:
    """ALTER statements for columns an older database lacks (`ratings.hidden`, version 1)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(ratings)")}
    if columns and "hidden" not in columns:
        return "ALTER TABLE ratings ADD COLUMN hidden TEXT NOT NULL DEFAULT '';\n"
    return ""


def _rerate_pending(conn: sqlite3.Connection, rating: sqlite3.Row) -> bool:
    """Whether a coordinator asked this rater to rate this image again after their last change."""
    return conn.execute(
        "SELECT 1 FROM adjudications WHERE image_id = ? AND rater = ? AND action = 'rerate'"
        " AND decided_at > ?", (rating["image_id"], rating["rater"], rating["updated_at"]),
    ).fetchone() is not None


class RatingStore:
    """Images, ratings and the audit trail in one SQLite database at `db_path` (created if missing)."""

    def __init__(self, db_path: str | Path) -> None:
        self.path = Path(db_path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as conn:
            conn.execute("PRAGMA journal_mode = WAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise AnnotationError(
                    f"{self.path}: database schema version {version} is newer than this app's "
                    f"{SCHEMA_VERSION}"
                )
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{SCHEMA}\n{_missing_columns(conn)}"
                f"PRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;"
            )

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A fresh connection in autocommit mode with foreign keys, busy timeout and full sync."""
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA synchronous = FULL")
            yield conn
        finally:
            conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken up front (`BEGIN IMMEDIATE`), committed on success."""
        with self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # images ---------------------------------------------------------------------------------
    def add_image(self, record: ImageRecord) -> bool:
        """Insert a photo's record; False when an image with the same id is already stored."""
        with self.transaction() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO images (id, filename, width, height, patient_id, visit_date,"
                " added_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (record.id, record.filename, record.width, record.height, record.patient_id,
                 record.visit_date, record.added_at),
            )
            return cursor.rowcount == 1

    def get_image(self, image_id: str) -> ImageRecord | None:
        """The stored record of `image_id`, or None."""
        with self.connect() as conn:
            row = conn.execute("SELECT * FROM images WHERE id = ?", (image_id,)).fetchone()
        return _image(row) if row is not None else None

    def images(self) -> list[ImageRecord]:
        """Every stored image, in ingestion order."""
        with self.connect() as conn:
            return [_image(row) for row in conn.execute("SELECT * FROM images ORDER BY rowid")]

    def next_unrated(self, rater: str, needed: int) -> ImageRecord | None:
        """The first image `rater` has not rated that has fewer than `needed` ratings.

        Images closest to completion come first, then ingestion order.
        """
        with self.connect() as conn:
            row = conn.execute(
                "SELECT i.*, (SELECT COUNT(*) FROM ratings r WHERE r.image_id = i.id) AS n"
                " FROM images i"
                " WHERE n < ? AND NOT EXISTS"
                "  (SELECT 1 FROM ratings r WHERE r.image_id = i.id AND r.rater = ?)"
                " ORDER BY n DESC, i.rowid LIMIT 1",
                (needed, rater),
            ).fetchone()
        return _image(row) if row is not None else None

    # ratings --------------------------------------------------------------------------------
    def save_rating(
        self,
        image_id: str,
        rater: str,
        scores: Mapping[str, Mapping[str, int]],
        masi: float,
        mmasi: float,
        max_ratings: int,
        hidden: tuple[str, ...] = (),
    ) -> Rating:
        """Store or revise `rater`'s rating of `image_id` and append the change to the audit trail.

        A new rating is refused when the image already has `max_ratings` ratings; a revision is
        refused then too (the image is closed: blinding is over, only a coordinator's re-rating
        request reopens it for the one rater named). The check, the write and the audit row happen
        in one transaction.
        """
        values = [scores[region][item] for region, item in SCORE_FIELDS]
        now = utc_now()
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone() is None:
                raise UnknownImageError(f"unknown image id {image_id!r}")
            row = conn.execute(
                "SELECT * FROM ratings WHERE image_id = ? AND rater = ?", (image_id, rater)
            ).fetchone()
            count = conn.execute(
                "SELECT COUNT(*) FROM ratings WHERE image_id = ?", (image_id,)
            ).fetchone()[0]
            if row is not None and count >= max_ratings and not _rerate_pending(conn, row):
                raise ImageClosedError(
                    f"photo {image_id} has all its {max_ratings} ratings and is closed; "
                    "a coordinator can adjudicate it or ask you to rate it again"
                )
            if row is None:
                if count >= max_ratings:
                    raise ImageCompleteError(
                        f"image {image_id} already has its {max_ratings} ratings"
                    )
                old, revision, created = None, 1, now
                columns = ", ".join(SCORE_COLUMNS)
                marks = ", ".join("?" for _ in SCORE_COLUMNS)
                conn.execute(
                    f"INSERT INTO ratings (image_id, rater, {columns}, masi, mmasi, revision,"
                    f" created_at, updated_at, hidden) VALUES (?, ?, {marks}, ?, ?, 1, ?, ?, ?)",
                    (image_id, rater, *values, masi, mmasi, now, now, ",".join(hidden)),
                )
            else:
                old, revision, created = _rating(row), row["revision"] + 1, row["created_at"]
                assignments = ", ".join(f"{c} = ?" for c in SCORE_COLUMNS)
                conn.execute(
                    f"UPDATE ratings SET {assignments}, masi = ?, mmasi = ?, revision = ?,"
                    " updated_at = ?, hidden = ? WHERE image_id = ? AND rater = ?",
                    (*values, masi, mmasi, revision, now, ",".join(hidden), image_id, rater),
                )
            new_scores = {r: {i: scores[r][i] for i in ITEMS} for r in REGIONS}
            conn.execute(
                "INSERT INTO rating_audit (image_id, rater, changed_at, revision, old_scores,"
                " new_scores, old_masi, new_masi) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (image_id, rater, now, revision,
                 json.dumps(old.scores) if old is not None else None, json.dumps(new_scores),
                 old.masi if old is not None else None, masi),
            )
        return Rating(image_id, rater, new_scores, masi, mmasi, revision, created, now, tuple(hidden))

    # adjudication --------------------------------------------------------------------------
    def add_adjudication(
        self,
        image_id: str,
        coordinator: str,
        action: str,
        reason: str,
        *,
        old_masi: float | None,
        new_masi: float | None = None,
        rater: str | None = None,
    ) -> Adjudication:
        """Append a coordinator's decision on `image_id` to the (append-only) adjudication log."""
        now = utc_now()
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone() is None:
                raise UnknownImageError(f"unknown image id {image_id!r}")
            if rater is not None and conn.execute(
                "SELECT 1 FROM ratings WHERE image_id = ? AND rater = ?", (image_id, rater)
            ).fetchone() is None:
                raise AnnotationError(f"{rater} has not rated photo {image_id}")
            try:
                cursor = conn.execute(
                    "INSERT INTO adjudications (image_id, coordinator, decided_at, action, rater,"
                    " old_masi, new_masi, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (image_id, coordinator, now, action, rater, old_masi, new_masi, reason.strip()),
                )
            except sqlite3.IntegrityError as error:
                raise AnnotationError(f"adjudication refused: {error}") from None
            return Adjudication(cursor.lastrowid or 0, image_id, coordinator, now, action, rater,
                                old_masi, new_masi, reason.strip())

    def adjudications(self, image_id: str | None = None) -> list[Adjudication]:
        """The adjudication log, oldest first, optionally for one image."""
        query, params = "SELECT * FROM adjudications", []
        if image_id is not None:
            query, params = query + " WHERE image_id = ?", [image_id]
        with self.connect() as conn:
            return [Adjudication(**dict(row)) for row in conn.execute(query + " ORDER BY id", params)]

    def rerate_requests(self, rater: str) -> list[str]:
        """Ids of closed images a coordinator asked `rater` to rate again (still pending)."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT DISTINCT a.image_id FROM adjudications a JOIN ratings r"
                " ON r.image_id = a.image_id AND r.rater = a.rater"
                " WHERE a.rater = ? AND a.action = 'rerate' AND a.decided_at > r.updated_at"
                " ORDER BY a.id", (rater,),
            ).fetchall()
        return [row[0] for row in rows]

    def get_rating(self, image_id: str, rater: str) -> Rating | None:
        """`rater`'s current rating of `image_id`, or None."""
        with self.connect() as conn:
            row = conn.execute(
                "SELECT * FROM ratings WHERE image_id = ? AND rater = ?", (image_id, rater)
            ).fetchone()
        return _rating(row) if row is not None else None

    def ratings(self) -> list[Rating]:
        """Every current rating, grouped by image in ingestion order, raters by name."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT r.* FROM ratings r JOIN images i ON i.id = r.image_id"
                " ORDER BY i.rowid, r.rater"
            ).fetchall()
        return [_rating(row) for row in rows]

    def rated_by(self, rater: str) -> list[str]:
        """Ids of the images `rater` has rated, oldest rating first."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT image_id FROM ratings WHERE rater = ? ORDER BY created_at", (rater,)
            ).fetchall()
        return [row[0] for row in rows]

    def rating_counts(self) -> dict[str, int]:
        """Image id -> number of ratings, for every image (0 included)."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT i.id, COUNT(r.rater) FROM images i LEFT JOIN ratings r ON r.image_id = i.id"
                " GROUP BY i.id ORDER BY i.rowid"
            ).fetchall()
        return {row[0]: row[1] for row in rows}

    def audit_trail(self, image_id: str | None = None, rater: str | None = None) -> list[AuditEntry]:
        """Audit rows, oldest first, optionally only for one image and/or one rater."""
        query, params = "SELECT * FROM rating_audit WHERE 1 = 1", []
        if image_id is not None:
            query, params = query + " AND image_id = ?", [*params, image_id]
        if rater is not None:
            query, params = query + " AND rater = ?", [*params, rater]
        with self.connect() as conn:
            return [_audit(row) for row in conn.execute(query + " ORDER BY id", params)]

    def integrity_check(self) -> str:
        """The result of `PRAGMA integrity_check` ("ok" when the file is sound)."""
        with self.connect() as conn:
            return ", ".join(row[0] for row in conn.execute("PRAGMA integrity_check"))
