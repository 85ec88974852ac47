"""Bad input against the live app, loopback only, bounded in count and time (issue 11).

Starts the real app (`melasma.ui.app.serve` with `prevent_thread_lock`, a temporary data folder,
127.0.0.1 on a free port), then sends through `gradio_client`:

1. a catalogue of bad inputs to /ingest, /predict, /explain, /regions, /next_image,
   /submit_rating, /start_training, /cancel_training, /training_status and /adjudicate: formats
   outside the allow-list (EPS, DDS, IM), corrupt and truncated files, a decompression-bomb header,
   a zip of large-dimension PNGs (pixel budget), a zip bomb, unsafe zip members, a JPEG with a zip
   appended, wrong types, out-of-range fields, 11 and 13 rating values, other server paths;
2. the memory case: a training request at 1024 px (and other unbounded fields), then checks that
   the app still serves;
3. a flood of `--flood` /explain calls while `--raters` raters submit ratings, then counts the
   ratings acknowledged, stored and lost (acknowledged but not stored: must be 0).

An answer is clean when the app returns what the case expects (a refusal with a reason, or the
file added with a note) or raises a one-line error naming the problem; a traceback, an empty or
generic "the app raised an exception" message, or a dropped connection is not clean.

    python benchmarks/abuse.py                  # about 1-4 min on a 2-core CPU
    python benchmarks/abuse.py --flood 20       # quicker
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import struct
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from gradio_client import Client, handle_file

from annotation.store import RatingStore
from live_app import live_app
from melasma.layout import DataLayout

RATERS = ("rater1", "rater2", "rater3")
GOOD_SCORES = [2, 2, 1] * 4
UPLOAD_CAP_MB = 5
PIXEL_BUDGET_MP = 50


@dataclass(frozen=True)
class Case:
    """One bad request: endpoint, arguments and what a clean success looks like (None: must raise)."""

    name: str
    api: str
    args: tuple[Any, ...]
    ok: Callable[[Any], bool] | None = None


@dataclass(frozen=True)
class Answer:
    case: str
    clean: bool
    detail: str


# -- bad files ------------------------------------------------------------------------------------
def _jpeg(seed: int = 0, size: tuple[int, int] = (72, 48)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _saved(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buffer, fmt)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(side: int, grey: int = 128, rows: int | None = None) -> bytes:
    """A grey PNG whose header says side x side; `rows` < side makes it a header-only bomb."""
    compressor = zlib.compressobj(9)
    row = b"\0" + bytes([grey]) * side
    body = b"".join(compressor.compress(row) for _ in range(side if rows is None else rows))
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", body + compressor.flush())
            + _chunk(b"IEND", b""))


def _corrupt_exif() -> bytes:
    entries = [(0x0112, 3, 1, struct.pack("<HH", 6, 0)), (0x011A, 2, 4, b"ab\0\0")]
    tiff = b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", len(entries))
    tiff += b"".join(struct.pack("<HHI4s", *e) for e in entries) + struct.pack("<I", 0)
    data, segment = _jpeg(11), b"Exif\0\0" + tiff
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(segment) + 2) + segment + data[2:]


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _repeated_scans(repeats: int = 2000) -> bytes:
    """Issue 30: a progressive JPEG whose last AC scan is repeated (decoding time grows with it)."""
    pixels = np.random.default_rng(5).integers(0, 256, (80, 96, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", progressive=True, quality=60)
    data = buffer.getvalue()
    scan = data[data.rfind(b"\xff\xda"):-2]
    return data[:-2] + scan * repeats + b"\xff\xd9"


def _strip(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (180, 140, 120)).save(buffer, "PNG")
    return buffer.getvalue()


BAD_FILES: dict[str, Callable[[], bytes]] = {
    "empty.jpg": lambda: b"",
    "notes.jpg": lambda: b"Patient notes, not a photo\n",
    "truncated.jpg": lambda: _jpeg(1)[:1500],
    "poster.jpg": lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n",
    "texture.jpg": lambda: _saved("DDS"),
    "scan.im": lambda: _saved("IM"),
    "bomb.png": lambda: _png(30000, rows=4),
    "zipbomb.zip": lambda: _zip({"zeros.jpg": b"\0" * (UPLOAD_CAP_MB + 3) * 1024 * 1024}),
    "trip.zip": lambda: _zip({"../../etc/passwd.jpg": _jpeg(2)}),
    "scans.jpg": _repeated_scans,
    "strip.png": lambda: _strip(1, 40000),
    "wide.png": lambda: _strip(65535, 1),
}


def _outcomes(summary: Any) -> list[str]:
    return [item["outcome"] for item in summary.get("files", [])] if isinstance(summary, dict) else []


def _file_cases(folder: Path) -> list[Case]:
    cases = []
    for name, make in BAD_FILES.items():
        path = folder / name
        path.write_bytes(make())
        cases.append(Case(f"ingest {name}", "/ingest", ([handle_file(str(path))], "", ""),
                          ok=lambda s: "added" not in _outcomes(s) and bool(s["errors"])))
        if name.endswith((".jpg", ".png", ".im")):
            cases.append(Case(f"predict {name}", "/predict", (handle_file(str(path)), "demo")))
    pixel_zip = folder / "pixels.zip"
    pixel_zip.write_bytes(_zip({f"big{i}.png": _png(6000, grey=90 + i) for i in range(6)}))
    cases.append(Case("ingest zip of 6 PNGs of 36 MP (pixel budget)", "/ingest",
                      ([handle_file(str(pixel_zip))], "", ""),
                      ok=lambda s: _outcomes(s).count("refused") >= 5))
    exif = folder / "exif.jpg"
    exif.write_bytes(_corrupt_exif())
    cases.append(Case("ingest corrupt EXIF", "/ingest", ([handle_file(str(exif))], "", ""),
                      ok=lambda s: _outcomes(s) == ["added"] and "EXIF" in s["files"][0]["reason"]))
    polyglot = folder / "polyglot.jpg"
    polyglot.write_bytes(_jpeg(3) + _zip({"inner.jpg": _jpeg(4)}))
    cases.append(Case("ingest JPEG with a zip appended", "/ingest", ([handle_file(str(polyglot))], "", ""),
                      ok=lambda s: _outcomes(s) == ["added"] and "appended" in s["files"][0]["reason"]))
    poster = folder / "poster.jpg"
    cases += [
        Case("explain EPS", "/explain", (handle_file(str(poster)), "demo", "lrp")),
        Case("explain 1 x 40000 PNG", "/explain", (handle_file(str(folder / "strip.png")), "demo", "lrp")),
        Case("explain unknown method", "/explain", (handle_file(str(folder / "good.jpg")), "demo", "evil")),
        Case("regions EPS", "/regions", (handle_file(str(poster)),)),
        Case("predict unknown checkpoint", "/predict", (handle_file(str(folder / "good.jpg")), "../../etc")),
        Case("predict no image", "/predict", (None, "demo")),
        Case("ingest no files", "/ingest", ([], "", "")),
        Case("ingest control chars in patient id", "/ingest", ([handle_file(str(folder / "good.jpg"))], "P\x00\x1b", "")),
        Case("ingest bad visit date", "/ingest", ([handle_file(str(folder / "good.jpg"))], "", "yesterday")),
    ]
    return cases


def _rating_cases(image_id: str) -> list[Case]:
    seven = [7] + GOOD_SCORES[1:]
    return [
        Case("rate area 7", "/submit_rating", ("rater1", image_id, *seven)),
        Case("rate as mallory", "/submit_rating", ("mallory", image_id, *GOOD_SCORES)),
        Case("rate path as image id", "/submit_rating", ("rater1", "../../etc/passwd", *GOOD_SCORES)),
        Case("rate unknown image", "/submit_rating", ("rater1", "0123456789abcdef", *GOOD_SCORES)),
        Case("next image for mallory", "/next_image", ("mallory",)),
        Case("adjudicate NaN", "/adjudicate", (image_id, math.nan, "x")),
        Case("adjudicate 1e9", "/adjudicate", (image_id, 1e9, "x")),
    ]


def _training(data: str, **changes: Any) -> tuple[Any, ...]:
    fields = {"data": data, "archs": ["resnet18"], "extra_archs": "", "epochs": 1, "batch_size": 8,
              "image_size": 64, "lr": 1e-3, "patience": 3, "seed": 0, "device": "cpu",
              "pretrained": "off", "cut": "16,32"}
    fields.update(changes)
    return tuple(fields.values())


def _timm_names(count: int) -> list[str]:
    import timm

    return timm.list_models("resnet*")[:count]


def _training_cases(data: str) -> list[Case]:
    return [
        Case("train 1024 px (memory)", "/start_training", _training(data, image_size=1024)),
        Case("train 10**9 epochs", "/start_training", _training(data, epochs=10**9)),
        Case("train batch 0", "/start_training", _training(data, batch_size=0)),
        Case("train batch 100000", "/start_training", _training(data, batch_size=100_000)),
        Case("train lr NaN", "/start_training", _training(data, lr=math.nan)),
        Case("train lr 1e308", "/start_training", _training(data, lr=1e308)),
        Case("train seed -1", "/start_training", _training(data, seed=-1)),
        Case("train seed 1e23", "/start_training", _training(data, seed=1e23)),
        Case("train cut 32,16", "/start_training", _training(data, cut="32,16")),
        Case("train no archs", "/start_training", _training(data, archs=[])),
        Case("train 40 archs", "/start_training", _training(data, extra_archs=",".join(_timm_names(40)))),
        Case("train on /root/.ssh/id_rsa", "/start_training", _training("/root/.ssh/id_rsa")),
        Case("train on /etc/passwd", "/start_training", _training("/etc/passwd")),
        Case("cancel unknown job", "/cancel_training", ("nope",)),
        Case("status of a path", "/training_status", ("../../etc/passwd",)),
    ]


def _raw_call(url: str, api: str, data: list[Any], name: str) -> Answer:
    """Call an endpoint over plain HTTP, bypassing gradio_client's own argument checks."""
    import json

    import httpx

    try:
        posted = httpx.post(f"{url}gradio_api/call{api}", json={"data": data}, timeout=60)
        if posted.status_code != 200:
            return Answer(name, _message_is_clean(posted.text), f"HTTP {posted.status_code}: {posted.text[:90]}")
        event_id = posted.json()["event_id"]
        stream = httpx.get(f"{url}gradio_api/call{api}/{event_id}", timeout=60).text
    except (httpx.HTTPError, KeyError, ValueError) as error:
        return Answer(name, False, f"{type(error).__name__}: {str(error)[:90]}")
    event = next((line.split(":", 1)[1].strip() for line in stream.splitlines() if line.startswith("event:")), "")
    payload = next((line.split(":", 1)[1].strip() for line in stream.splitlines() if line.startswith("data:")), "")
    try:
        message = json.loads(payload).get("error") if event == "error" else None
    except (ValueError, AttributeError):
        message = None
    clean = event == "error" and isinstance(message, str) and _message_is_clean(message)
    return Answer(name, clean, f"{event}: {payload[:100]}")


