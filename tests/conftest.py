"""Shared fixtures: a small synthetic data set, the real roboflow photos, a free TCP port."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from annotation.db.scratch import PostgresServer

# Tests run offline: no Gradio analytics, no model-hub look-ups.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: Where the real photos are looked for unless MELASMA_REAL_PHOTOS or --real-photos names a folder.
ROBOFLOW_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "roboflow-melasma"
REAL_PHOTOS_ENV = "MELASMA_REAL_PHOTOS"
#: How to get the real photos (said once at the end of a run that skipped their tests).
REAL_PHOTOS_HOWTO = (
    "the Roboflow melasma sample (CC BY 4.0), folder dataset/train of the public GitHub repository "
    "killflex/melasma-diagnosis, arranged as melasma/, non-melasma/ and _annotations.coco.json; point "
    f"{REAL_PHOTOS_ENV}=DIR or pytest --real-photos DIR at it")
_SKIPPED_REAL = pytest.StashKey[int]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--real-photos", default=None, metavar="DIR",
                     help=f"folder of the real photos (default: ${REAL_PHOTOS_ENV}, else ../shared/data/roboflow-melasma)")


def real_photos_dir(config: pytest.Config) -> Path:
    """The real-photo folder: --real-photos, else MELASMA_REAL_PHOTOS, else ../shared/data/roboflow-melasma."""
    named = config.getoption("--real-photos") or os.environ.get(REAL_PHOTOS_ENV)
    return Path(named).expanduser().resolve() if named else ROBOFLOW_DIR


def _photos_missing(config: pytest.Config) -> bool:
    return not (real_photos_dir(config) / "_annotations.coco.json").is_file()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without the real photos (and outside CI) their tests are set aside at collection, so that a fresh
    clone's run ends with one line saying how to get them (under CI=true they run and fail)."""
    if not _photos_missing(config) or os.environ.get("CI", "").lower() == "true":
        return
    needing = [item for item in items if "roboflow_dir" in getattr(item, "fixturenames", ())]
    if needing:
        config.hook.pytest_deselected(items=needing)
        items[:] = [item for item in items if item not in needing]
        config.stash[_SKIPPED_REAL] = len(needing)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """One line for the tests set aside for want of the real photos: how to get them."""
    count = config.stash.get(_SKIPPED_REAL, 0)
    if count:
        terminalreporter.write_line(f"{count} real-photo tests skipped (no photos at {real_photos_dir(config)}): "
                                    f"get {REAL_PHOTOS_HOWTO}.")


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 60-image, 64 px synthetic set (seed 0); `labels.csv`, `images/`, `masks/` inside."""
    from melasma.data.synthetic import generate

    folder = tmp_path_factory.mktemp("synth")
    generate(folder, n=60, size=64, seed=0)
    return folder


@pytest.fixture(scope="session")
def roboflow_dir(request: pytest.FixtureRequest) -> Path:
    """The real-photo folder (47 melasma + 47 other photos, COCO lesion polygons). Without it the test is
    skipped (one summary line says how to get the photos), or fails when CI=true."""
    folder = real_photos_dir(request.config)
    if not (folder / "_annotations.coco.json").is_file():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"real-photo data missing: expected {folder} ({REAL_PHOTOS_ENV} or --real-photos)")
        pytest.skip(f"no real photos at {folder} (set {REAL_PHOTOS_ENV})")
    return folder


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server the tests may create databases on: MELASMA_TEST_POSTGRES (a URL) if set,
    else a throw-away cluster for the session. Without PostgreSQL the test is skipped, or fails when
    CI=true (CI must test both rater-store backends)."""
    from annotation.db.scratch import PostgresServer, ScratchCluster, ScratchClusterError

    if os.environ.get("MELASMA_TEST_POSTGRES"):
        yield PostgresServer(os.environ["MELASMA_TEST_POSTGRES"])
        return
    try:
        cluster = ScratchCluster.start()
    except ScratchClusterError as error:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI needs PostgreSQL for the rater-store tests: {error}")
        pytest.skip(f"no PostgreSQL here: {error}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database (dropped after the test)."""
    url = postgres_server.create_database()
    try:
        yield url
    finally:
        postgres_server.drop_database(url)


@pytest.fixture
def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
