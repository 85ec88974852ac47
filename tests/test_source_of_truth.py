"""One definition each: the data folder's layout, the environment (read in Settings only), the JSON
sanitiser."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from melasma.jsonable import dumps, jsonable
from melasma.layout import JOBS_DB, RATINGS_DB, DataLayout
from melasma.settings import Settings
from melasma.ui.app import private_files


def test_settings_and_layout_name_the_same_files(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    layout = DataLayout(tmp_path)
    assert settings.ratings_db == layout.ratings_db == tmp_path / "annotations.sqlite"
    assert settings.jobs_db == layout.jobs_db == tmp_path / "jobs.sqlite"
    assert (settings.photos_dir, settings.exports_dir, settings.runs_dir, settings.cache_dir, settings.demo_dir) == (
        layout.photos_dir, layout.exports_dir, layout.runs_dir, layout.cache_dir, layout.demo_dir)
    private = private_files(settings)
    assert tmp_path.resolve() / "jobs.sqlite-wal" in private and tmp_path.resolve() / "annotations.sqlite" in private
    assert tmp_path.resolve() / "photos" in private


def test_only_the_layout_names_the_databases() -> None:
    """A path built from "annotations.sqlite" or "jobs.sqlite" anywhere else bypasses DataLayout."""
    root = Path(__file__).resolve().parents[1]
    spelled = sorted(f"{path.relative_to(root)}:{node.lineno}"
                     for package in ("melasma", "annotation") for path in (root / package).rglob("*.py")
                     if path.name != "layout.py"
                     for node in ast.walk(ast.parse(path.read_text()))
                     if isinstance(node, ast.Constant) and node.value in (RATINGS_DB, JOBS_DB))
    assert spelled == []


def test_environment_read_in_settings() -> None:
    settings = Settings.from_env({"MELASMA_CACHE_DIR": "/x/cache", "SPACE_ID": "me/studio",
                                  "GRADIO_SERVER_NAME": "0.0.0.0", "MELASMA_GPU_SECONDS": "90"})
    assert settings.image_cache_dir == Path("/x/cache") and settings.space_id == "me/studio"
    assert settings.server_name == "0.0.0.0" and settings.gpu_seconds == 90
    defaults = Settings.from_env({})
    assert defaults.image_cache_dir == Path.home() / ".cache" / "melasma"
    assert (defaults.space_id, defaults.server_name, defaults.gpu_seconds) == ("", "", None)


def test_no_module_but_settings_reads_the_environment() -> None:
    """app.py and the job runner's ZeroGPU switch (SPACES_ZERO_GPU, needed while modules import) aside."""
    root = Path(__file__).resolve().parents[1] / "melasma"
    allowed = {
        "settings.py": "the one reader",
        "cli/settings_flags.py": "lays flags over the environment for Settings.from_env",
        "jobs/runner.py": "SPACES_ZERO_GPU while modules import",
        "jobs/memory.py": "SPACES_ZERO_GPU (the app process must not touch CUDA there)",
        "jobs/worker.py": "passes the environment on to the worker process",
        "training/distributed.py": "torchrun's WORLD_SIZE / RANK / LOCAL_RANK protocol",
        "cli/__init__.py": "MELASMA_DEBUG before any settings exist",
        "cli/serve.py": "Gradio's own GRADIO_SERVER_PORT / GRADIO_SERVER_NAME",
    }
    readers = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                     if ("os.environ" in p.read_text() or "os.getenv" in p.read_text())
                     and str(p.relative_to(root)) not in allowed)
    assert readers == []


def test_jsonable_makes_strict_json() -> None:
    value = {"nan": float("nan"), "inf": -math.inf, "np": np.float32(0.5), "arr": np.arange(3),
             "t": torch.tensor(1.5), 3: (Path("a/b"), {True}), "device": torch.device("cpu"), "ok": [1, "x", None]}
    assert jsonable(value) == {"nan": None, "inf": None, "np": 0.5, "arr": [0, 1, 2], "t": 1.5,
                               "3": ["a/b", [True]], "device": "cpu", "ok": [1, "x", None]}
    assert json.loads(dumps(value, indent=1))["arr"] == [0, 1, 2]
    with pytest.raises(ValueError):
        json.dumps({"nan": float("nan")}, allow_nan=False)  # what dumps avoids
