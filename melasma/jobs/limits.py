"""`TrainingLimits`: the bounds a training request must respect, as settings, checked on submit.

Every field of a request is bounded so that one request cannot take the server down: image size,
epochs, batch size, architectures per job, and how many jobs may wait (per user and in total).
Environment: MELASMA_MAX_IMAGE_SIZE, MELASMA_MAX_EPOCHS, MELASMA_MAX_BATCH_SIZE, MELASMA_MAX_ARCHS,
MELASMA_MAX_JOBS_PER_USER, MELASMA_MAX_JOBS.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from melasma.errors import UserError

if TYPE_CHECKING:
    from melasma.training import TrainConfig

#: field name -> environment variable
ENV_NAMES: dict[str, str] = {
    "max_image_size": "MELASMA_MAX_IMAGE_SIZE",
    "max_epochs": "MELASMA_MAX_EPOCHS",
    "max_batch_size": "MELASMA_MAX_BATCH_SIZE",
    "max_archs": "MELASMA_MAX_ARCHS",
    "max_jobs_per_user": "MELASMA_MAX_JOBS_PER_USER",
    "max_jobs": "MELASMA_MAX_JOBS",
}


class LimitError(UserError):
    """A training request beyond this server's limits; the message says which and what to do."""


@dataclass(frozen=True)
class TrainingLimits:
    """Upper bounds of one training request and of the queue (waiting plus running jobs)."""

    max_image_size: int = 384
    max_epochs: int = 100
    max_batch_size: int = 128
    max_archs: int = 6
    max_jobs_per_user: int = 2
    max_jobs: int = 10

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"{ENV_NAMES[item.name]} must be a whole number >= 1, got {value!r}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TrainingLimits:
        """The limits from MELASMA_MAX_* environment variables, defaults for those unset."""
        env = os.environ if env is None else env
        values: dict[str, int] = {}
        for name, variable in ENV_NAMES.items():
            text = env.get(variable, "").strip()
            if text:
                if not text.isdigit():
                    raise UserError(f"{variable} must be a whole number >= 1, got {text!r}")
                values[name] = int(text)
        return cls(**values)

    def check(self, config: TrainConfig) -> None:
        """Raise LimitError naming every field of `config` above its limit."""
        problems = [
            f"{what} {value}{unit} is above this server's limit of {limit}{unit}"
            for what, value, limit, unit in (
                ("image size", config.image_size, self.max_image_size, " px"),
                ("epochs", config.epochs, self.max_epochs, ""),
                ("batch size", config.batch_size, self.max_batch_size, ""),
                ("the number of architectures", len(config.archs), self.max_archs, ""),
            )
            if value > limit
        ]
        if problems:
            raise LimitError("; ".join(problems) + ". Lower the value, or ask the coordinator to raise the limit.")
