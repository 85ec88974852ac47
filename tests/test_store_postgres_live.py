"""Two app processes behind one PostgreSQL database, driven live through gradio_client: 3 raters x
50 submissions in parallel, each rater's calls alternating between the two servers; every rating
stored exactly once. The servers have data folders of their own whose `photos/` is one shared
folder (the layout docs/postgres.md describes for several app servers)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from live_app import free_port
from test_annotation_live import N_IMAGES, photo_zip, scores_for

from annotation.store import RatingStore
from melasma.settings import Settings

pytestmark = pytest.mark.live

REPO = Path(__file__).resolve().parents[1]

#: One app process: the Annotate tab of `Settings(data_dir=argv[1], database_url=argv[2])` on port
#: argv[3]; prints "ready" once it listens, serves until its stdin closes.
APP = """
import sys
from pathlib import Path

import gradio as gr

from melasma.settings import Settings
from melasma.ui.annotate import build_annotate_tab

settings = Settings(data_dir=Path(sys.argv[1]), database_url=sys.argv[2])
with gr.Blocks() as demo:
    with gr.Tab("Annotate"):
        build_annotate_tab(settings)
demo.queue(default_concurrency_limit=2)
demo.launch(prevent_thread_lock=True, server_port=int(sys.argv[3]), quiet=True,
            allowed_paths=[str(settings.data_dir)])
print("ready", flush=True)
sys.stdin.read()
demo.close()
"""


@contextmanager
def app_process(data_dir: Path, database_url: str) -> Iterator[str]:
    """Start one app process; yields its URL; stops it afterwards."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-c", APP, str(data_dir), database_url, str(port)], cwd=REPO,
                               env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "ready", "the app process did not start"
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def rate_across(urls: list[str], rater_index: int, rater: str) -> list[tuple[str, int]]:
    """Rate until no photo is left, call k going to server k mod 2; returns (image id, server) pairs."""
    clients = [Client(url, verbose=False, download_files=False) for url in urls]
    submitted = []
    image_id, photo, _ = clients[0].predict(rater, api_name="/next_image")
    while image_id:
        server = len(submitted) % len(clients)
        entry, image_id, photo, _ = clients[server].predict(
            rater, image_id, *scores_for(rater_index, image_id), api_name="/submit_rating"
        )
        assert entry["rater"] == rater and entry["revision"] == 1
        assert not image_id or photo["url"].endswith(f"{image_id}.jpg")  # the shared photo, served here
        submitted.append((entry["image_id"], server))
    return submitted


def test_two_app_processes_share_one_database(tmp_path: Path, postgres_url: str) -> None:
    shared_photos = tmp_path / "shared-photos"
    shared_photos.mkdir()
    folders = [tmp_path / "server-a", tmp_path / "server-b"]
    for folder in folders:
        folder.mkdir()
        (folder / "photos").symlink_to(shared_photos, target_is_directory=True)
    settings = Settings(data_dir=folders[0], database_url=postgres_url)

    with ExitStack() as stack:
        urls = [stack.enter_context(app_process(folder, postgres_url)) for folder in folders]
        coordinator = Client(urls[1], verbose=False, download_files=str(tmp_path / "dl"))
        summary = coordinator.predict([handle_file(str(photo_zip(tmp_path / "batch.zip", N_IMAGES)))],
                                      "P-1", "2024-06-01", api_name="/ingest")
        assert (summary["added"], summary["errors"]) == (N_IMAGES, [])
        assert len(list(shared_photos.glob("*.jpg"))) == N_IMAGES  # ingested on B, served by A too

        with ThreadPoolExecutor(3) as pool:
            jobs = [pool.submit(rate_across, urls, i, rater)
                    for i, rater in enumerate(settings.raters)]
            submitted = [job.result() for job in jobs]

        report, _ = Client(urls[0], verbose=False, download_files=False).predict(api_name="/agreement")
        assert report["complete"] == N_IMAGES

    assert [len(s) for s in submitted] == [N_IMAGES] * 3
    assert all({server for _, server in s} == {0, 1} for s in submitted)  # both servers wrote
    store = RatingStore(postgres_url)
    ratings = store.ratings()
    assert len(ratings) == 3 * N_IMAGES  # 0 lost
    assert len({(r.image_id, r.rater) for r in ratings}) == 3 * N_IMAGES  # 0 duplicated
    assert all(r.revision == 1 for r in ratings) and len(store.audit_trail()) == 3 * N_IMAGES
    for index, rater in enumerate(settings.raters):
        mine = [r for r in ratings if r.rater == rater]
        assert all(r.scores["forehead"]["area"] == scores_for(index, r.image_id)[0] for r in mine)
