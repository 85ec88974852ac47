"""Safe image decoding for real photos: size caps, EXIF orientation, every mode to 8-bit RGB.

Every image is opened with an explicit allow-list of formats (`ALLOWED_FORMATS`): an EPS, PDF, DDS
or IM file, whatever its name, is refused before any other Pillow plugin (Ghostscript included)
sees it. `decode_image` checks the pixel count from the header before decoding (PIL's `Image.open`
is lazy), applies the EXIF orientation (skipped with a note when the EXIF block is corrupt), turns
grayscale, alpha, palette, CMYK and 16-bit images into plain RGB, keeps only the first frame of
animations and returns a fresh image without metadata. `read_header` gives format and size without
decoding. Any failure is an `ImageLoadError` (a `UserError`) whose one-line message names the file.
"""

from __future__ import annotations

import hashlib
import io
import mmap
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from melasma.errors import UserError

#: Largest accepted image, in pixels (width x height), checked before decoding.
MAX_PIXELS = 40_000_000
#: Most one side of an image may exceed the other (a 1 x 40000 strip is no photo, and would make
#: figures and JPEG encoding blow up); checked from the header, before decoding.
MAX_ASPECT = 20
#: Largest accepted upload, in bytes.
MAX_UPLOAD_BYTES = 50 * 1024 * 1024

#: Most scans (SOS markers) a JPEG's first picture may have. Cameras write one (baseline) and
#: libjpeg's progressive mode 10; a file that repeats a scan thousands of times decodes for minutes.
MAX_JPEG_SCANS = 64

#: Formats Pillow may open: what cameras and phones write, plus HEIF when the pillow-heif plugin is
#: installed. Pillow's JPEG opener also returns phones' multi-picture JPEGs (format "MPO").
#: Everything else (EPS, PDF, DDS, IM, ...) is refused.
BASE_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF")


def _allowed_formats() -> tuple[str, ...]:
    try:
        from pillow_heif import register_heif_opener  # type: ignore[import-not-found]
    except ImportError:
        return BASE_FORMATS
    register_heif_opener()
    return (*BASE_FORMATS, "HEIF")


ALLOWED_FORMATS = _allowed_formats()

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO

_ORIENTATION_TAG = 0x0112
_SWAPPED_ORIENTATIONS = {5, 6, 7, 8}


class ImageLoadError(UserError):
    """An image could not be read: missing, empty, not an image, truncated or too large."""


@dataclass(frozen=True)
class ImageHeader:
    """What the header says, read without decoding any pixels."""

    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class DecodedImage:
    """An upright, metadata-free RGB image and notes on what decoding had to skip."""

    image: Image.Image
    notes: tuple[str, ...] = ()


def check_upload_size(nbytes: int, name: str, limit: int = MAX_UPLOAD_BYTES) -> None:
    """Raise ImageLoadError when an upload of `nbytes` exceeds `limit` bytes."""
    if nbytes > limit:
        raise ImageLoadError(
            f"{name}: file is {nbytes / 1e6:.1f} MB, larger than the {limit / 1e6:.0f} MB limit"
        )


def _describe(source: ImageSource, name: str | None) -> str:
    if name is not None:
        return name
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return getattr(source, "name", None) or "<image bytes>"


def _open(source: ImageSource, label: str) -> ImageFile.ImageFile:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageLoadError(f"{label}: file not found")
        if path.stat().st_size == 0:
            raise ImageLoadError(f"{label}: file is empty")
        fp: object = path
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageLoadError(f"{label}: file is empty")
        fp = io.BytesIO(bytes(source))
    else:
        fp = source
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(fp, formats=ALLOWED_FORMATS)  # type: ignore[arg-type]


def _open_checked(source: ImageSource, label: str) -> ImageFile.ImageFile:
    """`_open` with every Pillow failure turned into a one-line ImageLoadError."""
    try:
        return _open(source, label)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageLoadError(f"{label}: image is too large to decode safely ({error})") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"{label}: not a recognised image file") from None
    except (OSError, SyntaxError, ValueError, EOFError, TypeError, NotImplementedError) as error:
        raise ImageLoadError(f"{label}: cannot open image ({_first_line(error)})") from None


#: After a scan's header: the next marker that is not byte stuffing (FF 00), a restart (FF D0-D7)
#: or a fill byte (FF FF) ends the entropy-coded data.
_NEXT_MARKER = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


def count_jpeg_scans(data: bytes | mmap.mmap, stop_after: int | None = None) -> int:
    """The number of scans (SOS markers) in a JPEG's first picture, from its markers only (the
    EXIF thumbnail and later pictures of a multi-picture file are not counted); stops counting
    once past `stop_after`. A file that is not a JPEG has 0."""
    if data[:2] != b"\xff\xd8":
        return 0
    pos, scans, size = 2, 0, len(data)
    while pos + 4 <= size:
        if data[pos] != 0xFF:
            break  # corrupt: Pillow says so when it decodes
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
        elif marker == 0xD9:
            break
        elif marker in _STANDALONE:
            pos += 2
        else:
            end = pos + 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
            if marker != 0xDA:
                pos = end
                continue
            scans += 1
            if stop_after is not None and scans > stop_after:
                break
            found = _NEXT_MARKER.search(data, end)
            if found is None:
                break
            pos = found.start()
    return scans


