"""Roles on every endpoint of the live app in password mode (endpoint x role, through gradio_client),
and what no URL or endpoint hands out: stored photos, exports, other raters' scores, raw uploads."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from gradio.utils import get_upload_folder
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from live_app import live_app

pytestmark = pytest.mark.live

USERS = {"boss": "pw-boss", "ann": "pw-ann", "bob": "pw-bob", "eve": "pw-eve"}
ROLE_USER = {"coordinator": "boss", "rater": "ann", "visitor": "eve"}
GOOD = [2, 2, 1] * 4


def jpeg_with_gps(path: Path, seed: int) -> Path:
    """A small JPEG carrying EXIF GPS tags (what a phone writes)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 30.0)}  # GPSInfo: latitude
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    path.write_bytes(buffer.getvalue())
    return path


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Client], Path]]:
    """The whole app with passwords: boss coordinates, ann and bob rate (2 ratings a photo), eve visits."""
    data = tmp_path_factory.mktemp("roles")
    auth = tuple(USERS.items())
    with live_app(data, auth=auth, coordinators=("boss",), raters=("ann", "bob"), ratings_per_image=2,
                  client_auth=("boss", USERS["boss"])) as (url, boss):
        clients = {"boss": boss}
        for user in ("ann", "bob", "eve"):
            clients[user] = Client(url, auth=(user, USERS[user]), verbose=False,
                                   download_files=str(data / "downloads" / user))
        photos = [jpeg_with_gps(data / f"p{i}.jpg", i) for i in range(3)]
        summary = boss.predict([handle_file(str(p)) for p in photos], "P-1", "2024-06-01", api_name="/ingest")
        assert summary["added"] == 3
        yield url, clients, data


def _denied(call: Callable[[], Any]) -> bool:
    """True when the call is refused for the user's role; False when the role may make it."""
    try:
        call()
    except AppError as error:  # refused: for the role, or for another reason (nothing to export yet, ...)
        return any(words in str(error) for words in ("only a coordinator", "not one of the raters", "sign in"))
    return False


ENDPOINTS: dict[str, tuple[Callable[[Client, str], Any], set[str]]] = {
    "/ingest": (lambda c, d: c.predict([handle_file(d)], "", "", api_name="/ingest"), {"coordinator"}),
    "/photos": (lambda c, d: c.predict(api_name="/photos"), {"coordinator"}),
    "/agreement": (lambda c, d: c.predict(api_name="/agreement"), {"coordinator"}),
    "/machine_agreement": (lambda c, d: c.predict(api_name="/machine_agreement"), {"coordinator"}),
    "/export": (lambda c, d: c.predict(api_name="/export"), {"coordinator"}),
    "/adjudicate": (lambda c, d: c.predict("0" * 16, 10, "why", api_name="/adjudicate"), {"coordinator"}),
    "/request_rerate": (lambda c, d: c.predict("0" * 16, "ann", "why", api_name="/request_rerate"),
                        {"coordinator"}),
    "/next_image": (lambda c, d: c.predict(None, api_name="/next_image"), {"rater"}),
    "/submit_rating": (lambda c, d: c.predict(None, "", *GOOD, api_name="/submit_rating"), {"rater"}),
    "/predict": (lambda c, d: c.predict(handle_file(d), "demo", api_name="/predict"),
                 {"coordinator", "rater", "visitor"}),
}


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("role", list(ROLE_USER))
def test_endpoint_by_role(app, tmp_path: Path, endpoint: str, role: str) -> None:
    _, clients, _ = app
    call, allowed = ENDPOINTS[endpoint]
    photo = str(jpeg_with_gps(tmp_path / "extra.jpg", 99))
    assert _denied(lambda: call(clients[ROLE_USER[role]], photo)) is (role not in allowed)


def test_blinding_holds_after_a_photo_closes(app) -> None:
    url, clients, data = app
    ann, bob, boss, eve = clients["ann"], clients["bob"], clients["boss"], clients["eve"]
    image_id, _, _ = ann.predict(None, api_name="/next_image")
    ann.predict(None, image_id, *GOOD, api_name="/submit_rating")
    revised, *_ = ann.predict(None, image_id, *([3] + GOOD[1:]), api_name="/submit_rating")  # open: ok
    assert revised["revision"] == 2
    assert bob.predict(None, api_name="/next_image")[0] == image_id
    bob.predict(None, image_id, *([6, 4, 4] * 4), api_name="/submit_rating")  # closes it, bins disagree
    with pytest.raises(AppError, match="closed"):
        ann.predict(None, image_id, *([6, 4, 4] * 4), api_name="/submit_rating")

    # the export's files are handed to the coordinator only, never served from the data folder
    (_, ratings_csv), handed = boss.predict(api_name="/export")
    assert "ann" in Path(ratings_csv).read_text()
    assert Path(handed).is_relative_to(data / "exports")
    for user in (None, "ann", "eve"):
        auth = None if user is None else (user, USERS[user])
        with httpx.Client(base_url=url) as http:
            if auth:
                http.post("login", data={"username": auth[0], "password": auth[1]})
            for private in (Path(handed).with_name("ratings.csv"), data / "photos" / f"{image_id}.jpg"):
                assert http.get(f"gradio_api/file={private.resolve()}").status_code in (401, 403, 404)

    # the coordinator adjudicates; the decision is logged with who decided
    message = boss.predict(image_id, 20, "reviewed the photo at full size", api_name="/adjudicate")
    assert "boss set MASI 20.0" in message
    table = boss.predict(api_name="/photos")
    row = next(r for r in table["data"] if r[-1] == image_id)
    assert row[7] == "adjudicated"
    with pytest.raises(AppError, match="only a coordinator"):
        eve.predict(image_id, 1, "me", api_name="/adjudicate")


@pytest.mark.parametrize("count", [11, 13])
def test_a_rating_with_the_wrong_number_of_scores_is_refused(app, count: int) -> None:
    _, clients, data = app
    ann = clients["ann"]
    image_id, _, _ = ann.predict(None, api_name="/next_image")
    assert image_id
    # 11: the client already refuses (the 12th score has no default); 13: the server refuses
    refused = (TypeError, "No value provided") if count == 11 else (AppError, "expected 12 scores, got more")
    with pytest.raises(refused[0], match=refused[1]):
        ann.predict(None, image_id, *([1] * count), api_name="/submit_rating")
    from annotation.store import RatingStore

    assert RatingStore(data / "annotations.sqlite").get_rating(image_id, "ann") is None


def test_raw_upload_is_deleted_after_ingest(app, tmp_path: Path) -> None:
    _, clients, _ = app
    before = set(Path(get_upload_folder()).rglob("gps-*.jpg"))
    photo = jpeg_with_gps(tmp_path / "gps-raw.jpg", 1234)
    summary = clients["boss"].predict([handle_file(str(photo))], "", "", api_name="/ingest")
    assert summary["added"] == 1
    assert set(Path(get_upload_folder()).rglob("gps-*.jpg")) == before  # no raw copy left behind


def test_not_visible_regions_through_the_api(app) -> None:
    _, clients, data = app
    ann = clients["ann"]
    image_id, _, _ = ann.predict(None, api_name="/next_image")
    partial = [2, 2, 1] * 3 + [None, None, None]  # no chin scores: the chin is not visible
    entry, *_ = ann.predict(None, image_id, *partial, "", ["chin"], api_name="/submit_rating")
    assert entry["masi"] == pytest.approx(5.4)
    from annotation.store import RatingStore

    assert RatingStore(data / "annotations.sqlite").get_rating(image_id, "ann").hidden == ("chin",)
