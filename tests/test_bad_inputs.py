"""Bad input files at the library level: format allow-list, corrupt EXIF, per-file ingest outcomes,
JPEG-with-zip polyglots and the per-upload pixel budget (issue 11, input half)."""

from __future__ import annotations

import io
import re
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

from annotation.ingest import FileOutcome, IngestSummary, ingest
from annotation.store import RatingStore
from melasma.data.images import ALLOWED_FORMATS, ImageLoadError, decode_image, load_image, read_header

TINY_EPS = b"""%!PS-Adobe-3.0 EPSF-3.0
%%BoundingBox: 0 0 8 8
%%EndComments
newpath 0 0 moveto 8 0 lineto 8 8 lineto closepath fill
showpage
%%EOF
"""


def _jpeg(seed: int = 0, size: tuple[int, int] = (48, 32)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _saved(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buffer, fmt)
    return buffer.getvalue()


def _jpeg_with_corrupt_exif(seed: int = 0) -> bytes:
    """Orientation 6 plus an XResolution stored as ASCII: Pillow's exif_transpose raises TypeError."""
    entries = [(0x0112, 3, 1, struct.pack("<HH", 6, 0)), (0x011A, 2, 4, b"ab\0\0")]
    tiff = b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", len(entries))
    tiff += b"".join(struct.pack("<HHI4s", *entry) for entry in entries) + struct.pack("<I", 0)
    segment = b"Exif\0\0" + tiff
    data = _jpeg(seed)
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(segment) + 2) + segment + data[2:]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _big_flat_png(side: int, grey: int = 128) -> bytes:
    """A real side x side grey PNG, a few kB on disk (every row is the same zero-filter row)."""
    row = b"\0" + bytes([grey]) * side
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


@pytest.fixture
def store(tmp_path: Path) -> RatingStore:
    return RatingStore(tmp_path / "annotations.sqlite")


