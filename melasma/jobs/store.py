"""The job table: one SQLite file (WAL) in the data folder, shared by every process that trains.

SQLite is both the record (a restarted app shows past runs) and the channel between the worker and
the training code: progress, log lines and epoch rows are written here as they happen, the cancel
flag is read from here every batch, so the training may run in this thread or in a forked ZeroGPU
process alike. Each call opens its own short connection, which keeps the store thread- and fork-safe.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from melasma.errors import UserError
from melasma.jsonable import dumps

STATES: tuple[str, ...] = ("queued", "running", "done", "failed", "cancelled")
FINAL_STATES: frozenset[str] = frozenset({"done", "failed", "cancelled"})
INTERRUPTED = ("interrupted by restart: the app running this job stopped; the job is not restarted "
               "by itself, submit it again if needed")

#: owner string -> whether the process that wrote it is gone
OrphanTest = Callable[[str], bool]

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    config TEXT NOT NULL,
    run_dir TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    progress REAL NOT NULL DEFAULT 0,
    arch TEXT,
    epoch INTEGER,
    error TEXT,
    summary TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    submitted_by TEXT,
    worker_pid INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, seq);
CREATE TABLE IF NOT EXISTS job_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    time REAL NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_events_job ON job_events (job_id, kind, seq);
"""


#: columns added after the first release: (name, SQL type), added to older files on open
ADDED_COLUMNS: tuple[tuple[str, str], ...] = (("submitted_by", "TEXT"), ("worker_pid", "INTEGER"))


@dataclass(frozen=True)
class Job:
    """One job's row (`JobStore.get`): config and summary decoded, times as Unix seconds."""

    id: str
    state: str
    config: dict[str, Any]
    run_dir: str
    created: float
    started: float | None
    finished: float | None
    progress: float
    arch: str | None
    epoch: int | None
    error: str | None
    summary: list[dict[str, Any]]
    cancel_requested: bool
    owner: str | None
    submitted_by: str | None
    worker_pid: int | None

    def to_json(self) -> dict[str, Any]:
        """The row as JSON-able values."""
        return dataclasses.asdict(self)


class JobNotFoundError(UserError):
    """An id that names no job in this data folder."""


