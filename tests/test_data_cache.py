"""The decode-once cache: the second call reads arrays from disk; bad entries are rebuilt."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from melasma.data.cache import MIN_PARALLEL, default_cache_dir, entry_path, load_cached
from melasma.data.images import ImageLoadError, file_sha256, load_array


def _images(synth_dir: Path, n: int) -> list[Path]:
    return sorted((synth_dir / "images").glob("*.jpg"))[:n]


def test_second_call_reads_the_cache_not_the_image(synth_dir: Path, tmp_path: Path) -> None:
    paths = _images(synth_dir, 5)
    first = load_cached(paths, 32, cache_dir=tmp_path)
    assert first.shape == (5, 32, 32, 3) and first.dtype == np.uint8
    assert np.array_equal(first[0], load_array(paths[0], 32))
    assert len(list((tmp_path / "32px").glob("*.npy"))) == 5
    # plant a marker in one entry: a second call that decoded would not return it
    marker = np.full((32, 32, 3), 7, np.uint8)
    np.save(entry_path(tmp_path, file_sha256(paths[2]), 32), marker)
    second = load_cached(paths, 32, cache_dir=tmp_path)
    assert np.array_equal(second[2], marker)
    assert np.array_equal(np.delete(second, 2, axis=0), np.delete(first, 2, axis=0))
    # another size is another entry
    assert load_cached(paths[:1], 16, cache_dir=tmp_path).shape == (1, 16, 16, 3)
    assert len(list((tmp_path / "16px").glob("*.npy"))) == 1


def test_corrupt_or_misshaped_entries_are_rebuilt(synth_dir: Path, tmp_path: Path) -> None:
    paths = _images(synth_dir, 2)
    expected = load_cached(paths, 24, cache_dir=tmp_path)
    garbage = entry_path(tmp_path, file_sha256(paths[0]), 24)
    garbage.write_bytes(b"not a numpy file")
    wrong = entry_path(tmp_path, file_sha256(paths[1]), 24)
    np.save(wrong, np.zeros((3, 3), np.float32))
    assert np.array_equal(load_cached(paths, 24, cache_dir=tmp_path), expected)
    assert np.load(garbage, allow_pickle=False).shape == (24, 24, 3)
    assert np.load(wrong, allow_pickle=False).dtype == np.uint8


def test_parallel_decode_matches_serial_with_progress(synth_dir: Path, tmp_path: Path) -> None:
    paths = _images(synth_dir, MIN_PARALLEL + 4)
    paths.append(paths[0])  # the same file twice is decoded once
    seen: list[tuple[int, int]] = []
    out = load_cached(paths, 32, cache_dir=tmp_path, progress=lambda d, t: seen.append((d, t)))
    assert np.array_equal(out, np.stack([load_array(p, 32) for p in paths]))
    assert [d for d, _ in seen] == list(range(1, len(paths) + 1))
    assert {t for _, t in seen} == {len(paths)}
    assert len(list((tmp_path / "32px").glob("*.npy"))) == len(paths) - 1


_FORKS: list[int] = []
os.register_at_fork(before=lambda: _FORKS.append(os.getpid()))


def test_parallel_decode_forks_no_process(synth_dir: Path, tmp_path: Path) -> None:
    """The app decodes in its job thread beside uvicorn and torch threads: no fork there (threads)."""
    paths = _images(synth_dir, MIN_PARALLEL + 4)
    before = len(_FORKS)
    out = load_cached(paths, 32, cache_dir=tmp_path)
    assert len(_FORKS) == before and out.shape == (len(paths), 32, 32, 3)
    assert multiprocessing.active_children() == []


def test_bad_image_error_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really")
    with pytest.raises(ImageLoadError, match="broken.jpg"):
        load_cached([bad], 32, cache_dir=tmp_path / "cache")


def test_default_cache_dir_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MELASMA_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("MELASMA_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "melasma"
