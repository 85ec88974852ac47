"""Background training jobs shared by the CLI and the Train tab, persisted in ``DATA/jobs.sqlite``."""

from melasma.jobs.runner import JobRunner, JobStatus, enqueue, job_status
from melasma.jobs.store import FINAL_STATES, STATES, JobNotFoundError

__all__ = ["FINAL_STATES", "STATES", "JobNotFoundError", "JobRunner", "JobStatus", "enqueue", "job_status"]
