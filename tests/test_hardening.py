"""Bad input through the live app's API (the README's bad-input table, one test per row).

Each test asserts what the user is told, then that the app still serves a good request.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from live_app import live_app
from melasma.masi import SEVERITIES

pytestmark = pytest.mark.live

UPLOAD_CAP_MB = 1
RATERS = ("rater1", "rater2", "rater3")
GOOD_SCORES = [2, 2, 1] * 4  # area, darkness, homogeneity x 4 regions


# -- the bad files ---------------------------------------------------------------------------
def _jpeg(mode: str = "RGB", size: tuple[int, int] = (72, 48), seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_only(side: int = 30000) -> bytes:
    """A valid PNG whose header claims side x side RGB pixels (a decompression bomb's header)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b""))


def _png16() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.arange(48 * 72, dtype=np.uint16).reshape(48, 72) * 18).save(buffer, "PNG")
    assert Image.open(io.BytesIO(buffer.getvalue())).mode == "I;16"
    return buffer.getvalue()


def _saved(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buffer, fmt)
    return buffer.getvalue()


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (72, 48), (60 * i, 90, 200 - 50 * i)) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(buffer.getvalue())).n_frames == 3
    return buffer.getvalue()


REJECTED = {  # file name -> (bytes, what the user is told)
    "empty.jpg": (lambda: b"", "empty.jpg: file is empty"),
    "notes.jpg": (lambda: b"Patient notes, not a photo\n", "notes.jpg: not a recognised image file"),
    "truncated.jpg": (lambda: _jpeg()[:2000], "truncated.jpg: cannot decode image (image file is truncated"),
    "bomb.png": (_png_header_only, "bomb.png: image is too large to decode safely"),
    "poster.jpg": (lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n",
                   "poster.jpg: not a recognised image file"),  # EPS: never handed to Ghostscript
    "texture.jpg": (lambda: _saved("DDS"), "texture.jpg: not a recognised image file"),
}
ACCEPTED = {"cmyk.jpg": lambda: _jpeg("CMYK"), "deep.png": _png16, "moving.gif": _animated_gif}


# -- the app ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Client, Path]]:
    data_dir = tmp_path_factory.mktemp("data")
    with live_app(data_dir, raters=RATERS, max_upload_mb=UPLOAD_CAP_MB) as (url, client):
        yield url, client, data_dir


@pytest.fixture
def good_photo(tmp_path: Path) -> Path:
    path = tmp_path / "good.jpg"
    path.write_bytes(_jpeg(seed=7))
    return path


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _ingest(client: Client, *paths: Path) -> dict:
    return client.predict([handle_file(str(p)) for p in paths], "", "", api_name="/ingest")


def _predict(client: Client, path: Path) -> dict:
    label, _ = client.predict(handle_file(str(path)), "demo", api_name="/predict")
    return label


def _still_serving(client: Client, good_photo: Path) -> None:
    summary = _ingest(client, good_photo)
    assert summary["added"] + summary["duplicates"] == 1 and summary["errors"] == []
    assert _predict(client, good_photo)["label"] in SEVERITIES


# -- rejected files: ingest lists why, predict says why ---------------------------------------
@pytest.mark.parametrize("name", list(REJECTED))
def test_bad_file_is_refused_with_its_reason(app, tmp_path: Path, good_photo: Path, name: str) -> None:
    _, client, _ = app
    make, message = REJECTED[name]
    path = _write(tmp_path, name, make())
    summary = _ingest(client, path)
    assert summary["added"] == 0
    assert len(summary["errors"]) == 1 and summary["errors"][0].startswith(message)
    with pytest.raises(AppError, match=message.replace("(", r"\(")):
        _predict(client, path)
    _still_serving(client, good_photo)


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_unusual_format_is_converted(app, tmp_path: Path, good_photo: Path, name: str) -> None:
    _, client, data_dir = app
    path = _write(tmp_path, name, ACCEPTED[name]())
    summary = _ingest(client, path)
    assert summary["added"] == 1 and summary["errors"] == []
    with Image.open(data_dir / "photos" / f"{summary['added_ids'][0]}.jpg") as stored:
        assert (stored.mode, stored.size) == ("RGB", (72, 48))
    assert _predict(client, path)["label"] in SEVERITIES
    _still_serving(client, good_photo)


