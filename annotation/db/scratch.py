"""A throw-away PostgreSQL cluster in a temporary folder, for the tests and the benchmark.

`ScratchCluster.start()` runs Debian's (or any) `initdb` + `pg_ctl` from PATH or
/usr/lib/postgresql/*/bin, listening only on a Unix socket inside the folder (no TCP port to collide
with). As root, the server runs as the `postgres` user (PostgreSQL refuses to run as root).
`.create_database()` gives a fresh empty database and its URL; `.stop()` removes everything.
`PostgresServer(url)` does the same database handling on a server someone else runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from annotation.db.engines import close_pool


class ScratchClusterError(RuntimeError):
    """PostgreSQL is not installed here, or the scratch cluster would not start."""


def postgres_bin() -> Path | None:
    """The folder holding `initdb` and `pg_ctl` (PATH first, then the newest Debian version)."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                      key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    return versions[-1].parent if versions else None


def with_database(url: str, database: str) -> str:
    """`url` pointing at another database of the same server."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


@dataclass
class PostgresServer:
    """A server where we may create databases; `url` reaches one of its databases as a user who may."""

    url: str

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"melasma_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return with_database(self.url, name)

    def drop_database(self, url: str) -> None:
        """Close this process's pool to `url` and drop its database."""
        import psycopg

        close_pool(url)
        name = urlsplit(url).path.lstrip("/")
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class ScratchCluster(PostgresServer):
    """A running throw-away cluster; `url` reaches its `postgres` database as the superuser."""

    folder: Path
    bin_dir: Path

    @classmethod
    def start(cls) -> ScratchCluster:
        bin_dir = postgres_bin()
        if bin_dir is None:
            raise ScratchClusterError("PostgreSQL is not installed (no initdb / pg_ctl found)")
        folder = Path(tempfile.mkdtemp(prefix="melasma-pg-"))
        cluster = cls(f"postgresql://postgres@/postgres?host={folder}", folder, bin_dir)
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres", "postgres")
        try:
            cluster._run("initdb", "-D", str(folder / "data"), "-U", "postgres", "--auth=trust",
                         "-E", "UTF8", "--no-locale", "--no-sync")
            options = f"-k {folder} -c listen_addresses='' -c max_connections=200"
            cluster._run("pg_ctl", "-D", str(folder / "data"), "-l", str(folder / "server.log"),
                         "-o", options, "-w", "-t", "120", "start")
        except ScratchClusterError:
            cluster.stop()
            raise
        return cluster

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin_dir / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, check=False, capture_output=True, text=True)
        if done.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text()[-2000:] if log.is_file() else ""
            raise ScratchClusterError(f"{program} failed: {done.stderr.strip()} {tail}".strip())

    def stop(self) -> None:
        """Stop the server at once and delete the folder."""
        if (self.folder / "data" / "postmaster.pid").exists():
            try:
                self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop")
            except ScratchClusterError:
                pass  # already gone; the folder goes anyway
        shutil.rmtree(self.folder, ignore_errors=True)
