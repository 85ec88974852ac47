"""Copy a rating store to another database (`python -m melasma db migrate --from ... --to ...`).

Every row of the four tables is copied with its ids, timestamps and revisions, in one transaction on
the target, which must be empty; the copy is committed only when the target's row count of every
table equals the source's. The photos stay where they are (the file system, by content hash).
Other tables beside the store's (a module's side table such as `visit_notes`) are named in the
report, not copied.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from annotation.db.engines import Connection, is_postgres, redact, sqlite_path
from annotation.db.schema import TABLES
from annotation.store import AnnotationError, RatingStore

BATCH_ROWS = 1000
#: the order rows are copied in (images keep their ingestion order on the target)
ORDER = {"images": "{position}", "ratings": "image_id, rater", "rating_audit": "id", "adjudications": "id"}


class MigrationError(AnnotationError):
    """The copy was refused (target not empty, source missing) or did not verify; nothing was written."""


@dataclass(frozen=True)
class TableCount:
    """Rows of one table in the source and, after the copy, in the target."""

    table: str
    source: int
    target: int


@dataclass(frozen=True)
class MigrationReport:
    """What `migrate` copied; `verified` when every table's counts match."""

    source: str
    target: str
    counts: tuple[TableCount, ...]
    #: tables in the source beside the store's (e.g. visit_notes): not copied
    skipped: tuple[str, ...] = ()

    @property
    def verified(self) -> bool:
        return all(c.source == c.target for c in self.counts)

    @property
    def rows(self) -> int:
        return sum(c.target for c in self.counts)


def _describe(target: str | Path) -> str:
    return redact(str(target)) if is_postgres(target) else str(sqlite_path(target))


def _identity(target: str | Path) -> str:
    return str(target) if is_postgres(target) else str(sqlite_path(target).resolve())


def migrate(source: str | Path, target: str | Path) -> MigrationReport:
    """Copy every row of the store at `source` into the empty store at `target` (created if missing)."""
    if not is_postgres(source) and not sqlite_path(source).is_file():
        raise MigrationError(f"source {_describe(source)} does not exist")
    if _identity(source) == _identity(target):
        raise MigrationError("source and target are the same database")
    origin, destination = RatingStore(source), RatingStore(target)
    with origin.connect() as read, destination.transaction() as write:
        read.execute("BEGIN" if origin.engine.name == "sqlite" else
                     "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")  # one consistent snapshot
        try:
            present = {t: write.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}
            if any(present.values()):
                listed = ", ".join(f"{n} {t}" for t, n in present.items() if n)
                raise MigrationError(f"target {_describe(target)} is not empty ({listed}); "
                                     "migrate only into an empty database")
            counts = []
            for table in TABLES:
                copied = _copy_table(table, read, write, origin, destination)
                stored = write.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                counts.append(TableCount(table, copied, stored))
            skipped = tuple(sorted(origin.engine.table_names(read) - set(TABLES)))
            report = MigrationReport(_describe(source), _describe(target), tuple(counts), skipped)
            if not report.verified:
                raise MigrationError("verification failed, nothing written: " + ", ".join(
                    f"{c.table} {c.source} -> {c.target}" for c in counts))
            destination.engine.reset_sequences(write)
        finally:
            read.execute("ROLLBACK")
    return report


def _copy_table(table: str, read: Connection, write: Connection, origin: RatingStore,
                destination: RatingStore) -> int:
    """Copy `table` in batches; returns the number of source rows."""
    order = ORDER[table].format(position=origin.engine.position)
    targets = {d[0] for d in write.execute(f"SELECT * FROM {table} LIMIT 0").description}
    cursor = read.execute(f"SELECT * FROM {table} ORDER BY {order}")
    columns = [d[0] for d in cursor.description]
    keep = [i for i, name in enumerate(columns)
            if name in targets and name != destination.engine.position and name != origin.engine.position]
    names = ", ".join(columns[i] for i in keep)
    insert = f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' for _ in keep)})"
    total = 0
    while batch := cursor.fetchmany(BATCH_ROWS):
        write.executemany(insert, [tuple(row[i] for i in keep) for row in batch])
        total += len(batch)
    return total
