"""`create(arch, num_classes, pretrained)`: a study network with a fresh classification head.

`pretrained` is "off" (random init), "auto" (ImageNet weights from the hub; one warning and random
init when the hub cannot be reached) or the path of a local weights file (.safetensors, or .pth/.pt
read with ``torch.load(weights_only=True)``). ImageNet heads are dropped: the new head stays random.
"""

from __future__ import annotations

import logging
import socket
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from melasma.models.registry import ArchSpec, get_spec

log = logging.getLogger(__name__)

#: Hosts that serve the ImageNet weights of each source.
HUB_HOSTS: dict[str, str] = {"timm": "huggingface.co", "torchvision": "download.pytorch.org"}
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


class PretrainedWeightsWarning(RuntimeWarning):
    """ImageNet weights were asked for but could not be downloaded: the model is randomly initialised."""


@lru_cache(maxsize=None)
def _reachable(host: str, timeout: float = 3.0) -> bool:
    """Whether `host` accepts a TCP connection on 443 (checked once per process)."""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def build(spec: ArchSpec, num_classes: int, extra_kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """A randomly initialised model for `spec` with `num_classes` outputs."""
    kwargs = {**dict(spec.builder_kwargs), **dict(extra_kwargs or {})}
    if spec.source == "timm":
        import timm

        model = timm.create_model(spec.builder, pretrained=False, num_classes=num_classes, **kwargs)
    else:
        import torchvision

        model = getattr(torchvision.models, spec.builder)(weights=None, num_classes=num_classes, **kwargs)
    model.arch_name = spec.name
    model.arch_kwargs = dict(extra_kwargs or {})
    return model


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a local file, never unpickling arbitrary objects."""
    if not path.is_file():
        raise ValueError(f"pretrained weights file not found: {path}")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ValueError(f"pretrained weights must be one of {', '.join(WEIGHT_SUFFIXES)}, got {path.name}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any decoding failure is a bad file
        raise ValueError(f"cannot read weights file {path.name}: {error}") from error
    for key in ("state_dict", "model"):  # common training-checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path.name} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_backbone(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "weights") -> None:
    """Load `state` into `model`, dropping the classifier head; other mismatches raise ValueError."""
    spec = get_spec(model)
    own = model.state_dict()
    head = f"{spec.head}."
    state = {
        k: v for k, v in state.items()
        if not any(k.startswith(prefix) for prefix in spec.extra_weight_keys)
        and not (k.startswith(head) and (k not in own or own[k].shape != v.shape))
    }
    wrong_shape = sorted(k for k, v in state.items() if k in own and own[k].shape != v.shape)
    missing = sorted(k for k in own if k not in state and not k.startswith(head))
    unexpected = sorted(k for k in state if k not in own)
    if wrong_shape or missing or unexpected:
        problems = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
            if keys:
                problems.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
        raise ValueError(f"{source} do not fit {spec.name}: " + "; ".join(problems))
    model.load_state_dict(state, strict=False)


def _hub_weights(spec: ArchSpec, num_classes: int) -> nn.Module:
    """A model with ImageNet weights from the hub; raises on any download problem."""
    if not _reachable(HUB_HOSTS[spec.source]):
        raise ConnectionError(f"{HUB_HOSTS[spec.source]} is not reachable")
    if spec.source == "timm":
        import timm

        model = timm.create_model(spec.builder, pretrained=True, num_classes=num_classes,
                                  **dict(spec.builder_kwargs))
        model.arch_name = spec.name
        model.arch_kwargs = {}
        return model
    import torchvision

    weights = torchvision.models.get_model_weights(spec.builder).DEFAULT
    model = build(spec, num_classes, dict(spec.pretrained_kwargs))
    load_backbone(model, weights.get_state_dict(progress=False), f"ImageNet weights {weights}")
    return model


def create(arch: str, num_classes: int = 3, pretrained: str | Path = "off") -> nn.Module:
    """Build `arch` with a `num_classes` head; the model carries `arch_name` (and `arch_kwargs`)."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    spec = get_spec(arch)
    if pretrained == "off":
        return build(spec, num_classes)
    if pretrained == "auto":
        try:
            return _hub_weights(spec, num_classes)
        except Exception as error:  # noqa: BLE001 - any hub failure falls back to random init
            message = (
                f"{spec.name}: ImageNet weights could not be downloaded ({type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''}); using random initialisation. "
                f"Pass a local weights file instead (--pretrained PATH.safetensors or .pth)."
            )
            log.warning(message)
            warnings.warn(message, PretrainedWeightsWarning, stacklevel=2)
            return build(spec, num_classes)
    path = Path(pretrained)
    state = _read_weights(path)
    model = build(spec, num_classes, dict(spec.pretrained_kwargs))
    load_backbone(model, state, f"weights in {path.name}")
    return model
