"""The two database engines of the rating store: an SQLite file (the zero-setup default) and a shared
PostgreSQL server. Every difference the store's queries meet lives here: connecting, the write
transaction's first statement, the row lock, the ingestion-order column, placeholders, errors.

`open_engine(target)` takes a path, `sqlite:///PATH` or `postgresql://...` (also `postgres://`).
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from annotation.db.schema import SCHEMA_VERSION, postgres_schema, sqlite_schema
from melasma.errors import UserError

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

BUSY_TIMEOUT_MS = 30_000
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
SQLITE_SCHEME = "sqlite:///"
#: Connections one process keeps open to a PostgreSQL store (shared by its threads).
POOL_MAX_SIZE = 16
CONNECT_TIMEOUT_S = 10


class SchemaError(UserError):
    """The database was written by a newer version of the app."""


class DatabaseUnavailable(ConnectionError):
    """The PostgreSQL server cannot be reached (or refuses us); the message says why, in one line."""


class Connection(Protocol):
    """What the store needs from a connection (sqlite3.Connection has it; so has `_PostgresConnection`)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ...) -> Any: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]], /) -> Any: ...


def is_postgres(target: str | Path) -> bool:
    return str(target).startswith(POSTGRES_SCHEMES)


def redact(url: str) -> str:
    """`url` without its password, given before the host or as `?password=` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is not None:
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{parts.username}:***@{host}")
    query = [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(query, safe="/*")))


def sqlite_path(target: str | Path) -> Path:
    """The file of a path or `sqlite:///PATH` target (`sqlite:////abs` and `sqlite:///rel` both work)."""
    text = str(target)
    return Path(text[len(SQLITE_SCHEME):]) if text.startswith(SQLITE_SCHEME) else Path(text)


class SQLiteEngine:
    """One SQLite file (WAL, foreign keys, `synchronous=FULL`); a fresh connection per call."""

    name = "sqlite"
    begin = "BEGIN IMMEDIATE"  # the write lock up front: the whole transaction is serialised
    lock = ""  # ... so no row lock is needed
    position = "rowid"
    integrity_errors: tuple[type[Exception], ...] = (sqlite3.IntegrityError,)

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"{SQLITE_SCHEME}{path}"
        path.parent.mkdir(parents=True, exist_ok=True)

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

    def create_schema(self) -> None:
        with self.connect() as conn:
            conn.execute("PRAGMA journal_mode = WAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise SchemaError(f"{self.path}: database schema version {version} is newer than this "
                                  f"app's {SCHEMA_VERSION}")
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{sqlite_schema()}\n{_missing_columns(conn)}"
                f"PRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;"
            )

    def integrity_check(self) -> str:
        with self.connect() as conn:
            return ", ".join(row[0] for row in conn.execute("PRAGMA integrity_check"))

    def table_names(self, conn: Connection) -> set[str]:
        """Every table in the database (the store's and any side table beside them)."""
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        return {row[0] for row in rows}

    def reset_sequences(self, conn: Connection) -> None:
        """Nothing to do: AUTOINCREMENT continues after the largest id inserted."""


def _missing_columns(conn: sqlite3.Connection) -> str:
    """ALTER statements for columns an older database lacks (`ratings.hidden`, version 1)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(ratings)")}
    if columns and "hidden" not in columns:
        return "ALTER TABLE ratings ADD COLUMN hidden TEXT NOT NULL DEFAULT '';\n"
    return ""


class Row:
    """A result row read by position or by column name, like sqlite3.Row (and `dict(row)` works)."""

    __slots__ = ("_index", "_values")

    def __init__(self, index: dict[str, int], values: Sequence[Any]) -> None:
        self._index, self._values = index, values

    def __getitem__(self, key: int | str) -> Any:
        return self._values[key if isinstance(key, int) else self._index[key]]

    def keys(self) -> list[str]:
        return list(self._index)


def _row_factory(cursor: Any) -> Any:
    index = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: Row(index, values)


_PLACEHOLDER = re.compile(r"\?")


class _PostgresConnection:
    """A pooled psycopg connection that speaks the store's SQL: `?` placeholders become `%s`."""

    def __init__(self, conn: Any) -> None:
        self.raw = conn

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Any:
        if not parameters:
            return self.raw.execute(sql)
        return self.raw.execute(_PLACEHOLDER.sub("%s", sql), parameters)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.raw.cursor().executemany(_PLACEHOLDER.sub("%s", sql), rows)


_pools: dict[str, ConnectionPool] = {}
_pools_lock = threading.Lock()


def _reason(error: Exception) -> str:
    """A psycopg error as one line."""
    return " ".join(str(error).split()) or type(error).__name__


def _configure(conn: Any) -> None:
    from psycopg.types.string import TextLoader

    conn.autocommit = True  # transactions are explicit (BEGIN ... COMMIT), as on SQLite
    conn.row_factory = _row_factory
    conn.adapters.register_loader("json", TextLoader)  # JSON columns read back as their text


def _pool(url: str) -> ConnectionPool:
    """The process's connection pool for `url` (opened on first use, shared by every thread).

    A first direct connection fails fast with the server's reason (the pool would only time out)."""
    with _pools_lock:
        if url not in _pools:
            import psycopg
            from psycopg_pool import ConnectionPool

            try:
                psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S).close()
            except psycopg.Error as error:
                raise DatabaseUnavailable(f"cannot open the rater store {redact(url)}: "
                                          f"{_reason(error)}") from None

            _pools[url] = ConnectionPool(url, min_size=1, max_size=POOL_MAX_SIZE, configure=_configure,
                                         open=True, name="melasma-store")
        return _pools[url]