def _write(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


# -- 1. format allow-list ----------------------------------------------------------------------
def test_eps_renamed_jpg_never_reaches_ghostscript(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    for attribute in ("_open", "load"):
        original = getattr(EpsImagePlugin.EpsImageFile, attribute)

        def spy(self, *args, _name=attribute, _original=original, **kwargs):
            asked.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(EpsImagePlugin.EpsImageFile, attribute, spy)
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: asked.append("gs"))
    path = _write(tmp_path, "holiday.jpg", TINY_EPS)
    with pytest.raises(ImageLoadError, match=r"^.*holiday\.jpg: not a recognised image file$"):
        load_image(path)
    summary = ingest(RatingStore(tmp_path / "a.sqlite"), tmp_path / "photos", [path])
    assert summary.files == [FileOutcome("holiday.jpg", "refused", "not a recognised image file")]
    assert asked == []  # Pillow's EPS plugin was never asked to open or load it
    Image.open(io.BytesIO(TINY_EPS))  # the spy works: an unrestricted open does reach the plugin
    assert asked == ["_open"]


@pytest.mark.parametrize("fmt", ["DDS", "IM", "PCX", "TGA"])
def test_formats_outside_the_allow_list_are_refused_in_one_line(tmp_path: Path, fmt: str) -> None:
    data = _saved(fmt)
    assert Image.open(io.BytesIO(data)).format == fmt  # Pillow alone would open it
    with pytest.raises(ImageLoadError, match=r"^scan\.jpg: not a recognised image file$"):
        load_image(data, name="scan.jpg")


def test_allow_list_is_what_cameras_write() -> None:
    assert {"JPEG", "PNG", "WEBP", "TIFF", "BMP"} <= set(ALLOWED_FORMATS)
    assert not {"EPS", "PDF", "DDS", "IM"} & set(ALLOWED_FORMATS)


def test_multi_picture_jpeg_from_phones_is_accepted() -> None:
    frames = [Image.new("RGB", (40, 30), (200, 90, 60)), Image.new("RGB", (40, 30), (10, 10, 10))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "MPO", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(buffer.getvalue())).format == "MPO"
    image = load_image(buffer.getvalue(), name="phone.jpg")
    assert image.size == (40, 30) and image.getpixel((5, 5))[0] > 150  # the first picture


# -- 2. corrupt EXIF -----------------------------------------------------------------------------
def test_corrupt_exif_is_decoded_with_a_note() -> None:
    from PIL import ImageOps

    data = _jpeg_with_corrupt_exif()
    with pytest.raises(TypeError):  # what the old code hit
        ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    decoded = decode_image(data, name="cheek.jpg")
    assert decoded.image.size == (48, 32)
    assert decoded.notes == ("EXIF data is corrupt (TypeError): orientation not applied",)
    assert decode_image(data, name="cheek.jpg", draft=(16, 16)).image.size[0] >= 16


def test_batch_ingest_goes_on_after_a_corrupt_exif_photo(tmp_path: Path, store: RatingStore) -> None:
    files = [_write(tmp_path / "in", f"p{i}.jpg", _jpeg(i)) for i in range(4)]
    files[1].write_bytes(_jpeg_with_corrupt_exif(seed=1))
    summary = ingest(store, tmp_path / "photos", files)
    assert [f.outcome for f in summary.files] == ["added"] * 4
    assert summary.files[1].reason == "EXIF data is corrupt (TypeError): orientation not applied"
    assert len(store.images()) == 4


# -- 3. per-file summary ------------------------------------------------------------------------
def test_summary_has_one_typed_outcome_per_file(tmp_path: Path, store: RatingStore) -> None:
    good = _write(tmp_path / "in", "good.jpg", _jpeg(1))
    again = _write(tmp_path / "in", "again.jpg", _jpeg(1))
    bad = _write(tmp_path / "in", "notes.jpg", b"not a photo")
    summary = ingest(store, tmp_path / "photos", [good, again, bad])
    assert isinstance(summary, IngestSummary)
    photo_id = summary.files[0].photo_id
    assert summary.files == [
        FileOutcome("good.jpg", "added", "", photo_id),
        FileOutcome("again.jpg", "duplicate", "", photo_id),
        FileOutcome("notes.jpg", "refused", "not a recognised image file"),
    ]
    assert summary.errors == ["notes.jpg: not a recognised image file"]
    assert [f.line() for f in summary.files] == [
        f"good.jpg: added {photo_id}", f"again.jpg: duplicate {photo_id}",
        "notes.jpg: refused (not a recognised image file)",
    ]
    assert summary.as_dict()["files"][2] == {
        "file": "notes.jpg", "outcome": "refused", "reason": "not a recognised image file", "photo_id": None,
    }


# -- 4. JPEG with a zip appended -----------------------------------------------------------------
def test_jpeg_with_a_zip_appended_is_one_jpeg(tmp_path: Path, store: RatingStore) -> None:
    payload = io.BytesIO()
    with zipfile.ZipFile(payload, "w") as archive:
        archive.writestr("inner1.jpg", _jpeg(5))
        archive.writestr("inner2.jpg", _jpeg(6))
    polyglot = _write(tmp_path / "in", "face.jpg", _jpeg(4) + payload.getvalue())
    assert zipfile.is_zipfile(polyglot)  # what the old code tested: a zip's tail anywhere
    summary = ingest(store, tmp_path / "photos", [polyglot])
    assert [(f.file, f.outcome) for f in summary.files] == [("face.jpg", "added")]
    assert summary.files[0].reason == "data appended after the image (e.g. a zip) was ignored"
    assert store.get_image(summary.added[0]).width == 48


def test_a_real_zip_is_a_zip_and_unsafe_members_stay_reported(tmp_path: Path, store: RatingStore) -> None:
    archive = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.jpg", _jpeg(7))
        zf.writestr("../evil.jpg", _jpeg(8))
    summary = ingest(store, tmp_path / "photos", [archive])
    assert [(f.file, f.outcome) for f in summary.files] == [
        ("batch.zip", "refused"), ("batch.zip:a.jpg", "added")]
    assert summary.errors == ["batch.zip: '../evil.jpg' has an unsafe path, skipped"]


# -- 5. pixel budget per upload -------------------------------------------------------------------
def test_pixel_budget_refuses_the_rest_of_a_zip_from_the_headers(tmp_path: Path, store: RatingStore) -> None:
    side = 6000  # 36 MP each, under the 40 MP per-image cap
    big = [_big_flat_png(side, grey=100 + i) for i in range(6)]
    assert len(big[0]) < 100_000 and read_header(big[0]).pixels == side * side
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("small.jpg", _jpeg(9))
        for i in range(6):
            zf.writestr(f"big{i}.png", big[i])
    summary = ingest(store, tmp_path / "photos", [archive], max_batch_pixels=80_000_000)
    outcomes = [(f.file, f.outcome) for f in summary.files]
    assert outcomes == [("bomb.zip:small.jpg", "added"), ("bomb.zip:big0.png", "added"),
                        ("bomb.zip:big1.png", "added")] + [(f"bomb.zip:big{i}.png", "refused") for i in range(2, 6)]
    assert summary.files[3].reason == ("6000x6000 pixels would pass this upload's 80,000,000 pixel "
                                       "budget, not decoded")
    assert all("budget is spent" in f.reason for f in summary.files[4:])


def test_one_image_over_the_per_image_cap_is_refused_before_decoding(tmp_path: Path, store: RatingStore) -> None:
    path = _write(tmp_path / "in", "huge.png", _big_flat_png(7000))
    summary = ingest(store, tmp_path / "photos", [path], max_pixels=40_000_000)
    assert summary.errors == [
        "huge.png: image is 7000x7000 = 49,000,000 pixels, more than the 40,000,000 pixel limit"]


# -- 6. tampered checkpoints -----------------------------------------------------------------------
CHECKPOINT_META = {"classes": ["mild", "moderate", "severe"], "cutoffs": [16.0, 32.0], "image_size": 32,
                   "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}

TAMPERED = {  # id -> (changes to model.json, what the one-line error says)
    "std-zeros": ({"std": [0, 0, 0]}, "std must be 3 numbers above 0"),
    "std-negative": ({"std": [0.2, -0.2, 0.2]}, "std must be 3 numbers above 0"),
    "std-nan": ({"std": [float("nan"), 0.2, 0.2]}, "std must be 3 finite numbers"),
    "std-inf": ({"std": [float("inf"), 0.2, 0.2]}, "std must be 3 finite numbers"),
    "std-two": ({"std": [0.2, 0.2]}, "std must be 3 finite numbers"),
    "std-strings": ({"std": ["a", "b", "c"]}, "std must be 3 finite numbers"),
    "std-bools": ({"std": [True, True, True]}, "std must be 3 finite numbers"),
    "mean-nan": ({"mean": [float("nan"), 0.4, 0.4]}, "mean must be 3 finite numbers"),
    "mean-four": ({"mean": [0.4] * 4}, "mean must be 3 finite numbers"),
    "mean-object": ({"mean": {"r": 0.4}}, "mean must be 3 finite numbers"),
    "size-zero": ({"image_size": 0}, "image_size must be an integer from 16 to 1024"),
    "size-huge": ({"image_size": 100000}, "image_size must be an integer from 16 to 1024"),
    "size-string": ({"image_size": "224"}, "image_size must be an integer from 16 to 1024"),
    "size-float": ({"image_size": 224.5}, "image_size must be an integer from 16 to 1024"),
    "size-bool": ({"image_size": True}, "image_size must be an integer from 16 to 1024"),
    "classes-two": ({"classes": ["mild", "severe"]}, "classes must be"),
    "classes-four": ({"classes": ["a", "b", "c", "d"]}, "classes must be"),
    "classes-order": ({"classes": ["severe", "moderate", "mild"]}, "classes must be"),
    "classes-string": ({"classes": "mild"}, "classes must be"),
    "cutoffs-decreasing": ({"cutoffs": [32, 16]}, "cutoffs must be 2 increasing numbers between 0 and 48"),
    "cutoffs-over-48": ({"cutoffs": [16, 60]}, "cutoffs must be 2 increasing"),
    "cutoffs-negative": ({"cutoffs": [-1, 16]}, "cutoffs must be 2 increasing"),
    "cutoffs-three": ({"cutoffs": [8, 16, 32]}, "cutoffs must be 2 increasing"),
    "cutoffs-null": ({"cutoffs": None}, "cutoffs must be 2 increasing"),
    "arch-number": ({"arch": 18}, "arch must be a name"),
    "arch-unknown": ({"arch": "no_such_net"}, "unknown architecture 'no_such_net'"),
    "arch-other": ({"arch": "resnet18"}, "does not fit resnet18"),
    "kwargs-checkpoint-path": ({"arch_kwargs": {"checkpoint_path": "/etc/passwd"}},
                               "arch_kwargs: 'checkpoint_path' is not an option of mobilenetv2_100"),
    "kwargs-list": ({"arch_kwargs": [1, 2]}, "arch_kwargs must be an object"),
    "kwargs-transform": ({"arch_kwargs": {"transform_input": True}}, "'transform_input' is not an option"),
    "missing-std": ({"std": None, "_drop": "std"}, "lacks std"),
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from melasma.models import create, save_checkpoint

    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "mobilenetv2_100", create("mobilenetv2_100"),
                           CHECKPOINT_META)


def _tampered_copy(checkpoint: Path, tmp_path: Path, changes: dict) -> Path:
    import json
    import shutil

    target = tmp_path / "ck"
    shutil.copytree(checkpoint, target)
    meta = {**json.loads((target / "model.json").read_text()), **changes}
    meta.pop(changes.get("_drop", "_drop"), None)
    meta.pop("_drop", None)
    (target / "model.json").write_text(json.dumps(meta))  # json.dumps writes NaN / Infinity literals
    return target


@pytest.mark.parametrize("case", list(TAMPERED))
def test_tampered_model_json_is_refused_in_one_line(checkpoint: Path, tmp_path: Path, case: str) -> None:
    from melasma.models import CheckpointError, load_checkpoint

    changes, message = TAMPERED[case]
    target = _tampered_copy(checkpoint, tmp_path, changes)
    with pytest.raises(CheckpointError, match=re.escape(message)) as info:
        load_checkpoint(target)
    assert "\n" not in str(info.value) and str(target) in str(info.value)


def test_model_json_that_is_not_an_object_or_too_deep(checkpoint: Path, tmp_path: Path) -> None:
    from melasma.models import CheckpointError, load_checkpoint

    target = _tampered_copy(checkpoint, tmp_path, {})
    for text, message in [("[1, 2]", "expected a JSON object"), ("[" * 100_000 + "]" * 100_000, "damaged")]:
        (target / "model.json").write_text(text)
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(target)


def test_unknown_keys_are_kept_and_nan_weights_refused(checkpoint: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from melasma.models import CheckpointError, load_checkpoint
    from melasma.models.checkpoint import read_checkpoint_meta

    target = _tampered_copy(checkpoint, tmp_path, {"seed": 7, "head": "classification", "future_key": [1],
                                                   "cutoffs": [24, 48]})  # severe from 48 is allowed
    _, meta = load_checkpoint(target)
    assert (meta.seed, meta.extra["future_key"]) == (7, [1])
    assert read_checkpoint_meta(target).head.name == "classification"
    state = load_file(str(target / "model.safetensors"))
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = torch.full_like(state[key], float("nan"))
    save_file(state, str(target / "model.safetensors"))
    with pytest.raises(CheckpointError, match=f"{re.escape(key)} holds NaN or infinite values"):
        load_checkpoint(target)
