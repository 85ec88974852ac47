"""Checkpoints as `model.safetensors` + `model.json`: weights and metadata, never a pickle.

`model.json` is read into a frozen `CheckpointMeta` (`CheckpointMeta.from_json`) before any weights
are read: the required keys (arch, classes, cutoffs, image_size, mean, std) must have the right
types and ranges, and `arch_kwargs` may only hold the builder options the architecture's spec
names. The optional keys callers read become typed fields with their fallbacks for older
checkpoints, set there and nowhere else: `head` (classification), `seed` (else `data.seed`, else
`config.seed`, else 0), `manifest_hash` (else `data.manifest_hash`, else None), `pretrained`
("not recorded"), `created` (None), `allow_patient_overlap` (`config`'s, else False) and the
`data`, `config` and `metrics` tables (empty when missing or not an object). Every other key
(versions, ci95, collapse, training, command, ...) is kept unchecked in `CheckpointMeta.extra`.
Every problem is one `CheckpointError` line naming the file and the key.
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

import melasma
from melasma.errors import UserError
from melasma.jsonable import jsonable
from melasma.masi import SCALE_MAX, SEVERITIES
from melasma.models.factory import build
from melasma.models.head import Head, head_for
from melasma.models.registry import ArchSpec, get_spec

WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"
REQUIRED_META = ("arch", "classes", "cutoffs", "image_size", "mean", "std")
#: `pretrained` of a checkpoint that does not say what its weights started from.
NOT_RECORDED = "not recorded"
#: The keys of model.json that become `CheckpointMeta` fields (the rest go to `extra`).
_TYPED = frozenset({*REQUIRED_META, "arch_kwargs", "head", "seed", "manifest_hash", "pretrained", "created",
                    "data", "config", "metrics"})
#: Accepted model input sizes, in pixels.
IMAGE_SIZE_RANGE = (16, 1024)


class CheckpointError(UserError):
    """A checkpoint folder that is missing, damaged or does not fit its architecture."""


def library_versions() -> dict[str, str]:
    """Versions of the libraries that define the weights' meaning."""
    import timm
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "timm": timm.__version__,
            "melasma": melasma.__version__}


def save_checkpoint(directory: str | Path, model: nn.Module, meta: Mapping[str, Any],
                    dtype: torch.dtype | None = None) -> Path:
    """Write `directory/model.safetensors` and `directory/model.json`; returns the directory.
    `dtype` (e.g. torch.float16, to halve the file) converts the floating-point tensors on the way
    out; `load_checkpoint` reads them back into the fp32 model.

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
    meta.setdefault("created", datetime.now(UTC).isoformat(timespec="seconds"))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", dtype=dtype if dtype is not None and v.is_floating_point() else v.dtype)
               .contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"arch": spec.name, "format": "melasma"})
    (directory / META_FILE).write_text(json.dumps(jsonable(meta), indent=2, allow_nan=False) + "\n")
    return directory


@dataclass(frozen=True)
class CheckpointMeta:
    """The validated metadata of a checkpoint (see the module doc for the optional fields'
    fallbacks); `extra` holds every other key of model.json, unchecked."""

    arch: str
    classes: tuple[str, ...]
    cutoffs: tuple[float, float]
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    head: Head = field(default_factory=lambda: head_for("classification"))
    seed: int = 0
    manifest_hash: str | None = None
    pretrained: str = NOT_RECORDED
    created: str | None = None
    allow_patient_overlap: bool = False
    data: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> ArchSpec:
        return get_spec(self.arch)

    @classmethod
    def from_json(cls, raw: Any) -> CheckpointMeta:
        """Check a decoded model.json against the schema and apply the fallbacks; raises
        ValueError naming the key."""
        if not isinstance(raw, dict):
            raise ValueError("expected a JSON object")
        missing = [key for key in REQUIRED_META if key not in raw]
        if missing:
            raise ValueError(f"lacks {', '.join(missing)}")
        if not isinstance(raw["arch"], str):
            raise ValueError(f"arch must be a name, got {raw['arch']!r:.40}")
        spec = get_spec(raw["arch"])
        if raw["classes"] != list(SEVERITIES):
            raise ValueError(f"classes must be {list(SEVERITIES)}, got {raw['classes']!r:.80}")
        cutoffs = [_number(v) for v in raw["cutoffs"]] if isinstance(raw["cutoffs"], list) else []
        top = SCALE_MAX["masi"]
        if len(cutoffs) != 2 or None in cutoffs or not 0 < cutoffs[0] < cutoffs[1] <= top:  # type: ignore[operator]
            raise ValueError(f"cutoffs must be 2 increasing numbers between 0 and {top:g}, "
                             f"got {raw['cutoffs']!r:.80}")
        size = raw["image_size"]
        low, high = IMAGE_SIZE_RANGE
        if isinstance(size, bool) or not isinstance(size, int) or not low <= size <= high:
            raise ValueError(f"image_size must be an integer from {low} to {high}, got {size!r:.40}")
        if size < spec.min_size:
            raise ValueError(f"image_size {size} is below {spec.name}'s minimum of {spec.min_size}")
        data, config = _table(raw, "data"), _table(raw, "config")
        return cls(
            arch=spec.name, classes=tuple(raw["classes"]), cutoffs=(cutoffs[0], cutoffs[1]),  # type: ignore[arg-type]
            image_size=size, mean=_triple(raw, "mean", positive=False), std=_triple(raw, "std", positive=True),
            arch_kwargs=_arch_kwargs(raw.get("arch_kwargs"), spec),
            head=head_for(_text(raw, "head") or "classification"),
            seed=_seed(raw.get("seed"), data.get("seed"), config.get("seed")),
            manifest_hash=_text(raw, "manifest_hash") or _text(data, "manifest_hash", "data.manifest_hash"),
            pretrained=_text(raw, "pretrained") or NOT_RECORDED,
            created=_text(raw, "created"),
            allow_patient_overlap=bool(config.get("allow_patient_overlap", False)),
            data=data, config=config, metrics=_table(raw, "metrics"),
            extra={key: value for key, value in raw.items() if key not in _TYPED},
        )


def _number(value: Any) -> float | None:
    """A finite float from a JSON number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _triple(raw: dict[str, Any], key: str, positive: bool) -> tuple[float, float, float]:
    value = raw[key]
    numbers = [_number(v) for v in value] if isinstance(value, list) else []
    if len(numbers) != 3 or any(n is None for n in numbers):
        raise ValueError(f"{key} must be 3 finite numbers, got {value!r:.80}")
    if positive and any(n <= 0 for n in numbers):  # type: ignore[operator]
        raise ValueError(f"{key} must be 3 numbers above 0, got {value!r:.80}")
    return numbers[0], numbers[1], numbers[2]  # type: ignore[return-value]


