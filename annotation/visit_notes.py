"""Treatment and notes per stored photo: a small side table in the rating store's SQLite file.

The rating store (annotation/store.py) has no column for them; this table lives beside it in the
same file, created on first use with portable SQL (`CREATE TABLE IF NOT EXISTS`, `INSERT ... ON
CONFLICT ... DO UPDATE`, which SQLite >= 3.24 and PostgreSQL >= 9.5 both accept). Rows are keyed by
the photo id the store gives a photo; a photo without a row has no treatment and no notes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from annotation.store import BUSY_TIMEOUT_MS, utc_now

MAX_TREATMENT = 200
MAX_NOTES = 2000

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS visit_notes (
    image_id TEXT PRIMARY KEY,
    treatment TEXT CHECK (treatment IS NULL OR length(treatment) BETWEEN 1 AND {MAX_TREATMENT}),
    notes TEXT CHECK (notes IS NULL OR length(notes) BETWEEN 1 AND {MAX_NOTES}),
    recorded_at TEXT NOT NULL
)
"""


@dataclass(frozen=True)
class VisitNote:
    """The treatment a patient was on when a photo was taken, and free-text notes (both optional)."""

    image_id: str
    treatment: str | None = None
    notes: str | None = None


class VisitNotes:
    """The `visit_notes` table of the SQLite file at `db_path` (created if missing)."""

    def __init__(self, db_path: str | Path) -> None:
        self.path = Path(db_path)
        with closing(self._connect()) as conn, conn:
            conn.execute(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000)

    def put(self, notes: Iterable[VisitNote]) -> int:
        """Store (or replace) the notes of each photo in one transaction; returns how many."""
        rows = [(n.image_id, n.treatment or None, n.notes or None, utc_now()) for n in notes]
        with closing(self._connect()) as conn, conn:
            conn.executemany(
                "INSERT INTO visit_notes (image_id, treatment, notes, recorded_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (image_id) DO UPDATE SET treatment = excluded.treatment,"
                " notes = excluded.notes, recorded_at = excluded.recorded_at",
                rows,
            )
        return len(rows)

    def all(self) -> dict[str, VisitNote]:
        """Every photo's notes, keyed by photo id."""
        with closing(self._connect()) as conn:
            rows = conn.execute("SELECT image_id, treatment, notes FROM visit_notes").fetchall()
        return {row[0]: VisitNote(*row) for row in rows}
