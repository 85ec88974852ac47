"""Two app processes behind one PostgreSQL database, driven live through gradio_client: 3 raters x
50 submissions in parallel, each rater's calls alternating between the two servers, every rating
stored exactly once; and one of the two killed with SIGKILL mid-stream while raters go on with the
other: every acknowledged rating kept. The servers have data folders of their own whose `photos/`
is one shared folder (the layout docs/postgres.md describes for several app servers)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from test_annotation_live import N_IMAGES, photo_zip, scores_for

from annotation.store import RatingStore
from live_app import free_port
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
def app_process(data_dir: Path, database_url: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Start one app process; yields its URL and process; stops it afterwards."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-c", APP, str(data_dir), database_url, str(port)], cwd=REPO,
                               env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "ready", "the app process did not start"
        yield f"http://127.0.0.1:{port}/", process
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


def server_folders(tmp_path: Path) -> list[Path]:
    """Two data folders whose `photos` is one shared folder."""
    shared_photos = tmp_path / "shared-photos"
    shared_photos.mkdir()
    folders = [tmp_path / "server-a", tmp_path / "server-b"]
    for folder in folders:
        folder.mkdir()
        (folder / "photos").symlink_to(shared_photos, target_is_directory=True)
    return folders


def test_two_app_processes_share_one_database(tmp_path: Path, postgres_url: str) -> None:
    folders = server_folders(tmp_path)
    shared_photos = tmp_path / "shared-photos"
    settings = Settings(data_dir=folders[0], database_url=postgres_url)

    with ExitStack() as stack:
        urls = [stack.enter_context(app_process(folder, postgres_url))[0] for folder in folders]
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


KILL_AFTER = 15
N_KILL_IMAGES = 20


def test_sigkill_of_one_app_process_keeps_every_acknowledged_rating(tmp_path: Path, postgres_url: str) -> None:
    folders = server_folders(tmp_path)
    settings = Settings(data_dir=folders[0], database_url=postgres_url)
    acks: list[tuple[str, str, int, float]] = []
    enough, lock = threading.Event(), threading.Lock()

    def rate(rater_index: int, rater: str, urls: list[str]) -> None:
        """Alternate between the servers; once server A is gone, go on with B alone."""
        clients = [Client(url, verbose=False, download_files=False) for url in urls]
        image_id, _, _ = clients[1].predict(rater, api_name="/next_image")
        calls = 0
        while image_id:
            calls += 1
            try:
                entry, next_id, _, _ = clients[calls % len(clients)].predict(
                    rater, image_id, *scores_for(rater_index, image_id), api_name="/submit_rating")
            except AppError as error:  # A had stored the unacknowledged call and the photo closed
                assert len(clients) == 1 and "closed" in str(error), error
                image_id, _, _ = clients[0].predict(rater, api_name="/next_image")
                continue
            except Exception:  # noqa: BLE001  (server A was killed: this call is unacknowledged)
                assert len(clients) == 2, "server B failed"
                clients = clients[1:]  # the same photo again, on B
                continue
            with lock:
                acks.append((entry["image_id"], rater, entry["revision"], entry["masi"]))
                if len(acks) >= KILL_AFTER:
                    enough.set()
            image_id = next_id

    with ExitStack() as stack:
        (url_a, process_a), (url_b, _) = [stack.enter_context(app_process(f, postgres_url)) for f in folders]
        summary = Client(url_b, verbose=False, download_files=str(tmp_path / "dl")).predict(
            [handle_file(str(photo_zip(tmp_path / "batch.zip", N_KILL_IMAGES)))], "", "", api_name="/ingest")
        assert summary["added"] == N_KILL_IMAGES
        with ThreadPoolExecutor(3) as pool:
            jobs = [pool.submit(rate, i, rater, [url_a, url_b]) for i, rater in enumerate(settings.raters)]
            enough.wait()
            os.kill(process_a.pid, signal.SIGKILL)
            for job in jobs:
                job.result()
        assert process_a.wait(timeout=60) == -signal.SIGKILL

    store = RatingStore(postgres_url)
    assert store.integrity_check() == "ok"
    for image_id, rater, revision, masi in acks:
        rating = store.get_rating(image_id, rater)
        assert rating is not None and rating.revision >= revision
        trail = {e.revision: e for e in store.audit_trail(image_id=image_id, rater=rater)}
        assert trail[revision].new_masi == pytest.approx(masi)
        assert sorted(trail) == list(range(1, rating.revision + 1))
    ratings = store.ratings()
    assert len(ratings) == 3 * N_KILL_IMAGES  # every photo rated by every rater, none twice
    assert len({(r.image_id, r.rater) for r in ratings}) == 3 * N_KILL_IMAGES
    assert len({(image, rater) for image, rater, _, _ in acks}) >= 3 * N_KILL_IMAGES - 3  # <= 1 lost call each
