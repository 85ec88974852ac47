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

from melasma.errors import UserError
from melasma.jobs.memory import require_memory
from melasma.jobs.store import JobStore
from melasma.training import TrainConfig
from melasma.training.events import ArchDone, BatchDone, EpochDone, LogLine

if TYPE_CHECKING:
    import pandas as pd

    from melasma.training.events import TrainingEvent

log = logging.getLogger(__name__)

#: Seconds between two progress writes for batch events (epoch and log events are always written).
PROGRESS_EVERY_S = 0.5


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """A TrainConfig as JSON-able values (paths as strings, tuples as lists)."""
    return {key: str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple)
            else value for key, value in dataclasses.asdict(config).items()}


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """The TrainConfig stored by `config_to_dict` (string paths and lists are accepted back)."""
    names = {field.name for field in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{key: value for key, value in values.items() if key in names})


def describe_error(error: BaseException, arch: str | None) -> str:
    """A readable message for a failed run: input errors as raised, others in one line."""
    import torch

    # deferred: imports torch; the app process imports this module without it
    from melasma.training import distributed

    where = f" while training {arch}" if arch else ""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return f"out of memory{where}: lower the batch size or the image size"
    lost = distributed.peer_lost(error) if distributed.launched() else None
    if lost:
        return (f"another process of this multi-process training stopped (killed, crashed or out of memory){where}, "
                f"so the run cannot go on ({lost})")
    if isinstance(error, (UserError, FileNotFoundError)) and str(error):
        return str(error)  # our refusals (DatasetError lists every problem): shown as written
    first = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}{where}: {first}" if first else f"{type(error).__name__}{where}"


def _epoch_line(event: EpochDone) -> str:
    best = " (best so far)" if event.best else ""
    return (f"{event.arch} epoch {event.epoch}/{event.epochs}: train loss {event.train_loss:.3f}, val loss "
            f"{event.val_loss:.3f}, train acc {event.train_acc:.3f}, val acc {event.val_acc:.3f}{best}")


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

    def _enter(self, arch: str) -> bool:
        """Note the architecture an event is about; whether it is a new one."""
        new = arch != self.arch
        self.arch = arch
        return new

    def __call__(self, event: TrainingEvent) -> None:
        match event:
            case BatchDone(arch=arch, epoch=epoch):
                now, new_arch = time.monotonic(), self._enter(arch)
                if now - self._last_write < PROGRESS_EVERY_S and not new_arch:
                    return
                self._last_write = now
                done = (epoch - 1) + event.batch / max(event.n_batches, 1)
                self.store.update(self.job_id, progress=self._progress(arch, done), arch=arch, epoch=epoch)
            case EpochDone(arch=arch, epoch=epoch):
                self._enter(arch)
                self.store.update(self.job_id, progress=self._progress(arch, float(epoch)), arch=arch, epoch=epoch)
                history_row = event.to_json()
                del history_row["type"]
                self.store.add_event(self.job_id, "epoch", history_row)
                self.store.add_event(self.job_id, "log", _epoch_line(event))
            case ArchDone(arch=arch):
                self._enter(arch)
                self.store.update(self.job_id, progress=self._progress(arch, self.epochs), arch=arch)
                accuracy = event.metrics.get("accuracy")
                tested = f": test accuracy {accuracy:.3f}" if isinstance(accuracy, float) else ""
                self.store.add_event(self.job_id, "log", f"{arch} finished{tested}")
            case LogLine(message=message):
                self.store.add_event(self.job_id, "log", message)

    def should_stop(self) -> bool:
        """Polled every batch: whether the job was cancelled (stays True once seen)."""
        if not self.stopped and self.store.cancel_requested(self.job_id):
            self.stopped = True
            self.store.add_event(self.job_id, "log", "cancel requested: stopping after this batch")
        return self.stopped


def _run_other_rank(db_path: str, job_id: str) -> None:
    """A rank other than 0 of a multi-process job: trains its shard, writes nothing. An error ends the
    process (torchrun then stops the others, and rank 0 or the runner records why)."""
    # deferred: imports torch; the app process imports this module without it
    from melasma.training import train_many

    train_many(config_from_dict(JobStore(db_path).get(job_id).config))


def summary_rows(summary: pd.DataFrame) -> list[dict[str, Any]]:
    """The summary DataFrame as a list of row dicts."""
    return [dict(row) for row in summary.to_dict(orient="records")]


def job_processes(db_path: str, job_id: str) -> int:
    """How many processes `job_id` trains with (`TrainConfig.processes`; 0: one per GPU present)."""
    # deferred: imports torch; the app process imports this module without it
    from melasma.training import distributed

    config = JobStore(db_path).get(job_id).config
    return distributed.processes_for(int(config.get("processes", 0)), str(config.get("device", "auto")))


def run_job(db_path: str, job_id: str) -> None:
    """Train the running job `job_id` and record its end in the store; never raises. Under torchrun,
    rank 0 does this and the other ranks only train (`_run_other_rank`)."""
    # deferred: imports torch; the app process imports this module without it
    from melasma.training import distributed

    if distributed.launched_rank() != 0:
        _run_other_rank(db_path, job_id)
        return
    store = JobStore(db_path)
    job = store.get(job_id)
    config_values = job.config
    recorder = EventRecorder(store, job_id, config_values.get("archs", []), config_values.get("epochs", 1))
    store.add_event(job_id, "log", f"started {job_id}: {', '.join(recorder.archs)}, "
                                   f"up to {recorder.epochs} epochs, data {config_values.get('data')}")
    try:
        # deferred: imports torch; the app process imports this module without it
        from melasma.training import train_many

        config = config_from_dict(config_values)
        require_memory(config)  # memory may have shrunk since the job was queued
        summary = train_many(config, on_event=recorder, should_stop=recorder.should_stop)
        rows = summary_rows(summary)
    except Exception as error:
        message = describe_error(error, recorder.arch)
        log.warning("training job %s failed: %s", job_id, message, exc_info=not isinstance(error, UserError))
        import torch

        torch.cuda.empty_cache()  # after an OOM, give the next job the memory back (no-op without CUDA)
        store.add_event(job_id, "log", f"failed: {message}")
        store.finish(job_id, "failed", error=message)
        return
    state = "cancelled" if recorder.stopped else "done"
    kept = f" ({len(rows)} architecture(s) kept)" if state == "cancelled" else ""
    store.add_event(job_id, "log", f"{state}{kept}: results in {job.run_dir}")
    store.finish(job_id, state, summary=rows)
