"""One training job in its own process: ``python -m melasma.jobs.worker DB_PATH JOB_ID``.

The app's `JobRunner` starts this process for each job and waits for it, so a job that runs out of
memory (the kernel's SIGKILL) or crashes takes only this process down; the runner then records why
(`describe_exit`). A job of several processes (`TrainConfig.processes`, or one per GPU) replaces
this process with torchrun, which starts this module once per rank and stops them all when one fails. Progress, log lines and the cancel flag travel through the job store (SQLite), as
they do for a job run in-process. The worker dies with its parent (Linux: PR_SET_PDEATHSIG), so a
restarted app never finds an old worker still training.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from melasma.jobs.execute import job_processes, run_job

#: the message for a worker killed by SIGKILL: on a training job that is the out-of-memory killer
#: (or someone's kill -9); both leave nothing to resume
KILLED = ("out of memory: the training process was killed (SIGKILL), most likely by the system's "
          "out-of-memory killer; lower the image size, the batch size or the number of architectures "
          "and submit it again")


#: torchrun's report of the first process that failed ("Root Cause ... rank : 1 ... exitcode : -9")
_ROOT_CAUSE = re.compile(r"Root Cause.*?rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)", re.DOTALL)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def describe_exit(returncode: int, stderr_tail: str = "") -> str:
    """Why a worker that did not record an end of its own stopped, in one line (for a torchrun
    launch, which of its processes failed first and how)."""
    root = _ROOT_CAUSE.search(stderr_tail)
    if root:
        rank, code = int(root.group(1)), int(root.group(2))
        how = f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with status {code}"
        cause = " (most likely the out-of-memory killer)" if code == -signal.SIGKILL else ""
        return (f"training process rank {rank} {how}{cause}; torchrun stopped the other processes of the "
                "run; submit the job again if needed")
    if returncode == -signal.SIGKILL:
        return KILLED
    if returncode < 0:
        return f"the training process was stopped by {_signal_name(-returncode)}; submit the job again if needed"
    last = stderr_tail.strip().splitlines()[-1] if stderr_tail.strip() else ""
    return f"the training process exited with status {returncode}" + (f": {last}" if last else "")


def command(db_path: str | Path, job_id: str) -> list[str]:
    """The command line that runs `job_id` in a worker process."""
    return [sys.executable, "-m", "melasma.jobs.worker", str(db_path), job_id]


def spawn(db_path: str | Path, job_id: str, log_path: Path) -> subprocess.Popen:
    """Start the worker of `job_id`, its output appended to `log_path`; the package's folder is put on
    PYTHONPATH, so the worker imports this same code whatever the app's working folder."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(command(db_path, job_id), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env, close_fds=True)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent exits; exit now if it already has."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        try:
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        raise SystemExit("the app that started this training is gone")


def main(argv: list[str] | None = None) -> int:
    """Run one claimed job to its end (recorded in the store); 0 unless the arguments are wrong."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m melasma.jobs.worker DB_PATH JOB_ID", file=sys.stderr)
        return 2
    _die_with_parent()
    # deferred: imports torch; the app process imports this module without it
    from melasma.training import distributed

    processes = job_processes(args[0], args[1])
    if processes > 1 and not distributed.launched():  # become torchrun (it dies with the app, as this process)
        command = distributed.launch_command(processes, "melasma.jobs.worker", args)
        os.execv(command[0], command)
    run_job(args[0], args[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
