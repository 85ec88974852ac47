"""A writer process killed with SIGKILL mid-stream loses nothing it acknowledged and leaves a
sound database."""

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
store = RatingStore(settings.data_dir / "annotations.sqlite")
ids = [image.id for image in store.images()]
for round_ in range(1, 1000):
    for image_id in ids:
        for k, rater in enumerate(settings.raters[:3]):
            area = (round_ + k) % 7
            scores = {r: {"area": area, "darkness": 2, "homogeneity": 1} for r in REGIONS}
            done = workflow.submit(store, settings, rater, image_id, scores)
            print(f"ack {image_id} {rater} {done.revision} {done.masi}", flush=True)
"""


def test_sigkill_keeps_every_acknowledged_rating(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", raters=("rater1", "rater2", "rater3", "rater4"),
                        ratings_per_image=4)
    store = RatingStore(settings.data_dir / "annotations.sqlite")
    photos = []
    for i in range(10):
        buffer = io.BytesIO()
        pixels = np.random.default_rng(i).integers(0, 256, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buffer, format="PNG")
        photos.append(tmp_path / f"p{i}.png")
        photos[-1].write_bytes(buffer.getvalue())
    assert len(ingest(store, settings.data_dir / "photos", photos).added) == 10

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(settings.data_dir)], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    acks = []
    try:
        for line in writer.stdout:
            acks.append(line.split())
            if len(acks) == ACKS_BEFORE_KILL:
                os.kill(writer.pid, signal.SIGKILL)
                break
        acks += [line.split() for line in writer.stdout]  # anything flushed before the kill
    finally:
        writer.kill()
        writer.wait(timeout=10)
    assert writer.returncode == -signal.SIGKILL, writer.stderr.read()
    assert len(acks) >= ACKS_BEFORE_KILL

    assert store.integrity_check() == "ok"
    with store.connect() as conn:
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
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
