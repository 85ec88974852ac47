"""Typed training events: what `train_many` tells its `on_event` callback while it runs.

Four frozen dataclasses, one per kind: `BatchDone` (throttled, for progress bars), `EpochDone` (one
history row), `LogLine` (a line for people) and `ArchDone` (an architecture trained and tested).
Consumers `match` on the class. `event.to_json()` / `event_from_json()` carry an event across a process or
API boundary (a `"type"` key names the class).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    """Base of the four events: `kind` names the class in JSON."""

    kind: ClassVar[str] = ""

    def to_json(self) -> dict[str, Any]:
        """The event as a JSON-able dict with its `"type"` ("batch", "epoch", "log", "arch_done")."""
        return {"type": self.kind, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class BatchDone(Event):
    """A training batch finished (sent at most every `loop.BATCH_EVENT_EVERY_S` and after an epoch's
    last batch). `loss` is the batch's mean loss (rank 0's share of it in a multi-process run)."""

    kind: ClassVar[str] = "batch"
    arch: str
    epoch: int
    batch: int
    n_batches: int
    loss: float


@dataclass(frozen=True)
class EpochDone(Event):
    """An epoch finished: the history row of `arch`; `best` when the validation loss improved."""

    kind: ClassVar[str] = "epoch"
    arch: str
    epoch: int
    epochs: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    seconds: float
    best: bool

    def row(self) -> dict[str, float | int]:
        """The history row (the columns of `fit`'s DataFrame)."""
        return {"epoch": self.epoch, "train_loss": self.train_loss, "train_acc": self.train_acc,
                "val_loss": self.val_loss, "val_acc": self.val_acc, "lr": self.lr, "seconds": self.seconds}


@dataclass(frozen=True)
class LogLine(Event):
    """A line for the log (start, weights used, early stop, collapse warning, cancellation)."""

    kind: ClassVar[str] = "log"
    message: str


@dataclass(frozen=True)
class ArchDone(Event):
    """An architecture finished: its test metrics (`evaluate_predictions` / `evaluate_regression`
    keys), training facts (epochs_run, best_epoch, seconds, device, lr, images_per_s), weights used
    and the collapse verdict."""

    kind: ClassVar[str] = "arch_done"
    arch: str
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    pretrained: str = ""
    collapsed: bool = False
    collapse_cause: str = ""


TrainingEvent = BatchDone | EpochDone | LogLine | ArchDone
OnEvent = Callable[[TrainingEvent], None]

EVENT_TYPES: dict[str, type[TrainingEvent]] = {cls.kind: cls for cls in (BatchDone, EpochDone, LogLine, ArchDone)}


def event_from_json(values: dict[str, Any]) -> TrainingEvent:
    """The event `Event.to_json` wrote; ValueError for an unknown type or missing fields."""
    kind = values.get("type")
    cls = EVENT_TYPES.get(str(kind))
    if cls is None:
        raise ValueError(f"unknown training event type {kind!r}: expected one of {', '.join(EVENT_TYPES)}")
    names = {item.name for item in dataclasses.fields(cls)}
    try:
        return cls(**{key: value for key, value in values.items() if key in names})
    except TypeError as error:
        raise ValueError(f"bad {kind} event: {error}") from None
