"""`python -m melasma jobs`: the training queue the Train tab uses, from a terminal.

    jobs submit --data PATH --arch resnet18 ...   queue a training (the app's worker, or `jobs work`, runs it)
    jobs list | status ID | cancel ID             look at or stop jobs
    jobs work                                     run queued jobs in this process until the queue is empty
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path

from melasma.cli import train
from melasma.cli.arguments import positive_int
from melasma.jobs import FINAL_STATES, JobRunner, enqueue, job_status
from melasma.jobs.store import JobStore
from melasma.layout import DataLayout
from melasma.settings import Settings

HELP = "the background training queue shared with the Train tab: submit, list, status, cancel, work"

#: Seconds between looks at the queue while `jobs work` runs.
POLL_S = 0.5


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="data folder holding jobs.sqlite (default: MELASMA_DATA_DIR or ./data)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    submit = actions.add_parser("submit", help="queue a training job (same flags as train, without --out)")
    train.add_arguments(submit, with_out=False)
    listing = actions.add_parser("list", help="the newest jobs first")
    listing.add_argument("--limit", type=positive_int, default=20, help="at most this many jobs (default 20)")
    for name, summary in (("status", "one job's state, progress, log tail and results as JSON"),
                          ("cancel", "stop a job: a queued one at once, a running one after its batch")):
        action = actions.add_parser(name, help=summary)
        action.add_argument("job_id", metavar="ID")
    actions.add_parser("work", help="run queued jobs here, printing their logs, until none is left")
    for action in actions.choices.values():
        _add_data_dir(action)


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data_dir) if args.data_dir else Settings.from_env().data_dir


def _work(data_dir: Path) -> int:
    """Run the queue in this process; print each job's log lines; 1 if any job did not finish."""
    runner = JobRunner(data_dir).start()
    printed: dict[str, int] = {}  # job id -> log lines printed, for the jobs still followed
    outcomes: dict[str, str] = {}
    try:
        while True:
            oldest_first = reversed(runner.list_jobs(limit=1000))
            active = [job["job_id"] for job in oldest_first if job["state"] not in FINAL_STATES]
            for job_id in dict.fromkeys([*printed, *active]):  # ended since the last look: flush them
                lines = runner.store.events(job_id, "log")
                for line in lines[printed.get(job_id, 0):]:
                    print(f"[{job_id}] {line}", flush=True)
                printed[job_id] = len(lines)
                state = runner.store.get(job_id).state
                if state in FINAL_STATES:
                    outcomes[job_id] = state
                    del printed[job_id]
            if not active and not printed:
                break
            time.sleep(POLL_S)
    finally:
        runner.close()
    for job_id, state in outcomes.items():
        print(f"{job_id}: {state}")
    return 0 if all(state == "done" for state in outcomes.values()) else 1


def cancel_message(job_id: str, state: str) -> str:
    """What `jobs cancel` did, from the job's state after the request."""
    if state == "running":
        return f"{job_id}: cancel requested; it stops after its current batch (keeping finished architectures)"
    if state == "cancelled":
        return f"{job_id}: cancelled"
    return f"{job_id}: already {state}, nothing to cancel"


def run(args: argparse.Namespace) -> int:
    data_dir = _data_dir(args)
    if args.action == "submit":
        print(enqueue(data_dir, train.config_from_args(args)))
        return 0
    if args.action == "work":
        return _work(data_dir)

    store = JobStore(DataLayout(data_dir).jobs_db)
    if args.action == "list":
        for job in store.list(args.limit):
            created = datetime.fromtimestamp(job["created"], UTC)
            print(f"{job['job_id']}  {job['state']:<9}  {job['progress']:>4.0%}  {','.join(job['archs'])}  "
                  f"created {created:%Y-%m-%d %H:%M:%S} UTC")
        return 0
    if args.action == "cancel":
        print(cancel_message(args.job_id, store.cancel(args.job_id)))
        return 0
    print(json.dumps(job_status(store, args.job_id).to_json(), indent=2, default=str))
    return 0
