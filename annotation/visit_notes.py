"""Treatment and notes per stored photo: a small side table in the rating store's database.

The rating store (annotation/store.py) has no column for them; this table lives beside its tables,
reached through the store's own connections (`connect`, `transaction`: the same `?` SQL on SQLite and
PostgreSQL), created on first use with portable SQL (`CREATE TABLE IF NOT EXISTS`, `INSERT ... ON
CONFLICT ... DO UPDATE`, which SQLite >= 3.24 and PostgreSQL >= 9.5 both accept). Rows are keyed by
the photo id the store gives a photo; a photo without a row has no treatment and no notes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from annotation.store import RatingStore, utc_now

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
    """The `visit_notes` table beside `store`'s tables (created if missing)."""

    def __init__(self, store: RatingStore) -> None:
        self.store = store
        with store.transaction() as conn:
            conn.execute(SCHEMA)

    def put(self, notes: Iterable[VisitNote]) -> int:
        """Store (or replace) the notes of each photo in one transaction; returns how many."""
        rows = [(n.image_id, n.treatment or None, n.notes or None, utc_now()) for n in notes]
        with self.store.transaction() as conn:
            for row in rows:
                conn.execute(
                    "INSERT INTO visit_notes (image_id, treatment, notes, recorded_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (image_id) DO UPDATE SET treatment = excluded.treatment,"
                    " notes = excluded.notes, recorded_at = excluded.recorded_at",
                    row,
                )
        return len(rows)

    def all(self) -> dict[str, VisitNote]:
        """Every photo's notes, keyed by photo id."""
        with self.store.connect() as conn:
            rows = conn.execute("SELECT image_id, treatment, notes FROM visit_notes").fetchall()
        return {row[0]: VisitNote(row[0], row[1], row[2]) for row in rows}