class QueueFullError(UserError):
    """Too many jobs waiting or running (for this user, or in total); the message says which."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobStore:
    """Typed access to ``jobs.sqlite``; every method is one short transaction."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            present = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
            for name, kind in ADDED_COLUMNS:
                if name not in present:
                    db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA synchronous=NORMAL")
            yield db
        finally:
            db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # -- writing -------------------------------------------------------------------------------
    def add(self, job_id: str, config: dict[str, Any], run_dir: str | Path, *, submitted_by: str | None = None,
            max_jobs: int | None = None, max_jobs_per_user: int | None = None) -> None:
        """Queue a new job (its first log line: "queued <id>"); QueueFullError when `max_jobs` jobs
        (or `max_jobs_per_user` of `submitted_by`) are already queued or running."""
        now = time.time()
        with self._transaction() as db:
            active = "state IN ('queued', 'running')"
            total = db.execute(f"SELECT COUNT(*) FROM jobs WHERE {active}").fetchone()[0]
            if max_jobs is not None and total >= max_jobs:
                raise QueueFullError(f"{total} training jobs are already waiting or running (the limit is "
                                     f"{max_jobs}): try again when one has finished")
            mine = db.execute(f"SELECT COUNT(*) FROM jobs WHERE {active} AND submitted_by IS ?",
                              (submitted_by,)).fetchone()[0]
            if max_jobs_per_user is not None and mine >= max_jobs_per_user:
                raise QueueFullError(f"you already have {mine} training job(s) waiting or running (the limit "
                                     f"is {max_jobs_per_user}): cancel one or wait until one has finished")
            db.execute(
                "INSERT INTO jobs (id, state, config, run_dir, created, submitted_by)"
                " VALUES (?, 'queued', ?, ?, ?, ?)",
                (job_id, dumps(config), str(run_dir), now, submitted_by),
            )
            db.execute("INSERT INTO job_events (job_id, kind, time, payload) VALUES (?, 'log', ?, ?)",
                       (job_id, now, dumps(f"queued {job_id}")))

    def claim(self, owner: str, is_orphan: OrphanTest) -> str | None:
        """Start the oldest queued job unless one is running (one GPU, one job); return its id.

        Running jobs whose owner process is gone (`is_orphan(owner)`) are failed first.
        """
        with self._transaction() as db:
            self._fail_orphans(db, is_orphan)
            if db.execute("SELECT 1 FROM jobs WHERE state = 'running' LIMIT 1").fetchone():
                return None
            row = db.execute("SELECT id FROM jobs WHERE state = 'queued' ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET state = 'running', owner = ?, started = ? WHERE id = ?",
                (owner, time.time(), row["id"]),
            )
            return str(row["id"])

    def fail_orphans(self, is_orphan: OrphanTest) -> list[str]:
        """Mark running jobs of dead processes failed; return their ids."""
        with self._transaction() as db:
            return self._fail_orphans(db, is_orphan)

    @staticmethod
    def _fail_orphans(db: sqlite3.Connection, is_orphan: OrphanTest) -> list[str]:
        rows = db.execute("SELECT id, owner FROM jobs WHERE state = 'running'").fetchall()
        orphans = [row["id"] for row in rows if is_orphan(row["owner"] or "")]
        now = time.time()
        for job_id in orphans:
            db.execute(
                "UPDATE jobs SET state = 'failed', error = ?, finished = ? WHERE id = ?",
                (INTERRUPTED, now, job_id),
            )
            db.execute(
                "INSERT INTO job_events (job_id, kind, time, payload) VALUES (?, 'log', ?, ?)",
                (job_id, now, dumps(f"failed: {INTERRUPTED}")),
            )
        return orphans

    def update(self, job_id: str, *, progress: float | None = None, arch: str | None = None,
               epoch: int | None = None) -> None:
        """Record where a running job is."""
        with self._connect() as db:
            db.execute(
                "UPDATE jobs SET progress = COALESCE(?, progress), arch = COALESCE(?, arch),"
                " epoch = COALESCE(?, epoch) WHERE id = ? AND state = 'running'",
                (progress, arch, epoch, job_id),
            )

    def set_worker(self, job_id: str, pid: int | None) -> None:
        """Record the process id of the worker process training `job_id`."""
        with self._connect() as db:
            db.execute("UPDATE jobs SET worker_pid = ? WHERE id = ?", (pid, job_id))

    def add_event(self, job_id: str, kind: str, payload: Any) -> None:
        """Append a log line (`kind="log"`, a str) or a history row (`kind="epoch"`, a dict)."""
        with self._connect() as db:
            db.execute(
                "INSERT INTO job_events (job_id, kind, time, payload) VALUES (?, ?, ?, ?)",
                (job_id, kind, time.time(), dumps(payload)),
            )

    def finish(self, job_id: str, state: str, *, summary: list[dict[str, Any]] | None = None,
               error: str | None = None) -> bool:
        """Move a running job to a final state; False when it was no longer running."""
        if state not in FINAL_STATES:
            raise ValueError(f"a job finishes as one of {sorted(FINAL_STATES)}, got {state!r}")
        with self._connect() as db:
            cursor = db.execute(
                "UPDATE jobs SET state = ?, summary = ?, error = ?, finished = ?,"
                " progress = CASE WHEN ? = 'done' THEN 1.0 ELSE progress END"
                " WHERE id = ? AND state = 'running'",
                (state, None if summary is None else dumps(summary), error, time.time(), state, job_id),
            )
            return cursor.rowcount == 1

    def cancel(self, job_id: str) -> str:
        """Cancel a queued job at once, flag a running one (its training stops at the next batch)."""
        with self._transaction() as db:
            state = self._state(db, job_id)
            if state == "queued":
                now = time.time()
                db.execute("UPDATE jobs SET state = 'cancelled', finished = ? WHERE id = ?", (now, job_id))
                db.execute("INSERT INTO job_events (job_id, kind, time, payload) VALUES (?, 'log', ?, ?)",
                           (job_id, now, dumps("cancelled before it started")))
                return "cancelled"
            if state == "running":
                db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
            return state

    # -- reading -------------------------------------------------------------------------------
    @staticmethod
    def _state(db: sqlite3.Connection, job_id: str) -> str:
        row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError(f"no training job {job_id!r}")
        return str(row["state"])

    def cancel_requested(self, job_id: str) -> bool:
        """Whether someone asked this job to stop."""
        with self._connect() as db:
            row = db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(row and row["cancel_requested"])

    def get(self, job_id: str) -> Job:
        """The job's row with config and summary decoded."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError(f"no training job {job_id!r}")
        values = {field.name: row[field.name] for field in dataclasses.fields(Job)}
        values["config"] = json.loads(row["config"])
        values["summary"] = json.loads(row["summary"]) if row["summary"] else []
        values["cancel_requested"] = bool(row["cancel_requested"])
        return Job(**values)

    def events(self, job_id: str, kind: str, limit: int | None = None) -> list[Any]:
        """The job's events of one kind, oldest first (the last `limit` when given)."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT payload FROM job_events WHERE job_id = ? AND kind = ? ORDER BY seq DESC"
                + (" LIMIT ?" if limit is not None else ""),
                (job_id, kind) + ((limit,) if limit is not None else ()),
            ).fetchall()
        return [json.loads(row["payload"]) for row in reversed(rows)]

    def list(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest jobs first: id, state, progress, archs, created, finished."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT id, state, progress, config, created, finished FROM jobs ORDER BY seq DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            {"job_id": row["id"], "state": row["state"], "progress": row["progress"],
             "archs": json.loads(row["config"]).get("archs", []), "created": row["created"],
             "finished": row["finished"]}
            for row in rows
        ]


def owner_string(token: str) -> str:
    """`host|pid|token`: who is running a job."""
    return f"{socket.gethostname()}|{os.getpid()}|{token}"


def owner_is_dead(owner: str, live_tokens: set[str] | frozenset[str]) -> bool:
    """Whether the process named by `owner` is gone: another host (this folder has one), a pid that
    no longer exists, or this very process without a live runner of that token (a restart that
    reused the pid, e.g. pid 1 in a container)."""
    host, _, rest = owner.partition("|")
    pid_text, _, token = rest.partition("|")
    if host != socket.gethostname() or not pid_text.isdigit():
        return True
    pid = int(pid_text)
    if pid == os.getpid():
        return token not in live_tokens
    return not _pid_alive(pid)