def close_pool(url: str) -> None:
    """Close this process's connections to `url` (tests before dropping a database; servers on exit)."""
    with _pools_lock:
        pool = _pools.pop(url, None)
    if pool is not None:
        pool.close()


class PostgresEngine:
    """A PostgreSQL database shared by several app processes; each process pools its connections.

    Writes lock the photo's row (`SELECT ... FOR UPDATE`) so that "check complete + write + audit"
    is serialised per photo, as SQLite's `BEGIN IMMEDIATE` serialises the whole file.
    """

    name = "postgresql"
    begin = "BEGIN"
    lock = " FOR UPDATE"
    position = "position"
    path = None

    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        self.integrity_errors: tuple[type[Exception], ...] = (psycopg.IntegrityError,)

    @contextmanager
    def connect(self) -> Iterator[_PostgresConnection]:
        """A connection from the pool, in autocommit mode, rows readable by index and by name."""
        with _pool(self.url).connection() as conn:
            yield _PostgresConnection(conn)

    def create_schema(self) -> None:
        """Create the tables once; concurrent app processes wait on an advisory lock. A server that
        refuses (no CREATE privilege, ...) is a `DatabaseUnavailable` line, not a traceback."""
        import psycopg

        try:
            self._create_schema()
        except psycopg.Error as error:
            raise DatabaseUnavailable(f"cannot set up the rater store {redact(self.url)}: "
                                      f"{_reason(error)}") from None

    def _create_schema(self) -> None:
        with self.connect() as conn:
            conn.execute("BEGIN")
            try:
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('melasma rating store schema'))")
                exists = conn.execute("SELECT to_regclass('melasma_schema') IS NOT NULL").fetchone()[0]
                version = conn.execute("SELECT max(version) FROM melasma_schema").fetchone()[0] \
                    if exists else None
                if version is not None and version > SCHEMA_VERSION:
                    raise SchemaError(f"{redact(self.url)}: database schema version {version} is newer "
                                      f"than this app's {SCHEMA_VERSION}")
                if version != SCHEMA_VERSION:
                    conn.execute(postgres_schema())
                    conn.execute("DELETE FROM melasma_schema")
                    conn.execute("INSERT INTO melasma_schema (version) VALUES (?)", (SCHEMA_VERSION,))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def table_names(self, conn: Connection) -> set[str]:
        """Every table in the current schema (the store's, its version table and any side table)."""
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        return {row[0] for row in rows} - {"melasma_schema"}

    def integrity_check(self) -> str:
        """"ok" when every constraint is validated and every append-only trigger enabled."""
        with self.connect() as conn:
            problems = [f"constraint {row[0]} not validated" for row in conn.execute(
                "SELECT conname FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace"
                " WHERE n.nspname = current_schema() AND NOT c.convalidated")]
            problems += [f"trigger {row[0]} disabled" for row in conn.execute(
                "SELECT tgname FROM pg_trigger WHERE tgname LIKE '%append_only' AND tgenabled = 'D'")]
        return ", ".join(problems) or "ok"

    def reset_sequences(self, conn: Connection) -> None:
        """Move each identity column past the largest id a copy inserted."""
        for table, column in (("images", "position"), ("rating_audit", "id"), ("adjudications", "id")):
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"
                f" (SELECT COALESCE(max({column}), 0) + 1 FROM {table}), false)"
            )


Engine = SQLiteEngine | PostgresEngine


def open_engine(target: str | Path) -> Engine:
    """The engine for a file path, `sqlite:///PATH` or `postgresql://...` URL."""
    if is_postgres(target):
        return PostgresEngine(str(target))
    return SQLiteEngine(sqlite_path(target))