def _jpeg_scans(source: ImageSource, stop_after: int) -> int:
    """`count_jpeg_scans` of a path (memory-mapped), bytes or binary file (read from its start,
    then put back where it was)."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return count_jpeg_scans(data, stop_after)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return count_jpeg_scans(bytes(source), stop_after)
    start = source.tell()
    try:
        source.seek(0)  # Pillow reads an image file object from its start too
        return count_jpeg_scans(source.read(), stop_after)
    finally:
        source.seek(start)


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def read_header(source: ImageSource, *, name: str | None = None) -> ImageHeader:
    """Format and size from the file's header; no pixels are decoded. Raises ImageLoadError."""
    label = _describe(source, name)
    with _open_checked(source, label) as img:
        return ImageHeader(format=str(img.format), width=img.width, height=img.height)


def check_shape(width: int, height: int, label: str, max_aspect: float | None = MAX_ASPECT) -> None:
    """Raise ImageLoadError for an empty image or one whose sides are more than `max_aspect` : 1 apart."""
    if width < 1 or height < 1:
        raise ImageLoadError(f"{label}: image is {width}x{height} pixels: empty")
    if max_aspect is not None and max(width, height) > max_aspect * min(width, height):
        raise ImageLoadError(
            f"{label}: image is {width}x{height} pixels, one side more than {max_aspect:g} times the other; "
            "refused before decoding (crop it to the face)"
        )


def _upright(img: Image.Image) -> tuple[Image.Image, tuple[str, ...]]:
    """Apply the EXIF orientation; a corrupt EXIF block is skipped with a note, never raised."""
    try:
        return ImageOps.exif_transpose(img), ()
    except Exception as error:  # noqa: BLE001 - Pillow's EXIF parser raises many types on bad data
        return img, (f"EXIF data is corrupt ({type(error).__name__}): orientation not applied",)


def _exif_orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - same parser as in _upright
        return 1
    return value if isinstance(value, int) else 1


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; transparency is composited on white."""
    mode = img.mode
    if mode.startswith("I") or mode == "F":
        values = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16") or (mode == "I" and values.max(initial=0) > 255):
            values = values / 257.0
        elif mode == "F" and values.max(initial=0) <= 1.0:
            values = values * 255.0
        gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "La", "RGBa", "PA") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def decode_image(
    source: ImageSource,
    *,
    max_pixels: int | None = MAX_PIXELS,
    draft: tuple[int, int] | None = None,
    name: str | None = None,
    max_aspect: float | None = MAX_ASPECT,
) -> DecodedImage:
    """Decode `source` (path, bytes or binary file) into a metadata-free, upright RGB image.

    `draft=(w, h)` lets JPEGs decode at a DCT-reduced size no smaller than (w, h) after orientation.
    `name` is used in error messages (useful for bytes sources). Refused before decoding: more than
    `max_pixels`, sides more than `max_aspect` : 1 apart, JPEGs of more than MAX_JPEG_SCANS scans.
    """
    label = _describe(source, name)
    img = _open_checked(source, label)
    with img:
        width, height = img.size
        if max_pixels is not None and width * height > max_pixels:
            raise ImageLoadError(
                f"{label}: image is {width}x{height} = {width * height:,} pixels, "
                f"more than the {max_pixels:,} pixel limit"
            )
        check_shape(width, height, label, max_aspect)
        if img.format in ("JPEG", "MPO") and _jpeg_scans(source, MAX_JPEG_SCANS) > MAX_JPEG_SCANS:
            raise ImageLoadError(
                f"{label}: JPEG has more than {MAX_JPEG_SCANS} scans (cameras write at most about 10); "
                "refused before decoding"
            )
        try:
            if draft is not None and img.format in ("JPEG", "MPO"):
                orientation = _exif_orientation(img)
                request = draft[::-1] if orientation in _SWAPPED_ORIENTATIONS else draft
                img.draft("RGB", (int(request[0]), int(request[1])))
            img.load()
            upright, notes = _upright(img)
            rgb = _to_rgb(upright)
        except (OSError, SyntaxError, ValueError, EOFError, TypeError, NotImplementedError) as error:
            raise ImageLoadError(f"{label}: cannot decode image ({_first_line(error)})") from None
    return DecodedImage(Image.fromarray(np.asarray(rgb, dtype=np.uint8)), notes)


def load_image(
    source: ImageSource,
    *,
    max_pixels: int | None = MAX_PIXELS,
    draft: tuple[int, int] | None = None,
    name: str | None = None,
    max_aspect: float | None = MAX_ASPECT,
) -> Image.Image:
    """`decode_image(...).image`: the upright RGB image, without the decoding notes."""
    return decode_image(source, max_pixels=max_pixels, draft=draft, name=name, max_aspect=max_aspect).image


def load_array(path: ImageSource, size: int, *, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Decode an image and squash it to a (size, size, 3) uint8 array (bilinear, antialiased)."""
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    img = load_image(path, max_pixels=max_pixels, draft=(size, size))
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8).copy()


def to_jpeg_bytes(img: Image.Image, quality: int = 95) -> bytes:
    """Re-encode an image as a JPEG without any metadata (no EXIF, ICC, comments)."""
    clean = Image.fromarray(np.asarray(_to_rgb(img), dtype=np.uint8))
    buffer = io.BytesIO()
    clean.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
