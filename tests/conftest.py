"""Shared fixtures: a small synthetic data set, the real roboflow photos, a free TCP port."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from annotation.db.scratch import PostgresServer

# Tests run offline: no Gradio analytics, no model-hub look-ups.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROBOFLOW_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "roboflow-melasma"


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 60-image, 64 px synthetic set (seed 0); `labels.csv`, `images/`, `masks/` inside."""
    from melasma.data.synthetic import generate

    folder = tmp_path_factory.mktemp("synth")
    generate(folder, n=60, size=64, seed=0)
    return folder


@pytest.fixture(scope="session")
def roboflow_dir() -> Path:
    """The shared real-photo folder (47 melasma + 47 other photos, COCO lesion polygons)."""
    if not (ROBOFLOW_DIR / "_annotations.coco.json").is_file():
        pytest.fail(f"real-photo data missing: expected {ROBOFLOW_DIR} (see ../shared/data)")
    return ROBOFLOW_DIR


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
