"""Training images/s with 1 and N data-parallel processes (torchrun), printed side by side.

Each count starts `torchrun --standalone --nproc-per-node K` on this script in worker mode (K = 1
too, so every row pays the same launcher). A worker builds random uint8 images (seeded, the same
for every K), keeps its shard on its device and runs `melasma.training.loop.fit` with the global
batch `--batch-size` for `--epochs` epochs; rank 0 prints the images/s of the epochs after the
first (warm-up). Rows: processes, images/s, ratio to one process.

    python benchmarks/ddp_throughput.py                                  # CPU, gloo, 1 and 2 processes
    python benchmarks/ddp_throughput.py --device cuda --processes 1,2,4,8 --image-size 224 --images 4096

On the CPU each process gets one thread (torchrun's OMP_NUM_THREADS=1), so the rows compare one
core with N cores, not one process using all cores with N processes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout, uninstalled


def _worker(args: argparse.Namespace) -> None:
    import torch

    from melasma.models import create
    from melasma.training import TrainConfig, distributed, resolve_device
    from melasma.training.loop import Split, fit

    device = distributed.local_device(resolve_device(args.device))
    ctx = distributed.setup(device)
    try:
        generator = torch.Generator().manual_seed(0)
        total, n_val, size = args.images, max(args.images // 8, 2), args.image_size
        images = torch.randint(0, 256, (total + n_val, size, size, 3), dtype=torch.uint8, generator=generator)
        labels = torch.randint(0, 3, (total + n_val,), generator=generator)

        def split(rows: torch.Tensor) -> Split:
            mine = rows[distributed.shard(len(rows), ctx)]
            return Split(images[mine].to(device), labels[mine].to(device),
                         torch.full((len(mine),), float("nan"), device=device), len(rows))

        train, val = split(torch.arange(total)), split(torch.arange(total, total + n_val))
        config = TrainConfig(data=REPO, archs=(args.arch,), epochs=args.epochs, batch_size=args.batch_size,
                             image_size=size, pretrained="off", device=args.device, patience=args.epochs)
        torch.manual_seed(0)
        model = create(args.arch).to(device)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        history = fit(model, train, val, config, arch=args.arch, ctx=ctx)
        seconds = float(history["seconds"].iloc[1:].mean()) if len(history) > 1 else float(history["seconds"][0])
        if ctx.is_main:
            print(json.dumps({"processes": ctx.world_size, "images_per_s": total / seconds,
                              "seconds_per_epoch": seconds, "device": str(device)}))
    finally:
        distributed.teardown(ctx)


def _measure(processes: int, args: argparse.Namespace) -> dict:
    from melasma.training import distributed

    flags = ["--worker", "--arch", args.arch, "--images", str(args.images), "--image-size", str(args.image_size),
             "--batch-size", str(args.batch_size), "--epochs", str(args.epochs), "--device", args.device]
    command = distributed.launch_command(processes, "benchmarks.ddp_throughput", flags)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    run = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO, check=False)
    if run.returncode != 0:
        raise SystemExit(f"error: {processes} process(es) failed:\n{run.stderr[-3000:]}")
    return json.loads([line for line in run.stdout.splitlines() if line.startswith("{")][-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", default="1,2", help="comma list of process counts (default 1,2)")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--images", type=int, default=256, help="training images (default 256)")
    parser.add_argument("--image-size", type=int, default=64, help="default 64")
    parser.add_argument("--batch-size", type=int, default=32, help="global batch (default 32)")
    parser.add_argument("--epochs", type=int, default=3, help="the first is warm-up (default 3)")
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (nccl, one GPU per process)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    counts = [int(part) for part in args.processes.split(",")]
    print(f"{args.arch}, {args.images} images at {args.image_size} px, global batch {args.batch_size}, "
          f"{args.epochs} epochs (first one warm-up), device {args.device}")
    print(f"{'processes':>9} {'images/s':>9} {'s/epoch':>8} {'ratio':>6}")
    base = None
    for processes in counts:
        result = _measure(processes, args)
        base = base or result["images_per_s"]
        print(f"{processes:>9} {result['images_per_s']:>9.1f} {result['seconds_per_epoch']:>8.2f} "
              f"{result['images_per_s'] / base:>6.2f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