def _message_is_clean(message: str) -> bool:
    text = message.strip()
    unhandled = ("Traceback", "has raised an exception", "error: null")
    return bool(text) and text not in ("None", "null", "Error") and not any(u in text for u in unhandled)


def _without_message(detail: str) -> bool:
    """A refusal that reached the client with no message (`error: null`, an empty AppError)."""
    text = detail.strip()
    return not text or text in ("None", "null", "Error") or '"error": null' in text or "error: null" in text


def _try(client: Client, case: Case) -> tuple[Answer, Any]:
    """Send one case; a refusal must be a one-line AppError, a success must satisfy `case.ok`."""
    from gradio_client.exceptions import AppError

    try:
        result = client.predict(*case.args, api_name=case.api)
    except AppError as error:
        message = str(error)
        return Answer(case.name, _message_is_clean(message), message.splitlines()[0][:110] if message else ""), None
    except ValueError as error:  # gradio_client refuses to send it (e.g. an unknown choice)
        return Answer(case.name, True, f"client refused: {str(error)[:100]}"), None
    except Exception as error:  # noqa: BLE001 - anything else is an unclean answer, reported
        return Answer(case.name, False, f"{type(error).__name__}: {str(error)[:100]}"), None
    if case.ok is None:
        return Answer(case.name, False, f"accepted: {str(result)[:100]}"), result
    try:
        clean = bool(case.ok(result))
    except (KeyError, TypeError, IndexError):
        clean = False
    return Answer(case.name, clean, str(result)[:110]), result


