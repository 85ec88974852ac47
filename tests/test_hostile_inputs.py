"""Issue 30: hostile files are refused by construction, before the work they would cause: JPEGs with
thousands of scans, images of extreme aspect, checkpoints and JSON files that are not what they say."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from melasma.data.images import MAX_JPEG_SCANS, ImageLoadError, count_jpeg_scans, decode_image, load_image


def progressive_jpeg(size: tuple[int, int] = (96, 80), seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", progressive=True, quality=90)
    return buffer.getvalue()


def repeated_scan_jpeg(repeats: int) -> bytes:
    """A valid progressive JPEG whose last AC scan is repeated `repeats` more times (the attack of
    issue 30: every copy is decoded again, so decoding time grows with the count)."""
    data = progressive_jpeg()
    last_scan = data[data.rfind(b"\xff\xda"):-2]
    return data[:-2] + last_scan * repeats + b"\xff\xd9"


def test_progressive_jpegs_of_cameras_and_libjpeg_decode() -> None:
    data = progressive_jpeg()
    assert count_jpeg_scans(data) == 10
    assert load_image(data).size == (96, 80)
    assert count_jpeg_scans(b"\x89PNG\r\n\x1a\n") == 0


def test_a_jpeg_with_thousands_of_scans_is_refused_before_decoding(tmp_path: Path) -> None:
    hostile = repeated_scan_jpeg(5000)
    assert count_jpeg_scans(hostile) == 5010
    # counting stops just past the cap: refusing reads at most MAX_JPEG_SCANS + 1 scan headers
    assert count_jpeg_scans(hostile, stop_after=MAX_JPEG_SCANS) == MAX_JPEG_SCANS + 1
    path = tmp_path / "scans.jpg"
    path.write_bytes(hostile)
    for source in (path, hostile, io.BytesIO(hostile)):
        with pytest.raises(ImageLoadError, match=f"more than {MAX_JPEG_SCANS} scans"):
            decode_image(source, name="scans.jpg")
    # just under the cap it is an ordinary (if odd) file and decodes
    assert load_image(repeated_scan_jpeg(MAX_JPEG_SCANS - 10)).size == (96, 80)


def test_scans_of_an_exif_thumbnail_are_not_counted() -> None:
    thumbnail = progressive_jpeg((32, 24), seed=1)
    exif = Image.Exif()
    exif[0x010E] = "x"
    data = progressive_jpeg()
    # an APP1 segment holding a progressive JPEG (as an EXIF thumbnail does) right after SOI
    app1 = b"Exif\x00\x00" + thumbnail
    segment = b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1
    assert count_jpeg_scans(data[:2] + segment + data[2:]) == 10
