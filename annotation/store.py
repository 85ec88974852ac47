"""The rating store: images, ratings, the append-only audit trail and the adjudication log, in one
SQLite file (the zero-setup default) or a PostgreSQL database shared by several app servers.

Every call takes its own short-lived connection (SQLite: a fresh one; PostgreSQL: one from the
process's pool), so the store is safe to share between threads and processes. A write is one
transaction that checks, writes and audits together: SQLite takes the file's write lock up front
(`BEGIN IMMEDIATE`, `synchronous=FULL`), PostgreSQL locks the photo's row. Once a write returns, it
survives the process being killed. The SQL is written once; `annotation.db.engines` holds the
differences between the engines and `annotation.db.schema` the tables.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from annotation.db.engines import BUSY_TIMEOUT_MS, Connection, SchemaError, open_engine
from annotation.db.schema import SCHEMA_VERSION, SCORE_COLUMNS, SCORE_FIELDS
from melasma.errors import UserError
from melasma.masi import ITEMS, REGIONS, RaterScores

if TYPE_CHECKING:
    from melasma.settings import Settings

__all__ = ["BUSY_TIMEOUT_MS", "SCHEMA_VERSION", "SCORE_COLUMNS", "SCORE_FIELDS"]


class AnnotationError(UserError):
    """A request the annotation store or workflow refuses (the message says why, in one line)."""


class UnknownImageError(AnnotationError):
    """The image id is not in the store."""


class UnknownRaterError(AnnotationError):
    """The rater is not one of the configured raters."""


class ImageCompleteError(AnnotationError):
    """The image already has all the ratings it needs."""


class ImageClosedError(AnnotationError):
    """The image has all its ratings: raters can no longer change theirs (a coordinator adjudicates)."""


def utc_now() -> str:
    """The current UTC time as an ISO 8601 string with microseconds."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


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


def _image(row: Any) -> ImageRecord:
    return ImageRecord(**{key: row[key] for key in ImageRecord.__dataclass_fields__})


def _rating(row: Any) -> Rating:
    scores: dict[str, dict[str, int]] = {r: {} for r in REGIONS}
    for (region, item), column in zip(SCORE_FIELDS, SCORE_COLUMNS):
        scores[region][item] = row[column]
    return Rating(
        image_id=row["image_id"], rater=row["rater"], scores=scores, masi=row["masi"],
        mmasi=row["mmasi"], revision=row["revision"], created_at=row["created_at"],
        updated_at=row["updated_at"], hidden=tuple(r for r in row["hidden"].split(",") if r),
    )


def _audit(row: Any) -> AuditEntry:
    old = row["old_scores"]
    return AuditEntry(
        id=row["id"], image_id=row["image_id"], rater=row["rater"], changed_at=row["changed_at"],
        revision=row["revision"], old_scores=json.loads(old) if old is not None else None,
        new_scores=json.loads(row["new_scores"]), old_masi=row["old_masi"], new_masi=row["new_masi"],
    )


def _rerate_pending(conn: Connection, rating: Any) -> bool:
    """Whether a coordinator asked this rater to rate this image again after their last change."""
    return conn.execute(
        "SELECT 1 FROM adjudications WHERE image_id = ? AND rater = ? AND action = 'rerate'"
        " AND decided_at > ?", (rating["image_id"], rating["rater"], rating["updated_at"]),
    ).fetchone() is not None


