"""A real app on a free local port for tests: ``with live_app(tmp_path) as (url, client): ...``.

It launches through ``melasma.ui.app.serve`` (the code path of ``python app.py``) with
``prevent_thread_lock``, a data folder of the test's own, and afterwards closes the server and
stops the Train tab's job worker (cancelling any job still queued or running).
"""

from __future__ import annotations

import csv
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gradio_client import Client

from annotation import workflow
from annotation.ingest import ingest
from annotation.store import RatingStore
from melasma.data.synthetic import rater_scores
from melasma.jobs import JobRunner
from melasma.settings import Settings
from melasma.ui.app import serve


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def live_app(
    data_dir: Path,
    *,
    client_auth: tuple[str, str] | None = None,
    **settings: Any,
) -> Iterator[tuple[str, Client]]:
    """Serve the app on 127.0.0.1 with ``Settings(data_dir=data_dir, **settings)``; yield (url, client).

    ``client_auth``: (user, password) the client signs in with when ``auth`` is configured.
    """
    data_dir = Path(data_dir)
    demo = serve(
        Settings(data_dir=data_dir, **settings),
        host="127.0.0.1",
        port=free_port(),
        prevent_thread_lock=True,
        quiet=True,
    )
    try:
        url = demo.local_url
        client = Client(url, auth=client_auth, verbose=False, download_files=str(data_dir / "downloads"))
        yield url, client
    finally:
        demo.close()
        runner = JobRunner.shared(data_dir)  # the Train tab's worker: stop it with the server
        for job in runner.list_jobs():
            if job["state"] in ("queued", "running"):
                runner.cancel(job["job_id"])
        runner.close()


def rated_store(synth_dir: Path, settings: Settings, n: int = 24) -> None:
    """`n` synthetic photos (each its own patient, all three classes) rated by the three raters."""
    rows = list(csv.DictReader((synth_dir / "labels.csv").open()))[:n]
    store = RatingStore.for_settings(settings)
    for index, row in enumerate(rows):
        (image_id,) = ingest(store, settings.photos_dir, [synth_dir / row["image"]], patient_id=f"P{index}").added
        for k, rater in enumerate(settings.raters, start=1):
            workflow.submit(store, settings, rater, image_id, rater_scores(row, k))
