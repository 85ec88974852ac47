"""A writer process killed with SIGKILL mid-stream loses nothing it acknowledged and leaves a
sound database: on SQLite one writer, on PostgreSQL two writer processes sharing the database (the
second keeps writing while the first dies, then is killed too)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotation import workflow
from annotation.ingest import ingest
from annotation.store import RatingStore
from melasma.masi import REGIONS
from melasma.settings import Settings

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ACKS_BEFORE_KILL = 45

#: Submits ratings (new ones, then revisions) forever; prints one line per committed rating. Three of
#: four raters rate, so every photo stays open and revisions are allowed (a closed photo refuses them).
WRITER = """
import sys
from pathlib import Path

from annotation import workflow
from annotation.store import RatingStore
from melasma.masi import REGIONS
from melasma.settings import Settings

settings = Settings(data_dir=Path(sys.argv[1]), raters=("rater1", "rater2", "rater3", "rater4"),
                    ratings_per_image=4)
store = RatingStore(sys.argv[2])
ids = [image.id for image in store.images()]
for round_ in range(1, 1000):
    for image_id in ids:
        for k, rater in enumerate(settings.raters[:3]):
            area = (round_ + k) % 7
            scores = {r: {"area": area, "darkness": 2, "homogeneity": 1} for r in REGIONS}
            done = workflow.submit(store, settings, rater, image_id, scores)
            print(f"ack {image_id} {rater} {done.revision} {done.masi}", flush=True)
"""


def kill_after(writer: subprocess.Popen[str], n: int) -> list[list[str]]:
    """Read `n` acknowledgements, SIGKILL the writer, then read whatever it flushed before dying."""
    acks = []
    try:
        for line in writer.stdout:
            acks.append(line.split())
            if len(acks) == n:
                os.kill(writer.pid, signal.SIGKILL)
                break
        acks += [line.split() for line in writer.stdout]
    finally:
        writer.kill()
        writer.wait(timeout=60)
    assert writer.returncode == -signal.SIGKILL, writer.stderr.read()
    assert len(acks) >= n
    return acks


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_keeps_every_acknowledged_rating(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    settings = Settings(data_dir=tmp_path / "data", raters=("rater1", "rater2", "rater3", "rater4"),
                        ratings_per_image=4)
    target = request.getfixturevalue("postgres_url") if backend == "postgresql" else \
        str(settings.data_dir / "annotations.sqlite")
    store = RatingStore(target)
    photos = []
    for i in range(10):
        buffer = io.BytesIO()
        pixels = np.random.default_rng(i).integers(0, 256, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buffer, format="PNG")
        photos.append(tmp_path / f"p{i}.png")
        photos[-1].write_bytes(buffer.getvalue())
    assert len(ingest(store, settings.data_dir / "photos", photos).added) == 10

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(settings.data_dir), target], cwd=REPO, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2 if backend == "postgresql" else 1)
    ]
    # The first dies mid-stream; the second (PostgreSQL) has kept writing meanwhile and dies next.
    acks = [ack for writer in writers for ack in kill_after(writer, ACKS_BEFORE_KILL)]

    assert store.integrity_check() == "ok"
    with store.connect() as conn:
        if backend == "sqlite":
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        orphans = conn.execute("SELECT COUNT(*) FROM rating_audit a LEFT JOIN ratings r"
                               " ON r.image_id = a.image_id AND r.rater = a.rater WHERE r.rater IS NULL")
        assert orphans.fetchone()[0] == 0
    for _, image_id, rater, revision, masi in acks:
        rating = store.get_rating(image_id, rater)
        assert rating is not None and rating.revision >= int(revision)
        audit = {e.revision: e for e in store.audit_trail(image_id=image_id, rater=rater)}
        assert audit[int(revision)].new_masi == pytest.approx(float(masi))
        assert sorted(audit) == list(range(1, rating.revision + 1))

    # The database is writable again at once: no stale lock left behind.
    scores = {r: {"area": 1, "darkness": 1, "homogeneity": 1} for r in REGIONS}
    after = workflow.submit(store, settings, "rater1", acks[0][1], scores)
    assert after.revision >= 2
