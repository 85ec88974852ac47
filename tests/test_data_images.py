"""Image decoding on worked examples of every awkward file kind, and on the real photos."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from melasma.data.images import (
    MAX_UPLOAD_BYTES,
    ImageLoadError,
    check_upload_size,
    load_array,
    load_image,
    to_jpeg_bytes,
)
from melasma.data.masks import MaskError, coco_masks, mask_for_image

pytestmark = pytest.mark.realdata


def _jpeg(img: Image.Image, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", **kwargs)
    return buffer.getvalue()


def _png_with_header_size(width: int, height: int) -> bytes:
    """A real 8x8 PNG whose IHDR claims width x height (CRC fixed so the header is valid)."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_empty_file_is_rejected_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageLoadError, match=r"empty\.jpg: file is empty"):
        load_image(path)


def test_text_renamed_to_jpg_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("these are my notes, not a photo\n")
    with pytest.raises(ImageLoadError, match=r"notes\.jpg: not a recognised image") as info:
        load_image(path)
    assert "\n" not in str(info.value)


def test_truncated_jpeg_is_rejected(tmp_path: Path) -> None:
    data = _jpeg(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)))
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match=r"cut\.jpg: cannot decode image \(image file is truncated"):
        load_image(path)


def test_missing_file_and_bytes_source_name(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="nope.png: file not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageLoadError, match=r"^upload\.jpg: not a recognised image file$"):
        load_image(b"GIF89a-but-not-really", name="upload.jpg")


@pytest.mark.parametrize("size", [(30000, 30000), (8000, 6000)])
def test_oversized_header_rejected_before_decoding(size: tuple[int, int]) -> None:
    # the pixel data is only 8x8: decoding would fail with "truncated", so this message proves the
    # size check ran on the header alone
    data = _png_with_header_size(*size)
    with pytest.raises(ImageLoadError, match=r"^bomb\.png: image is (too large|8000x6000)"):
        load_image(data, name="bomb.png")


def test_max_pixels_is_configurable() -> None:
    data = _jpeg(Image.new("RGB", (100, 100)))
    with pytest.raises(ImageLoadError, match="100x100 = 10,000 pixels, more than the 5,000"):
        load_image(data, max_pixels=5000)
    assert load_image(data, max_pixels=None).size == (100, 100)


def test_cmyk_jpeg_becomes_rgb() -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red ink
    img = load_image(_jpeg(cmyk))
    assert img.mode == "RGB"
    r, g, b = np.asarray(img)[8, 8].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_16bit_png_scaled_to_8bit(tmp_path: Path) -> None:
    ramp = (np.linspace(0, 65535, 32 * 32).reshape(32, 32)).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")
    arr = np.asarray(load_image(path))
    assert arr.dtype == np.uint8 and arr.shape == (32, 32, 3)
    assert arr[0, 0, 0] == 0 and arr[-1, -1, 0] == 255
    assert 120 <= arr[16, 0, 0] <= 135  # mid-grey, not clipped to white


def test_rgba_and_palette_transparency_composite_on_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    arr = np.asarray(load_image(buffer.getvalue()))
    assert tuple(arr[4, 4]) == (255, 255, 255) and tuple(arr[0, 0]) == (255, 0, 0)

    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 0, 0, 200] + [0] * 762)
    palette.putpixel((0, 0), 0)
    path = tmp_path / "pal.png"
    palette.save(path, transparency=0)
    arr = np.asarray(load_image(path))
    assert tuple(arr[0, 0]) == (255, 255, 255) and tuple(arr[5, 5]) == (0, 0, 200)


def test_grayscale_and_bilevel_become_rgb() -> None:
    for mode, value in (("L", 77), ("1", 1)):
        buffer = io.BytesIO()
        Image.new(mode, (4, 4), value).save(buffer, format="PNG")
        arr = np.asarray(load_image(buffer.getvalue()))
        assert arr.shape == (4, 4, 3) and len(set(arr[0, 0])) == 1


def test_animated_gif_gives_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(path) as raw:
        assert raw.n_frames == 2
    r, _, b = np.asarray(load_image(path))[4, 4].astype(int)
    assert r > 200 and b < 50


def test_exif_rotation_applied_and_metadata_dropped(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 10, 20))  # white stripe on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif.tobytes(), quality=95)
    out = load_image(path)
    assert out.size == (20, 40)
    assert np.asarray(out)[:10].mean() > 200  # the left stripe is now on top
    assert not out.info and len(out.getexif()) == 0
    reencoded = Image.open(io.BytesIO(to_jpeg_bytes(out)))
    assert "exif" not in reencoded.info and reencoded.size == (20, 40)


def test_draft_mode_decodes_big_jpeg_smaller_but_not_below_request() -> None:
    data = _jpeg(Image.new("RGB", (1600, 1200), (90, 120, 150)))
    assert load_image(data).size == (1600, 1200)
    small = load_image(data, draft=(180, 180))
    assert small.size == (400, 300)  # DCT scale 1/4: the largest reduction keeping >= 180 px
    arr = load_array(io.BytesIO(data), 64)
    assert arr.shape == (64, 64, 3) and arr.dtype == np.uint8
    assert abs(int(arr[32, 32, 2]) - 150) <= 3


def test_upload_size_limit() -> None:
    check_upload_size(MAX_UPLOAD_BYTES, "ok.jpg")
    with pytest.raises(ImageLoadError, match=r"big\.jpg: file is 52\.4 MB, larger than the 52 MB limit"):
        check_upload_size(MAX_UPLOAD_BYTES + 1, "big.jpg")


def test_real_photos_all_load(roboflow_dir: Path) -> None:
    photos = sorted(roboflow_dir.glob("*/*.jpg"))
    assert len(photos) == 94
    for photo in photos:
        img = load_image(photo)
        assert img.mode == "RGB" and min(img.size) >= 64 and not img.info
    assert load_array(photos[0], 96).shape == (96, 96, 3)


def test_coco_polygons_rasterised_for_real_photos(roboflow_dir: Path, tmp_path: Path) -> None:
    masks = coco_masks(roboflow_dir / "_annotations.coco.json")
    assert len(masks) == 46  # 47 annotated photos, one has only a bounding box
    shares = [m.mean() for m in masks.values()]
    assert all(m.shape == (416, 416) and m.dtype == bool for m in masks.values())
    assert 0.01 < min(shares) and max(shares) < 0.9
    photo = roboflow_dir / "melasma" / next(iter(masks))
    assert np.array_equal(mask_for_image(photo), masks[photo.name])
    assert mask_for_image(next((roboflow_dir / "non-melasma").glob("*.jpg"))) is None
    broken = tmp_path / "_annotations.coco.json"
    broken.write_text('{"images": []}')
    with pytest.raises(MaskError, match="not a readable COCO annotation file"):
        coco_masks(broken)
