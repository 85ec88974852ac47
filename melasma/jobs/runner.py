"""`JobRunner`: a queue of training jobs with one worker, persisted in ``DATA/jobs.sqlite``.

Each job trains in its own process (`melasma.jobs.worker`), started and watched by the runner's
thread: a job that runs out of memory or crashes takes only that process down, and the runner
records why ("out of memory", the signal) instead of losing the app. The queue itself lives in
SQLite: a job is claimed only while no job of this data folder is running, so two Start presses (or
the app and a CLI process) get two queued jobs, never two trainings on one GPU. On a ZeroGPU Space
the training call runs under `spaces.GPU` instead, which forks its own GPU process. Progress, log
lines and the cancel flag travel through SQLite either way.

No thread starts at import or construction: `start()` (called by the app once it is serving, by
`submit`, and by `jobs work`) starts the worker thread.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from melasma.jobs import worker
from melasma.jobs.execute import config_to_dict, run_job
from melasma.jobs.limits import TrainingLimits
from melasma.jobs.store import FINAL_STATES, JobStore, owner_is_dead, owner_string
from melasma.layout import DataLayout
from melasma.settings import Settings

if TYPE_CHECKING:
    from melasma.training import TrainConfig

log = logging.getLogger(__name__)

LOG_TAIL = 60
#: Seconds the idle worker waits before looking for jobs queued by another process.
POLL_S = 1.0
#: Cap on the GPU time asked of ZeroGPU for one job (seconds); `MELASMA_GPU_SECONDS` overrides.
GPU_SECONDS_MAX = 600

#: Tokens of the runners alive in this process (a running job owned by another token of this pid
#: belongs to a process that was replaced, e.g. a container restart that reused the pid).
_LIVE_TOKENS: set[str] = set()
_SHARED: dict[Path, JobRunner] = {}
_SHARED_LOCK = threading.Lock()


def gpu_seconds(db_path: str, job_id: str) -> int:
    """GPU time to request for a job: a minute plus 5 s per architecture-epoch, capped."""
    config = JobStore(db_path).get(job_id).config
    cap = Settings.from_env().gpu_seconds or GPU_SECONDS_MAX
    return min(cap, 60 + 5 * len(config.get("archs", [])) * int(config.get("epochs", 1)))


def _gpu_task(task: Callable[[str, str], None]) -> Callable[[str, str], None]:
    """`task` under `spaces.GPU` on a ZeroGPU Space (`SPACES_ZERO_GPU` set); unchanged elsewhere,
    where `spaces.GPU` would be a no-op anyway. Decorated at import, as ZeroGPU requires."""
    if not os.environ.get("SPACES_ZERO_GPU"):
        return task
    import spaces

    return spaces.GPU(duration=gpu_seconds)(task)


train_job = _gpu_task(run_job)


def run_isolated(db_path: str, job_id: str) -> int:
    """Train `job_id` in a worker process and wait for it; if the worker ended without recording an
    end (killed, crashed), fail the job with the reason. Returns the worker's exit status."""
    store = JobStore(db_path)
    log_path = Path(store.get(job_id).run_dir) / "worker.log"
    process = worker.spawn(db_path, job_id, log_path)
    store.set_worker(job_id, process.pid)
    returncode = process.wait()
    if store.get(job_id).state == "running":
        tail = log_path.read_text(errors="replace")[-2000:] if log_path.is_file() else ""
        message = worker.describe_exit(returncode, tail)
        log.warning("training job %s: %s", job_id, message)
        store.add_event(job_id, "log", f"failed: {message}")
        store.finish(job_id, "failed", error=message)
    return returncode


def _run_claimed(db_path: str, job_id: str) -> None:
    """A claimed job: under `spaces.GPU` on ZeroGPU (its own forked process), else in a worker process."""
    if os.environ.get("SPACES_ZERO_GPU"):
        train_job(db_path, job_id)
    else:
        run_isolated(db_path, job_id)


