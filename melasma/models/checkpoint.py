"""Checkpoints as `model.safetensors` + `model.json`: weights and metadata, never a pickle."""

from __future__ import annotations

import json
import math
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from melasma.models.factory import build
from melasma.models.registry import get_spec

WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"
REQUIRED_META = ("arch", "classes", "cutoffs", "image_size", "mean", "std")


class CheckpointError(ValueError):
    """A checkpoint folder that is missing, damaged or does not fit its architecture."""


def jsonable(value: Any) -> Any:
    """`value` with numpy scalars/arrays, paths and tuples made JSON-safe; NaN and inf become None."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def library_versions() -> dict[str, str]:
    """Versions of the libraries that define the weights' meaning."""
    import timm
    import torchvision

    import melasma

    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "timm": timm.__version__,
            "melasma": melasma.__version__}


def save_checkpoint(directory: str | Path, model: nn.Module, meta: Mapping[str, Any]) -> Path:
    """Write `directory/model.safetensors` and `directory/model.json`; returns the directory.

    `meta` must hold at least arch-independent keys classes, cutoffs, image_size, mean, std; `arch`,
    the builder options, library versions and the creation time are added here.
    """
    from safetensors.torch import save_file

    spec = get_spec(model)
    meta = {**dict(meta), "arch": spec.name, "arch_kwargs": dict(getattr(model, "arch_kwargs", {}))}
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise CheckpointError(f"checkpoint metadata lacks {', '.join(missing)}")
    meta.setdefault("versions", library_versions())
    meta.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"arch": spec.name, "format": "melasma"})
    (directory / META_FILE).write_text(json.dumps(jsonable(meta), indent=2, allow_nan=False) + "\n")
    return directory


def read_meta(directory: str | Path) -> dict[str, Any]:
    """The metadata of a checkpoint folder, checked for the required keys."""
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory} is not a checkpoint: {META_FILE} is missing")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is damaged: {error}") from error
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} is damaged: expected a JSON object")
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}")
    if not isinstance(meta["classes"], list) or len(meta["classes"]) < 2:
        raise CheckpointError(f"{path}: classes must be a list of at least two names")
    return meta


def load_checkpoint(directory: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """The model (in eval mode, on `device`) and its metadata; raises CheckpointError when unusable."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_meta(directory)
    weights = Path(directory) / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{directory} is not a checkpoint: {WEIGHTS_FILE} is missing")
    try:
        spec = get_spec(str(meta["arch"]))
    except ValueError as error:
        raise CheckpointError(f"{weights.parent}: {error}") from error
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{weights} is damaged: {error}") from error
    model = build(spec, len(meta["classes"]), meta.get("arch_kwargs") or {})
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()
        detail = " ".join(line.strip() for line in first[1:3]) or first[0]
        raise CheckpointError(f"{weights} does not fit {spec.name} with {len(meta['classes'])} "
                              f"classes: {detail}") from error
    return model.to(device).eval(), meta