def _arch_kwargs(value: Any, spec: ArchSpec) -> dict[str, Any]:
    """Only the builder options the spec names, with the spec's value types (no free kwargs)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"arch_kwargs must be an object, got {type(value).__name__}")
    allowed = dict(spec.pretrained_kwargs)
    for key, item in value.items():
        if key not in allowed:
            raise ValueError(f"arch_kwargs: {key!r} is not an option of {spec.name} "
                             f"(allowed: {', '.join(allowed) or 'none'})")
        if type(item) is not type(allowed[key]):
            raise ValueError(f"arch_kwargs: {key} must be {type(allowed[key]).__name__}, got {item!r:.40}")
    return dict(value)


def _table(raw: dict[str, Any], key: str) -> dict[str, Any]:
    """A nested object of model.json; empty when missing or not an object."""
    value = raw.get(key)
    return value if isinstance(value, dict) else {}


def _text(raw: dict[str, Any], key: str, name: str | None = None) -> str | None:
    """An optional string; None when missing or null."""
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name or key} must be a string, got {value!r:.40}")
    return value


def _seed(*candidates: Any) -> int:
    """The first recorded seed of top-level `seed`, `data.seed`, `config.seed`; 0 when none is."""
    for value in candidates:
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"seed must be an integer, got {value!r:.40}")
        return value
    return 0


def read_checkpoint_meta(directory: str | Path) -> CheckpointMeta:
    """The validated metadata of a checkpoint folder; raises CheckpointError (one line)."""
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory} is not a checkpoint: {META_FILE} is missing")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is damaged: {error}") from None
    except RecursionError:
        raise CheckpointError(f"{path} is damaged: nested too deeply") from None
    try:
        return CheckpointMeta.from_json(raw)
    except ValueError as error:
        message = str(error).splitlines()[0] if str(error) else "invalid"
        raise CheckpointError(f"{path}: {message}") from None


def load_checkpoint(directory: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, CheckpointMeta]:
    """The model (in eval mode, on `device`) and its metadata; raises CheckpointError when unusable."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    checked = read_checkpoint_meta(directory)
    weights = Path(directory) / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{directory} is not a checkpoint: {WEIGHTS_FILE} is missing")
    spec = checked.spec
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{weights} is damaged: {error}") from None
    outputs = checked.head.outputs(len(checked.classes))
    try:
        model = build(spec, outputs, checked.arch_kwargs)
    except (TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{weights.parent}: cannot build {spec.name}: {error}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()
        detail = " ".join(line.strip() for line in first[1:3]) or first[0]
        shape = "1 output (regression head)" if outputs == 1 else f"{outputs} classes"
        raise CheckpointError(f"{weights} does not fit {spec.name} with {shape}: {detail}") from None
    bad = next((key for key, tensor in state.items()
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())), None)
    if bad is not None:
        raise CheckpointError(f"{weights} is damaged: {bad} holds NaN or infinite values")
    return model.to(device).eval(), checked