def test_upload_over_the_cap_is_refused_before_it_is_stored(app, tmp_path: Path, good_photo: Path) -> None:
    url, client, _ = app
    big = _write(tmp_path, "big.jpg", _jpeg() + b"\0" * (UPLOAD_CAP_MB * 1024 * 1024 + 1))
    with pytest.raises(ValueError, match="big.jpg exceeds the maximum file size of 1048576 bytes"):
        _ingest(client, big)  # gradio_client reads the cap from the app and refuses to send
    response = httpx.post(f"{url}gradio_api/upload", files=[("files", ("big.jpg", big.read_bytes(), "image/jpeg"))])
    assert response.status_code == 413  # and the server refuses it from anyone else
    assert "File size exceeded maximum allowed size of 1048576 bytes" in response.text
    _still_serving(client, good_photo)


def test_path_traversal_names_never_leave_the_data_folder(app, tmp_path: Path, good_photo: Path) -> None:
    url, client, data_dir = app
    photo = _jpeg(seed=3)
    # 1. an upload whose file name climbs out of the upload folder
    response = httpx.post(f"{url}gradio_api/upload",
                          files=[("files", ("../../etc/passwd.jpg", photo, "image/jpeg"))])
    response.raise_for_status()
    stored = Path(response.json()[0])
    assert stored.name == "passwd.jpg" and ".." not in stored.parts
    # 2. a zip whose member climbs out: skipped and reported, nothing written outside photos/
    archive = tmp_path / "trip.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../../etc/passwd.jpg", photo)
        zf.writestr("ok/face.jpg", _jpeg(seed=4))
    before = {p for p in data_dir.rglob("*") if p.is_file()}
    summary = _ingest(client, archive)
    assert summary["added"] == 1
    assert summary["errors"] == ["trip.zip: '../../etc/passwd.jpg' has an unsafe path, skipped"]
    written = {p for p in data_dir.rglob("*") if p.is_file()} - before
    assert {p.parent for p in written if p.suffix == ".jpg" and "downloads" not in p.parts} == {data_dir / "photos"}
    assert not any(p.name == "passwd.jpg" for p in data_dir.parent.rglob("passwd.jpg"))
    _still_serving(client, good_photo)


# -- ratings -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("position", "value", "message"),
    [(0, 7, r"Value: 7 .* is not in the list of choices: \[0, 1, 2, 3, 4, 5, 6\]"),
     (1, -1, r"Value: -1 .* is not in the list of choices: \[0, 1, 2, 3, 4\]")],
)
def test_out_of_range_score_is_refused(app, tmp_path: Path, position: int, value: int, message: str) -> None:
    _, client, _ = app
    _ingest(client, _write(tmp_path, "fresh.jpg", _jpeg(seed=10 + position)))
    image_id, _, _ = client.predict("rater1", api_name="/next_image")
    scores = list(GOOD_SCORES)
    scores[position] = value
    with pytest.raises(AppError, match=message):
        client.predict("rater1", image_id, *scores, api_name="/submit_rating")
    entry, *_ = client.predict("rater1", image_id, *GOOD_SCORES, api_name="/submit_rating")
    assert (entry["image_id"], entry["revision"]) == (image_id, 1)  # the refused one stored nothing


def test_unknown_rater_is_refused(app, good_photo: Path) -> None:
    _, client, _ = app
    _ingest(client, good_photo)
    with pytest.raises(AppError, match=r"Value: mallory is not in the list of choices: \['rater1', 'rater2', 'rater3'\]"):
        client.predict("mallory", api_name="/next_image")
    with pytest.raises(AppError, match="mallory is not in the list of choices"):
        client.predict("mallory", "0123456789abcdef", *GOOD_SCORES, api_name="/submit_rating")
    image_id, _, status = client.predict("rater2", api_name="/next_image")
    assert image_id and "rater2" in status