def _still_serving(client: Client, photo: Path) -> bool:
    try:
        label, _ = client.predict(handle_file(str(photo)), "demo", api_name="/predict")
    except Exception:  # noqa: BLE001 - not serving, whatever the reason
        return False
    return isinstance(label, dict) and "label" in label


def _rater_loop(url: str, rater: str, n: int) -> tuple[list[tuple[str, str]], list[str]]:
    """Rate `n` photos; returns the acknowledged (image id, rater) pairs and the refusals."""
    acknowledged, refused = [], []
    try:
        client = Client(url, verbose=False)
    except Exception as error:  # noqa: BLE001 - a busy machine: the rater could not connect, counted
        return acknowledged, [f"connect: {type(error).__name__}: {str(error)[:80]}"]
    for _ in range(n):
        try:
            image_id, _, _ = client.predict(rater, api_name="/next_image")
            if not image_id:
                break
            entry, *_ = client.predict(rater, image_id, *GOOD_SCORES, api_name="/submit_rating")
            acknowledged.append((entry["image_id"], entry["rater"]))
        except Exception as error:  # noqa: BLE001 - counted, reported
            refused.append(f"{type(error).__name__}: {str(error)[:80]}")
    return acknowledged, refused


def _flood(url: str, photo: Path, calls: int, raters: int, photos: int, deadline_s: float) -> dict[str, Any]:
    flood_client = Client(url, verbose=False, max_workers=calls, httpx_kwargs={"timeout": deadline_s})
    start = time.perf_counter()
    jobs = [flood_client.submit(handle_file(str(photo)), "demo", "lrp", api_name="/explain")
            for _ in range(calls)]
    with ThreadPoolExecutor(raters) as pool:
        futures = [pool.submit(_rater_loop, url, RATERS[i], photos) for i in range(raters)]
        rated = [f.result() for f in as_completed(futures)]
    rating_s = time.perf_counter() - start
    explained, failed, reasons = 0, 0, set()
    for job in jobs:
        remaining = deadline_s - (time.perf_counter() - start)
        try:
            job.result(timeout=max(remaining, 0.1))
            explained += 1
        except Exception as error:  # noqa: BLE001 - queue full, timeout: counted
            failed += 1
            reasons.add(f"{type(error).__name__}: {str(error)[:80]}")
            job.cancel()
    acknowledged = [pair for done, _ in rated for pair in done]
    return {"explain_ok": explained, "explain_failed": failed, "explain_why": sorted(reasons),
            "acknowledged": acknowledged,
            "refused": [r for _, refused in rated for r in refused], "rating_s": rating_s,
            "flood_s": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood", type=int, default=70, help="/explain calls in the flood (default 70)")
    parser.add_argument("--raters", type=int, default=3, choices=(1, 2, 3))
    parser.add_argument("--photos", type=int, default=4, help="photos each rater rates during the flood")
    parser.add_argument("--deadline-s", type=float, default=150.0, help="most seconds the flood may take")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="melasma-abuse-") as tmp:
        folder, data_dir = Path(tmp) / "in", Path(tmp) / "data"
        folder.mkdir()
        good = folder / "good.jpg"
        good.write_bytes(_jpeg(99))
        with live_app(data_dir, raters=RATERS, max_upload_mb=UPLOAD_CAP_MB,
                      max_upload_megapixels=PIXEL_BUDGET_MP) as (url, client):
            photos = []
            for i in range(args.photos):
                photos.append(folder / f"face{i}.jpg")
                photos[-1].write_bytes(_jpeg(100 + i))
            first = client.predict([handle_file(str(p)) for p in photos], "", "", api_name="/ingest")
            cases = _file_cases(folder) + _rating_cases(first["added_ids"][0])
            cases += _training_cases(str(data_dir / "demo" / "labels.csv"))
            answers = []
            for case in cases:
                answer, result = _try(client, case)
                answers.append(answer)
                if case.api == "/start_training" and isinstance(result, str) and result:
                    with contextlib.suppress(Exception):  # accepted anyway: do not let it run
                        client.predict(result, api_name="/cancel_training")
            image_id = first["added_ids"][0]
            for count in (11, 13):  # the endpoint takes rater, image id, 12 scores and a note
                data = ["rater1", image_id, *([1] * count), ""]
                answers.append(_raw_call(url, "/submit_rating", data, f"rate {count} values over plain HTTP"))
            serving_after_memory = _still_serving(client, good)
            flood = _flood(url, good, args.flood, args.raters, args.photos, args.deadline_s)
            serving_after_flood = _still_serving(client, good)
            stored = {(r.image_id, r.rater) for r in RatingStore(DataLayout(data_dir).ratings_db).ratings()}
        lost = [pair for pair in flood["acknowledged"] if pair not in stored]
    clean = [a for a in answers if a.clean]
    print("| case | clean | answer |\n|---|---|---|")
    for answer in answers:
        detail = answer.detail.replace("|", "/").replace("\n", " ")
        print(f"| {answer.case} | {'yes' if answer.clean else 'NO'} | {detail} |")
    print()
    print(f"bad inputs tried: {len(answers)}, answered cleanly: {len(clean)}")
    silent = [a for a in answers if not a.clean and _without_message(a.detail)]
    crashes = int(not serving_after_memory) + int(not serving_after_flood)
    print("\n| tried | clean | refused without message | not clean | crash | lost |\n|---|---|---|---|---|---|")
    print(f"| {len(answers)} | {len(clean)} | {len(silent)} | {len(answers) - len(clean) - len(silent)} | "
          f"{crashes} | {len(lost)} |\n")
    print(f"app still serving after the memory cases: {'yes' if serving_after_memory else 'NO'}")
    print(f"flood: {args.flood} /explain calls, {flood['explain_ok']} answered, {flood['explain_failed']} "
          f"refused or unfinished {flood['explain_why']} in {flood['flood_s']:.0f} s; meanwhile {args.raters} raters: "
          f"{len(flood['acknowledged'])} ratings acknowledged in {flood['rating_s']:.0f} s, "
          f"{len(flood['refused'])} refused {flood['refused'][:2]}")
    print(f"ratings lost (acknowledged but not stored): {len(lost)}")
    print(f"app still serving after the flood: {'yes' if serving_after_flood else 'NO'}")
    print(f"total {time.perf_counter() - started:.0f} s")
    ok = (len(clean) == len(answers) and not lost and serving_after_memory and serving_after_flood
          and not flood["refused"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
