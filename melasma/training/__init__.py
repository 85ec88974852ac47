"""Training and evaluation of the study's CNNs: config, device-side augmentation, the loop, metrics.

Names load on first use, so that reading `TrainConfig`'s fields (the CLI's --help) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from melasma.training.config import TrainConfig
    from melasma.training.device import resolve_device
    from melasma.training.loop import TrainingCancelled, fit
    from melasma.training.run import train_many

_LAZY = {"TrainConfig": "config", "resolve_device": "device", "TrainingCancelled": "loop", "fit": "loop",
         "train_many": "run"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"melasma.training.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'melasma.training' has no attribute {name!r}")


__all__ = ["TrainConfig", "TrainingCancelled", "fit", "resolve_device", "train_many"]
