"""Rater-store write throughput: ratings per second with 1, 4 and 16 concurrent writers, on an SQLite
file and on a PostgreSQL database, side by side (the same run, the same machine).

Each writer is a thread submitting complete ratings through `annotation.workflow.submit` (the app's
path: validation, "check complete + write + audit" in one transaction) for `--seconds`; writers rate
the same photos from different starting points, so some contend for one photo's row. Durability as
the app runs: SQLite WAL with synchronous=FULL, PostgreSQL with its default synchronous_commit=on.

    python benchmarks/store_throughput.py [--seconds 5] [--postgres postgresql://user@host/db]

Without --postgres a throw-away cluster is started in a temporary folder (needs PostgreSQL's
binaries: Debian's `postgresql` package).
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation import workflow
from annotation.db.scratch import PostgresServer, ScratchCluster
from annotation.store import ImageRecord, RatingStore, utc_now
from melasma.masi import REGIONS
from melasma.settings import Settings

WRITERS = (1, 4, 16)
N_IMAGES = 400


def run_writers(store: RatingStore, writers: int, seconds: float) -> float:
    """Ratings per second stored by `writers` threads in `seconds` on a fresh store."""
    raters = tuple(f"w{i}" for i in range(writers))
    # k above the writer count: photos stay open, so a writer that comes round again revises.
    settings = Settings(data_dir=Path(tempfile.gettempdir()), raters=raters, ratings_per_image=writers + 1)
    ids = [secrets.token_hex(8) for _ in range(N_IMAGES)]
    for image_id in ids:
        store.add_image(ImageRecord(image_id, "bench.jpg", 64, 64, None, None, utc_now()))
    start, stop, counts = threading.Barrier(writers + 1), threading.Event(), [0] * writers

    failures: list[BaseException] = []

    def write(k: int) -> None:
        start.wait()
        position = k * N_IMAGES // writers
        try:
            while not stop.is_set():
                area = counts[k] % 7
                scores = {r: {"area": area, "darkness": 2, "homogeneity": 1} for r in REGIONS}
                workflow.submit(store, settings, raters[k], ids[position % N_IMAGES], scores)
                counts[k] += 1
                position += 1
        except Exception as error:  # noqa: BLE001  (reported by the main thread)
            failures.append(error)
            stop.set()

    threads = [threading.Thread(target=write, args=(k,)) for k in range(writers)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    assert not failures, failures[0]
    elapsed = time.perf_counter() - began
    stored = len(store.audit_trail())
    assert stored == sum(counts), f"{stored} audit rows for {sum(counts)} acknowledged ratings"
    return stored / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="how long each configuration writes")
    parser.add_argument("--postgres", help="a PostgreSQL URL where a scratch database may be created")
    args = parser.parse_args()

    server = PostgresServer(args.postgres) if args.postgres else ScratchCluster.start()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            for writers in WRITERS:
                sqlite = run_writers(RatingStore(Path(folder) / f"w{writers}.sqlite"), writers, args.seconds)
                url = server.create_database()
                try:
                    postgres = run_writers(RatingStore(url), writers, args.seconds)
                finally:
                    server.drop_database(url)
                rows.append((writers, sqlite, postgres))
    finally:
        if isinstance(server, ScratchCluster):
            server.stop()

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
          f"{args.seconds:g} s per configuration, threads as writers")
    print(f"{'writers':>7}  {'SQLite ratings/s':>16}  {'PostgreSQL ratings/s':>20}  {'PG / SQLite':>11}")
    for writers, sqlite, postgres in rows:
        print(f"{writers:>7}  {sqlite:>16.1f}  {postgres:>20.1f}  {postgres / sqlite:>11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