def new_job_id() -> str:
    """A sortable, readable id: UTC time plus 6 random hex digits."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class JobStatus:
    """Everything the UI shows about one job: its row, the last `LOG_TAIL` log lines, the history
    (one `EpochDone` row per epoch, with `arch`) and, once it ended, the figures it wrote.
    `to_json()` is the `/training_status` answer."""

    job_id: str
    state: str
    progress: float
    arch: str | None
    epoch: int | None
    archs: list[str]
    epochs: int | None
    cancel_requested: bool
    submitted_by: str | None
    error: str | None
    log: list[str]
    history: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    run_dir: str
    figures: list[str]
    config: dict[str, Any]
    created: float
    started: float | None
    finished: float | None

    @property
    def ended(self) -> bool:
        """Whether the job reached a final state (done, failed, cancelled)."""
        return self.state in FINAL_STATES

    def to_json(self) -> dict[str, Any]:
        """The status as JSON-able values."""
        return asdict(self)


def job_status(store: JobStore, job_id: str) -> JobStatus:
    """Everything the UI shows about one job (see `JobStatus`)."""
    job = store.get(job_id)
    run_dir = Path(job.run_dir)
    figures = sorted(str(path) for path in run_dir.rglob("*.png")) if job.state in FINAL_STATES else []
    return JobStatus(
        job_id=job.id, state=job.state, progress=round(float(job.progress), 4), arch=job.arch, epoch=job.epoch,
        archs=list(job.config.get("archs", [])), epochs=job.config.get("epochs"),
        cancel_requested=job.cancel_requested, submitted_by=job.submitted_by, error=job.error,
        log=store.events(job_id, "log", limit=LOG_TAIL), history=store.events(job_id, "epoch"),
        summary=job.summary, run_dir=str(run_dir), figures=figures, config=job.config, created=job.created,
        started=job.started, finished=job.finished)


def enqueue(data_dir: str | Path, config: TrainConfig, *, user: str | None = None,
            limits: TrainingLimits | None = None) -> str:
    """Queue a training (`melasma.training.TrainConfig`) in `data_dir` without running it: a
    `JobRunner` of that folder (the app's, or `python -m melasma jobs work`) picks it up. Its `out`
    becomes runs/<job_id> and its decode cache, unless set, the data folder's cache/. With `limits`,
    a request beyond them raises LimitError and a full queue QueueFullError, before anything is stored."""
    if limits is not None:
        limits.check(config)
    data_dir = Path(data_dir).expanduser().resolve()
    job_id = new_job_id()
    layout = DataLayout(data_dir)
    run_dir = layout.runs_dir / job_id
    values = config_to_dict(config)
    values["data"] = str(Path(values["data"]).resolve())  # the job may run from another cwd
    values["out"] = str(run_dir)
    values["cache_dir"] = values.get("cache_dir") or str(layout.cache_dir)
    JobStore(layout.jobs_db).add(
        job_id, values, run_dir, submitted_by=user,
        max_jobs=limits.max_jobs if limits else None,
        max_jobs_per_user=limits.max_jobs_per_user if limits else None)
    return job_id


class JobRunner:
    """Submit, watch and cancel training jobs of one data folder; runs them one at a time.

    Runs are written to ``data_dir/runs/<job_id>/``. On construction, jobs left "running" by a process
    that is gone are marked failed ("interrupted by restart", never rerun); jobs still queued run in
    order once the worker thread is started (`start`).
    """

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.runs_dir = DataLayout(self.data_dir).runs_dir
        self.store = JobStore(DataLayout(self.data_dir).jobs_db)
        self._token = secrets.token_hex(8)
        self._owner = owner_string(self._token)
        _LIVE_TOKENS.add(self._token)
        self.store.fail_orphans(self._is_orphan)
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def start(self) -> JobRunner:
        """Start the worker thread (once; later calls do nothing). Returns the runner."""
        with self._start_lock:
            if self._thread is None and not self._closed.is_set():
                self._thread = threading.Thread(target=self._work, name=f"melasma-jobs-{self._token[:4]}",
                                                daemon=True)
                self._thread.start()
        return self

    @classmethod
    def shared(cls, data_dir: str | Path) -> JobRunner:
        """The one runner of this process for `data_dir` (the app's tabs and rebuilds share it);
        not started (see `start`)."""
        key = Path(data_dir).expanduser().resolve()
        with _SHARED_LOCK:
            runner = _SHARED.get(key)
            if runner is None or runner._closed.is_set():
                runner = _SHARED[key] = cls(key)
            return runner

    def _is_orphan(self, owner: str) -> bool:
        return owner_is_dead(owner, frozenset(_LIVE_TOKENS))

    # -- the queue -----------------------------------------------------------------------------
    def submit(self, config: TrainConfig, *, user: str | None = None,
               limits: TrainingLimits | None = None) -> str:
        """Queue a training (see `enqueue`), start this runner's worker if needed and wake it."""
        job_id = enqueue(self.data_dir, config, user=user, limits=limits)
        self.start()
        self._wake.set()
        return job_id

    def cancel(self, job_id: str) -> str:
        """Stop a job: a queued one at once, a running one after its current batch. Returns the
        state now (a running job stays "running" until the training notices)."""
        return self.store.cancel(job_id)

    def status(self, job_id: str) -> JobStatus:
        """Everything the UI shows about one job (see `JobStatus`)."""
        return job_status(self.store, job_id)

    def list_jobs(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest jobs first (id, state, progress, archs, created, finished)."""
        return self.store.list(limit)

    def wait(self, job_id: str, timeout: float | None = None, interval: float = 0.2) -> JobStatus:
        """Poll until the job reaches a final state; return its status (TimeoutError after `timeout` s,
        when given)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.status(job_id)
            if status.ended:
                return status
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {status.state} after {timeout:.0f} s")
            time.sleep(interval)

    # -- the worker ----------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._closed.is_set():
            self._wake.clear()
            try:
                job_id = self.store.claim(self._owner, self._is_orphan)
            except sqlite3.Error:  # e.g. the folder's disk is full or the file locked too long: retry
                log.exception("could not read the job queue in %s", self.store.path)
                job_id = None
            if job_id is None:
                self._wake.wait(POLL_S)
                continue
            try:
                _run_claimed(str(self.store.path), job_id)
            except Exception as error:  # noqa: BLE001 - e.g. ZeroGPU refused a GPU, no fork possible; keep serving
                message = str(error).splitlines()[0] if str(error) else type(error).__name__
                self.store.add_event(job_id, "log", f"failed: {message}")
                self.store.finish(job_id, "failed", error=message)

    def close(self, timeout: float = 30.0) -> None:
        """Stop the worker after its current job (cancel that first for a quick close)."""
        self._closed.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        _LIVE_TOKENS.discard(self._token)