class RatingStore:
    """Images, ratings, the audit trail and the adjudication log in one database (created if missing).

    `target`: an SQLite file path (or `sqlite:///PATH`), or a `postgresql://` URL; see
    `for_settings` for the app's choice (MELASMA_DATABASE_URL, else the data folder's file).
    """

    def __init__(self, target: str | Path) -> None:
        self.engine = open_engine(target)
        #: the SQLite file (None on PostgreSQL)
        self.path: Path | None = self.engine.path
        try:
            self.engine.create_schema()
        except SchemaError as error:
            raise AnnotationError(str(error)) from None

    @classmethod
    def for_settings(cls, settings: Settings) -> RatingStore:
        """The app's store: `settings.database_url` if set, else `annotations.sqlite` in the data folder."""
        return cls(settings.database_url or settings.ratings_db)

    @contextmanager
    def connect(self) -> Iterator[Any]:
        """A connection in autocommit mode (SQLite: a sqlite3.Connection with foreign keys, busy
        timeout and full sync; PostgreSQL: a pooled one that takes the same `?` placeholders)."""
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A write transaction (SQLite: `BEGIN IMMEDIATE`, the write lock up front), committed on success."""
        with self.connect() as conn:
            conn.execute(self.engine.begin)
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
                "INSERT INTO images (id, filename, width, height, patient_id, visit_date, added_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
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
            return [_image(row) for row in conn.execute(
                f"SELECT * FROM images ORDER BY {self.engine.position}")]

    def next_unrated(self, rater: str, needed: int) -> ImageRecord | None:
        """The first image `rater` has not rated that has fewer than `needed` ratings.

        Images closest to completion come first, then ingestion order.
        """
        with self.connect() as conn:
            row = conn.execute(
                f"SELECT * FROM (SELECT i.*, i.{self.engine.position} AS ingested,"
                "  (SELECT COUNT(*) FROM ratings r WHERE r.image_id = i.id) AS n FROM images i) AS c"
                " WHERE c.n < ? AND NOT EXISTS"
                "  (SELECT 1 FROM ratings r WHERE r.image_id = c.id AND r.rater = ?)"
                " ORDER BY c.n DESC, c.ingested LIMIT 1",
                (needed, rater),
            ).fetchone()
        return _image(row) if row is not None else None

    # ratings --------------------------------------------------------------------------------
    def save_rating(
        self,
        image_id: str,
        rater: str,
        scores: RaterScores,
        max_ratings: int,
        hidden: tuple[str, ...] = (),
    ) -> Rating:
        """Store or revise `rater`'s rating of `image_id` and append the change to the audit trail.

        A new rating is refused when the image already has `max_ratings` ratings; a revision is
        refused then too (the image is closed: blinding is over, only a coordinator's re-rating
        request reopens it for the one rater named). The check, the write and the audit row happen
        in one transaction.
        """
        values = [scores.regions[region][item] for region, item in SCORE_FIELDS]
        masi, mmasi = scores.masi, scores.mmasi
        now = utc_now()
        with self.transaction() as conn:
            if not self._lock_image(conn, image_id):
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
            new_scores = {r: {i: scores.regions[r][i] for i in ITEMS} for r in REGIONS}
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
            if not self._lock_image(conn, image_id):
                raise UnknownImageError(f"unknown image id {image_id!r}")
            if rater is not None and conn.execute(
                "SELECT 1 FROM ratings WHERE image_id = ? AND rater = ?", (image_id, rater)
            ).fetchone() is None:
                raise AnnotationError(f"{rater} has not rated photo {image_id}")
            try:
                new_id = conn.execute(
                    "INSERT INTO adjudications (image_id, coordinator, decided_at, action, rater,"
                    " old_masi, new_masi, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (image_id, coordinator, now, action, rater, old_masi, new_masi, reason.strip()),
                ).fetchone()[0]
            except self.engine.integrity_errors as error:
                raise AnnotationError(f"adjudication refused: {_first_line(error)}") from None
            return Adjudication(new_id, image_id, coordinator, now, action, rater,
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
                "SELECT a.image_id FROM adjudications a JOIN ratings r"
                " ON r.image_id = a.image_id AND r.rater = a.rater"
                " WHERE a.rater = ? AND a.action = 'rerate' AND a.decided_at > r.updated_at"
                " GROUP BY a.image_id ORDER BY min(a.id)", (rater,),
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
                f" ORDER BY i.{self.engine.position}, r.rater"
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
                f" GROUP BY i.id ORDER BY i.{self.engine.position}"
            ).fetchall()
        return {row[0]: row[1] for row in rows}

    def audit_trail(self, image_id: str | None = None, rater: str | None = None) -> list[AuditEntry]:
        """Audit rows, oldest first, optionally only for one image and/or one rater."""
        query, params = "SELECT * FROM rating_audit WHERE 1 = 1", list[str]()
        if image_id is not None:
            query, params = query + " AND image_id = ?", [*params, image_id]
        if rater is not None:
            query, params = query + " AND rater = ?", [*params, rater]
        with self.connect() as conn:
            return [_audit(row) for row in conn.execute(query + " ORDER BY id", params)]

    def integrity_check(self) -> str:
        """"ok" when the database is sound (SQLite: `PRAGMA integrity_check`; PostgreSQL: every
        constraint validated and every append-only trigger enabled), else the problems found."""
        return self.engine.integrity_check()

    # internals -------------------------------------------------------------------------------
    def _lock_image(self, conn: Connection, image_id: str) -> bool:
        """Whether `image_id` exists; on PostgreSQL its row stays locked until the transaction ends,
        so two writers of one photo take turns (SQLite's write lock already serialises them)."""
        query = f"SELECT 1 FROM images WHERE id = ?{self.engine.lock}"
        return conn.execute(query, (image_id,)).fetchone() is not None


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
