"""Shared fixtures: a small synthetic data set, the real roboflow photos, a free TCP port."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

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


@pytest.fixture
def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
