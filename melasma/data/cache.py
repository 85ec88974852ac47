"""Decode-once image cache: uint8 arrays at training size, on disk, keyed by content hash and size.

The first call decodes every image (in a thread pool when there are many) and writes
`<cache_dir>/<size>px/<sha256>.npy`; later calls only hash the files and read the arrays back.
Unreadable or mis-shaped cache entries are decoded again and rewritten.

Threads, not processes: the app runs this in its job thread beside uvicorn and torch threads, where
forking is unsafe, and Pillow releases the GIL while it decodes and resizes, so threads decode in
parallel without a process start-up or copying arrays back (docs/install.md has the measurement).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import numpy as np

from melasma.data.images import file_sha256, load_array
from melasma.settings import Settings

#: Below this many images to decode, decoding stays in this process.
MIN_PARALLEL = 16

Progress = Callable[[int, int], None]


def default_cache_dir() -> Path:
    """`$MELASMA_CACHE_DIR`, else `~/.cache/melasma` (read by `melasma.settings.Settings`)."""
    return Settings.from_env().image_cache_dir


def entry_path(cache_dir: str | os.PathLike, digest: str, size: int) -> Path:
    """Where the array of the image with content hash `digest` at `size` pixels is stored."""
    return Path(cache_dir) / f"{size}px" / f"{digest}.npy"


def _read_entry(path: Path, size: int) -> np.ndarray | None:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if array.shape != (size, size, 3) or array.dtype != np.uint8:
        return None
    return array


def _write_entry(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            np.save(out, array, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_cached(
    paths: Sequence[str | os.PathLike],
    size: int,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Return (N, size, size, 3) uint8 images, decoding only those not cached yet.

    `progress(done, total)` is called as images are read or decoded. Decoding errors propagate as
    `ImageLoadError` naming the file.
    """
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    total = len(paths)
    out = np.empty((total, size, size, 3), dtype=np.uint8)
    misses: dict[str, list[int]] = {}
    sources: dict[str, str] = {}
    done = 0
    for i, path in enumerate(paths):
        digest = file_sha256(path)
        array = _read_entry(entry_path(root, digest, size), size)
        if array is None:
            misses.setdefault(digest, []).append(i)
            sources.setdefault(digest, os.fspath(path))
            continue
        out[i] = array
        done += 1
        if progress:
            progress(done, total)

    decode = partial(load_array, size=size)
    digests = list(misses)
    with ExitStack() as stack:
        if len(digests) >= MIN_PARALLEL and (os.cpu_count() or 1) > 1:
            pool = stack.enter_context(ThreadPoolExecutor(max_workers=os.cpu_count() or 1))
            arrays: Iterator[np.ndarray] = pool.map(decode, [sources[d] for d in digests])
        else:
            arrays = map(decode, [sources[d] for d in digests])
        for digest, array in zip(digests, arrays):
            _write_entry(entry_path(root, digest, size), array)
            for i in misses[digest]:
                out[i] = array
                done += 1
                if progress:
                    progress(done, total)
    return out
