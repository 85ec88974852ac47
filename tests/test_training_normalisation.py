"""Training honours a model's own input normalisation: EfficientNet-Lite0's packaged ImageNet weights
read [-1, 1] (mean = std = 0.5); batches, evaluation and the checkpoint all use it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from melasma.data.manifest import load_dataset
from melasma.inference import Predictor
from melasma.models import create, load_checkpoint
from melasma.models.registry import IMAGENET_MEAN, IMAGENET_STD
from melasma.training import TrainConfig, fit, train_many
from melasma.training.loop import input_normalisation, load_splits


def test_input_normalisation_is_the_models_own_or_imagenets() -> None:
    assert input_normalisation(create("efficientnet_lite0", 3, pretrained="auto")) == ((0.5,) * 3, (0.5,) * 3)
    assert input_normalisation(create("resnet18")) == (IMAGENET_MEAN, IMAGENET_STD)


@pytest.mark.slow
def test_batches_and_checkpoint_use_the_models_normalisation(synth_dir: Path, tmp_path: Path) -> None:
    config = TrainConfig(data=synth_dir, archs=("efficientnet_lite0",), epochs=1, batch_size=16, image_size=32,
                         pretrained="auto", out=tmp_path / "run", cache_dir=tmp_path / "cache", bootstrap=20)
    splits = load_splits(load_dataset(synth_dir), 32, torch.device("cpu"), config.cache_dir)
    model = create("efficientnet_lite0", 3, pretrained="auto")
    seen: list[tuple[float, float]] = []
    model.register_forward_pre_hook(lambda _m, args: seen.append((float(args[0].min()), float(args[0].max()))))
    fit(model, splits["train"], splits["val"], config, arch="efficientnet_lite0")
    assert seen  # training and validation batches: pixels in [0, 1] scaled to [-1, 1], not ImageNet's range
    assert min(low for low, _ in seen) >= -1.0 - 1e-6 and max(high for _, high in seen) <= 1.0 + 1e-6
    assert min(low for low, _ in seen) < -0.5  # dark pixels do reach the bottom of the range

    train_many(config)
    _, meta = load_checkpoint(tmp_path / "run" / "efficientnet_lite0")
    assert meta.mean == (0.5,) * 3 and meta.std == (0.5,) * 3
    predictor = Predictor.from_checkpoint(tmp_path / "run" / "efficientnet_lite0")
    assert torch.allclose(predictor._mean.flatten(), torch.full((3,), 0.5))
