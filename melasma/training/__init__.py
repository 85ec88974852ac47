"""Training and evaluation of the study's CNNs: config, device-side augmentation, the loop, metrics."""

from melasma.training.config import TrainConfig
from melasma.training.device import resolve_device
from melasma.training.loop import TrainingCancelled, fit, train_many

__all__ = ["TrainConfig", "TrainingCancelled", "fit", "resolve_device", "train_many"]
