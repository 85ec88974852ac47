"""The Annotate tab served live and driven through gradio_client: ingest, 3 raters x 50 parallel
submissions stored exactly once, errors that store nothing, blindness, sign-in identity, export."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from annotation.store import RatingStore
from live_app import free_port
from melasma.settings import Settings
from melasma.ui.annotate import AnnotateTab, build_annotate_tab

pytestmark = pytest.mark.live

N_IMAGES = 50
API_NAMES = {"/ingest", "/next_image", "/submit_rating", "/agreement", "/machine_agreement", "/export", "/photos",
             "/adjudicate",
             "/request_rerate"}


@contextmanager
def served(
    settings: Settings, auth: list[tuple[str, str]] | None = None
) -> Iterator[tuple[AnnotateTab, str]]:
    """Only the Annotate tab in a Blocks of its own, on a free port; yields (tab, url)."""
    with gr.Blocks() as demo, gr.Tab("Annotate"):
        tab = build_annotate_tab(settings)
    demo.queue(default_concurrency_limit=2)
    demo.launch(prevent_thread_lock=True, server_port=free_port(), quiet=True, auth=auth,
                allowed_paths=[str(settings.data_dir)])
    try:
        yield tab, demo.local_url
    finally:
        demo.close()


def photo_zip(path: Path, n: int) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(n):
            buffer = io.BytesIO()
            pixels = np.random.default_rng(1000 + i).integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(buffer, format="PNG")
            zf.writestr(f"photos/{i:03d}.png", buffer.getvalue())
    return path


def scores_for(rater_index: int, image_id: str) -> list[int]:
    """12 valid scores that differ between raters and images (area 0-6, darkness/homogeneity 0-4)."""
    seed = int(image_id[:8], 16) + rater_index
    return [(seed + i) % (7 if i % 3 == 0 else 5) for i in range(12)]


def rate_everything(url: str, rater_index: int, rater: str) -> list[str]:
    """Rate until no photo is left; returns the image ids this rater submitted."""
    client = Client(url, verbose=False, download_files=False)
    submitted = []
    image_id, photo, _ = client.predict(rater, api_name="/next_image")
    while image_id:
        assert photo["url"].endswith(f"{image_id}.jpg")
        entry, image_id, photo, _ = client.predict(
            rater, image_id, *scores_for(rater_index, image_id), api_name="/submit_rating"
        )
        assert entry["rater"] == rater and entry["revision"] == 1
        submitted.append(entry["image_id"])
    return submitted


def test_three_raters_in_parallel_through_the_live_app(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with served(settings) as (tab, url):
        client = Client(url, verbose=False, download_files=str(tmp_path / "dl"))
        assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == API_NAMES

        summary = client.predict([handle_file(str(photo_zip(tmp_path / "batch.zip", N_IMAGES)))],
                                 "P-1", "2024-06-01", api_name="/ingest")
        assert (summary["added"], summary["duplicates"], summary["errors"]) == (N_IMAGES, 0, [])
        store: RatingStore = tab.store
        first = store.images()[0].id

        # Errors through the API: clear message, nothing stored.
        with pytest.raises(AppError, match="not in the list of choices"):
            client.predict("mallory", api_name="/next_image")
        with pytest.raises(AppError, match="unknown image id"):
            client.predict("rater1", "0" * 16, *[1] * 12, api_name="/submit_rating")
        with pytest.raises(AppError, match="not in the list of choices"):
            client.predict("rater1", first, *([7] + [1] * 11), api_name="/submit_rating")
        with pytest.raises(AppError, match="no photo selected"):
            client.predict("rater1", "", *[1] * 12, api_name="/submit_rating")
        assert store.ratings() == []

        # Blind: after rater1's rating, nothing rater2 can call returns it.
        entry, *_ = client.predict("rater1", first, *scores_for(0, first), api_name="/submit_rating")
        next_for_2 = client.predict("rater2", api_name="/next_image")
        assert next_for_2[0] == first and str(entry["masi"]) not in next_for_2[2]
        report, plot = client.predict(api_name="/agreement")
        assert report["complete"] == 0 and "masi_icc" not in report and plot is None

        with ThreadPoolExecutor(3) as pool:
            jobs = [pool.submit(rate_everything, url, i, rater)
                    for i, rater in enumerate(settings.raters)]
            submitted = [job.result() for job in jobs]
        assert [len(s) for s in submitted] == [N_IMAGES - 1, N_IMAGES, N_IMAGES]
        ratings = store.ratings()
        assert len(ratings) == 3 * N_IMAGES
        assert len({(r.image_id, r.rater) for r in ratings}) == 3 * N_IMAGES
        assert all(r.revision == 1 for r in ratings)
        assert len(store.audit_trail()) == 3 * N_IMAGES
        for index, rater in enumerate(settings.raters):
            mine = [r for r in ratings if r.rater == rater]
            assert all(r.scores["forehead"]["area"] == scores_for(index, r.image_id)[0] for r in mine)

        report, plot = client.predict(api_name="/agreement")
        assert report["complete"] == N_IMAGES and report["masi_icc"]["2,1"]["icc"] is not None
        assert plot is not None
        (manifest, ratings_csv), handed = client.predict(api_name="/export")
        assert Path(manifest).read_text().count("\n") == N_IMAGES + 1
        assert Path(ratings_csv).read_text().count("\n") == 3 * N_IMAGES * 4 + 1
        assert Path(handed).name == "manifest.csv" and Path(handed).is_relative_to(settings.exports_dir)


def test_signed_in_rater_is_the_login(tmp_path: Path) -> None:
    auth = [("rater1", "pw-1"), ("rater2", "pw-2"), ("intruder", "pw-3"), ("boss", "pw-4")]
    settings = Settings(data_dir=tmp_path / "data", auth=tuple(auth), coordinators=("boss",),
                        raters=("rater1", "rater2"), ratings_per_image=2)
    with served(settings, auth=auth) as (tab, url):
        boss = Client(url, auth=("boss", "pw-4"), verbose=False, download_files=str(tmp_path / "dl"))
        boss.predict([handle_file(str(photo_zip(tmp_path / "one.zip", 1)))], "", "", api_name="/ingest")
        rater2 = Client(url, auth=("rater2", "pw-2"), verbose=False, download_files=str(tmp_path / "dl"))
        image_id, _, status = rater2.predict(None, api_name="/next_image")
        assert "rater2" in status
        entry, *_ = rater2.predict(None, image_id, *[2] * 12, api_name="/submit_rating")
        assert entry["rater"] == "rater2"
        with pytest.raises(AppError, match="signed in as 'rater2'; cannot rate as 'rater1'"):
            rater2.predict("rater1", image_id, *[1] * 12, api_name="/submit_rating")
        intruder = Client(url, auth=("intruder", "pw-3"), verbose=False, download_files=str(tmp_path / "dl"))
        with pytest.raises(AppError, match="'intruder' is not one of the raters of this study"):
            intruder.predict(None, image_id, *[1] * 12, api_name="/submit_rating")
        assert [(r.rater, r.revision) for r in tab.store.ratings()] == [("rater2", 1)]
