"""One job's training: `train_many` with its events written to the job store as they happen.

`run_job(db_path, job_id)` takes only plain arguments and opens its own store, so it runs the same
in the worker process (`melasma.jobs.worker`) and in the process ZeroGPU forks for a `spaces.GPU`
function. Before training it checks the job's memory estimate against the memory free now. It never
raises: every way a run can end is recorded in the store (done, cancelled, failed + message).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from melasma.jobs.store import JobStore

if TYPE_CHECKING:  # torch and the training code load only when a job runs
    import pandas as pd

    from melasma.training import TrainConfig

log = logging.getLogger(__name__)

#: Seconds between two progress writes for batch events (epoch and log events are always written).
PROGRESS_EVERY_S = 0.5


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """A TrainConfig as JSON-able values (paths as strings, tuples as lists)."""
    return {key: str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple)
            else value for key, value in dataclasses.asdict(config).items()}


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """The TrainConfig stored by `config_to_dict` (string paths and lists are accepted back)."""
    from melasma.training import TrainConfig

    names = {field.name for field in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{key: value for key, value in values.items() if key in names})


def describe_error(error: BaseException, arch: str | None) -> str:
    """A readable message for a failed run: input errors as raised, others in one line."""
    import torch

    where = f" while training {arch}" if arch else ""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return f"out of memory{where}: lower the batch size or the image size"
    if isinstance(error, (ValueError, FileNotFoundError)) and str(error):
        return str(error)  # our input errors (DatasetError lists every problem): shown as written
    first = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}{where}: {first}" if first else f"{type(error).__name__}{where}"


#: epoch-event fields shown in the log line
EPOCH_FIELDS = ("train_loss", "val_loss", "train_acc", "val_acc")


def _epoch_line(event: dict[str, Any], epochs: int) -> str:
    parts = [f"{key.replace('_', ' ')} {event[key]:.3f}" for key in EPOCH_FIELDS if key in event]
    best = " (best so far)" if event.get("best") else ""
    return f"{event.get('arch')} epoch {event.get('epoch')}/{event.get('epochs', epochs)}: " + ", ".join(parts) + best


class EventRecorder:
    """`on_event` / `should_stop` for `train_many`, writing progress, log and history to the store."""

    def __init__(self, store: JobStore, job_id: str, archs: list[str], epochs: int) -> None:
        self.store, self.job_id = store, job_id
        self.archs, self.epochs = list(archs), max(int(epochs), 1)
        self.arch: str | None = None
        self.stopped = False
        self._last_write = 0.0

    def _progress(self, arch: str | None, epoch_done: float) -> float:
        index = self.archs.index(arch) if arch in self.archs else 0
        within = min(max(epoch_done / self.epochs, 0.0), 1.0)
        return min((index + within) / max(len(self.archs), 1), 0.99)  # 1.0 once the job is done

    def __call__(self, event: dict[str, Any]) -> None:
        kind, arch, epoch = event.get("type"), event.get("arch"), event.get("epoch")
        new_arch = bool(arch) and arch != self.arch
        if arch:
            self.arch = str(arch)
        if kind == "batch":
            now = time.monotonic()
            if now - self._last_write < PROGRESS_EVERY_S and not new_arch:
                return
            self._last_write = now
            batches = max(int(event.get("n_batches") or 1), 1)
            done = (int(epoch or 1) - 1) + int(event.get("batch") or 0) / batches
            self.store.update(self.job_id, progress=self._progress(arch, done), arch=arch, epoch=epoch)
        elif kind == "epoch":
            self.store.update(self.job_id, progress=self._progress(arch, float(epoch or 0)), arch=arch,
                              epoch=epoch)
            self.store.add_event(self.job_id, "epoch", {key: value for key, value in event.items()
                                                        if key != "type"})
            self.store.add_event(self.job_id, "log", _epoch_line(event, self.epochs))
        elif kind == "arch_done":
            self.store.update(self.job_id, progress=self._progress(arch, self.epochs), arch=arch)
            accuracy = (event.get("metrics") or {}).get("accuracy")
            tested = f": test accuracy {accuracy:.3f}" if isinstance(accuracy, float) else ""
            self.store.add_event(self.job_id, "log", f"{arch} finished{tested}")
        elif kind == "log":
            self.store.add_event(self.job_id, "log", str(event.get("message", "")))

    def should_stop(self) -> bool:
        """Polled every batch: whether the job was cancelled (stays True once seen)."""
        if not self.stopped and self.store.cancel_requested(self.job_id):
            self.stopped = True
            self.store.add_event(self.job_id, "log", "cancel requested: stopping after this batch")
        return self.stopped


def summary_rows(summary: pd.DataFrame) -> list[dict[str, Any]]:
    """The summary DataFrame as a list of row dicts."""
    return [dict(row) for row in summary.to_dict(orient="records")]


def run_job(db_path: str, job_id: str) -> None:
    """Train the running job `job_id` and record its end in the store; never raises."""
    store = JobStore(db_path)
    job = store.get(job_id)
    config_values = job["config"]
    recorder = EventRecorder(store, job_id, config_values.get("archs", []), config_values.get("epochs", 1))
    store.add_event(job_id, "log", f"started {job_id}: {', '.join(recorder.archs)}, "
                                   f"up to {recorder.epochs} epochs, data {config_values.get('data')}")
    try:
        from melasma.jobs.memory import require_memory
        from melasma.training import train_many

        config = config_from_dict(config_values)
        require_memory(config)  # memory may have shrunk since the job was queued
        summary = train_many(config, on_event=recorder, should_stop=recorder.should_stop)
        rows = summary_rows(summary)
    except Exception as error:  # noqa: BLE001 - any training error fails the job, the app keeps serving
        message = describe_error(error, recorder.arch)
        log.warning("training job %s failed: %s", job_id, message, exc_info=not isinstance(error, ValueError))
        import torch

        torch.cuda.empty_cache()  # after an OOM, give the next job the memory back (no-op without CUDA)
        store.add_event(job_id, "log", f"failed: {message}")
        store.finish(job_id, "failed", error=message)
        return
    state = "cancelled" if recorder.stopped else "done"
    kept = f" ({len(rows)} architecture(s) kept)" if state == "cancelled" else ""
    store.add_event(job_id, "log", f"{state}{kept}: results in {job['run_dir']}")
    store.finish(job_id, state, summary=rows)
