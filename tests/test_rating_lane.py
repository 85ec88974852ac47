"""A flood of Predict calls does not turn raters away: ratings have their own queue lane."""

from __future__ import annotations

import io
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from annotation.store import RatingStore
from live_app import live_app

pytestmark = pytest.mark.live

#: Many more /explain calls than a lane holds (the issue's flood was 70), sent at once.
FLOOD = 100
GOOD = [2, 2, 1] * 4


def photos_zip(path: Path, n: int) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(n):
            buffer = io.BytesIO()
            pixels = np.random.default_rng(500 + i).integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(buffer, format="PNG")
            archive.writestr(f"{i}.png", buffer.getvalue())
    return path


def flood_explain(url: str, photo: Path, n: int) -> list[int]:
    """Put `n` /explain calls on the queue at once, as browsers do (the photo uploaded once);
    returns the HTTP status of each join (200 queued, 503 queue full)."""
    with photo.open("rb") as handle:
        uploaded = httpx.post(f"{url}gradio_api/upload", files={"files": handle}).json()[0]
    config = httpx.get(f"{url}config").json()
    fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "explain")
    image = {"path": uploaded, "meta": {"_type": "gradio.FileData"}}

    def join(i: int) -> int:
        return httpx.post(f"{url}gradio_api/queue/join", timeout=None, json={
            "data": [image, "demo", "lrp"], "fn_index": fn_index, "session_hash": f"flood{i}",
            "event_data": None, "trigger_id": None}).status_code

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(join, range(n)))


def test_ratings_accepted_while_explain_floods_the_queue(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with live_app(data) as (url, client):
        client.predict([handle_file(str(photos_zip(tmp_path / "p.zip", 6)))], "", "", api_name="/ingest")
        face = next((data / "demo" / "images").glob("*.jpg"))
        joined = flood_explain(url, face, FLOOD)
        assert 503 in joined  # the Predict lane is full: it refuses more
        raters = {name: Client(url, verbose=False, download_files=False) for name in ("rater1", "rater2", "rater3")}

        def rate_all(name: str) -> int:
            rater, accepted = raters[name], 0
            image_id, _, _ = rater.predict(name, api_name="/next_image")
            while image_id:
                entry, image_id, _, _ = rater.predict(name, image_id, *GOOD, api_name="/submit_rating")
                accepted += entry["revision"] == 1
            return accepted

        with ThreadPoolExecutor(3) as pool:
            accepted = list(pool.map(rate_all, raters))
        waiting = httpx.get(f"{url}gradio_api/queue/status").json()["queue_size"]
        assert accepted == [6, 6, 6]  # before lanes: "Queue is full" (HTTP 503) for the raters
        assert len(RatingStore(data / "annotations.sqlite").ratings()) == 18
        print(f"{waiting} /explain calls still waiting when the 18 ratings were in")
