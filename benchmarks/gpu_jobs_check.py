"""A short check of training jobs on a CUDA machine: the memory estimate against torch's measured
peak, a job trained on CUDA in its worker process, and a SIGKILLed GPU worker that leaves the runner
serving the next job. Usage: python benchmarks/gpu_jobs_check.py OUT_DIR (prints one line per check)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import torch

from melasma.data.synthetic import generate
from melasma.jobs import JobRunner
from melasma.jobs.memory import check_memory, estimate_bytes
from melasma.training import TrainConfig, train_many


def main(out: Path) -> None:
    faces = generate(out / "faces", n=240, size=128, seed=0)
    print(torch.cuda.get_device_name(0), "torch", torch.__version__, flush=True)
    for arch, size, batch in (("resnet18", 224, 32), ("resnet18", 384, 64), ("densenet121", 224, 32)):
        torch.cuda.reset_peak_memory_stats()
        config = TrainConfig(data=faces, archs=(arch,), epochs=1, batch_size=batch, image_size=size, device="cuda",
                             pretrained="off", out=out / f"run-{arch}-{size}", bootstrap=10)
        train_many(config)
        peak = torch.cuda.max_memory_allocated() / 1e9
        estimate = estimate_bytes(arch, size, batch, cuda=True) / 1e9
        print(f"{arch} {size}px batch {batch}: GPU estimate {estimate:.2f} GB, measured peak allocated "
              f"{peak:.2f} GB", flush=True)
    check = check_memory(TrainConfig(data=faces, archs=("resnet18",), image_size=1024, batch_size=512,
                                     device="cuda", pretrained="off"))
    print("1024 px batch 512 resnet18 on cuda:", "fits" if check.fits else check.message(), flush=True)

    runner = JobRunner(out / "data").start()
    tiny = dict(data=faces, archs=("resnet18",), image_size=64, device="cuda", pretrained="off", bootstrap=10)
    started = time.perf_counter()
    job = runner.submit(TrainConfig(epochs=2, batch_size=32, **tiny))
    status = runner.wait(job)
    print(f"cuda job in a worker: {status.state} {status.error or ''} in {time.perf_counter() - started:.1f} s",
          flush=True)
    doomed = runner.submit(TrainConfig(epochs=100, batch_size=8, patience=100, **tiny))
    following = runner.submit(TrainConfig(epochs=1, batch_size=32, **tiny))
    while not ((row := runner.store.get(doomed)).progress > 0 and row.worker_pid):
        time.sleep(0.05)
    os.kill(row["worker_pid"], signal.SIGKILL)
    print("killed worker:", runner.wait(doomed).error, flush=True)
    print("next job:", runner.wait(following).state, flush=True)
    runner.close()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/gpu_jobs_check"))
