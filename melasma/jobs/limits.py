"""`TrainingLimits`: the bounds a training request must respect, checked on submit.

Every field of a request is bounded so that one request cannot take the server down: image size,
epochs, batch size, architectures per job, and how many jobs may wait (per user and in total). The
values are settings (`melasma.settings.Settings`, from MELASMA_MAX_IMAGE_SIZE, MELASMA_MAX_EPOCHS,
MELASMA_MAX_BATCH_SIZE, MELASMA_MAX_ARCHS, MELASMA_MAX_JOBS_PER_USER, MELASMA_MAX_JOBS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from melasma.errors import UserError
from melasma.settings import Settings

if TYPE_CHECKING:
    from melasma.training import TrainConfig


class LimitError(UserError):
    """A training request beyond this server's limits; the message says which and what to do."""


@dataclass(frozen=True)
class TrainingLimits:
    """Upper bounds of one training request and of the queue (waiting plus running jobs)."""

    max_image_size: int
    max_epochs: int
    max_batch_size: int
    max_archs: int
    max_jobs_per_user: int
    max_jobs: int

    @classmethod
    def from_settings(cls, settings: Settings) -> TrainingLimits:
        """The limits the settings hold (validated there, where the environment is read)."""
        return cls(settings.max_image_size, settings.max_epochs, settings.max_batch_size, settings.max_archs,
                   settings.max_jobs_per_user, settings.max_jobs)

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
