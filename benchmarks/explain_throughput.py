"""Batched explanation throughput: images per second through one `Explainer`, per method.

A random-init model from `melasma.models.create`, fp32, batches of random inputs; prints the median
images/s of `--repeats` timed batches after warm-up, for each method, all three in one call, and
the batched deletion AUC of the LRP maps (`--deletion-steps` + 1 model forwards per image, as the
explain report runs it). Issue 14's target: LRP >= 500 images/s for resnet18 at 224 px, batch 64,
on a GPU.

    python benchmarks/explain_throughput.py --device cuda --batch 64
    python benchmarks/explain_throughput.py --device cpu --batch 8 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from melasma.explain import Explainer
from melasma.explain.faithfulness import deletion_aucs
from melasma.explain.methods import METHODS
from melasma.models import create

GPU_LRP_TARGET = 500.0  # images/s, resnet18, 224 px, batch 64


def images_per_second(run: Callable[[], object], count: int, repeats: int) -> float:
    """Median images/s of `run()` on a batch of `count` (results returned on the CPU, so synchronised)."""
    rates = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        run()
        if i:  # the first batch warms up
            rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--deletion-steps", type=int, default=16)
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads")
    torch.manual_seed(0)
    model = create(args.arch, num_classes=3, pretrained="off").to(device).eval()
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device).contiguous(memory_format=torch.channels_last)
    print(f"torch {torch.__version__}, {name}, {args.arch}, {args.size} px, batch {args.batch}, fp32, "
          f"median of {args.repeats}")
    print()
    print("| method | images/s | target |")
    print("|---|---|---|")
    with Explainer(model) as explainer:
        for label, methods in [*((m, (m,)) for m in METHODS), ("all three", METHODS)]:
            rate = images_per_second(lambda m=methods: explainer.explain(x, methods=m), args.batch, args.repeats)
            target = ""
            if label == "lrp" and device.type == "cuda" and (args.arch, args.size, args.batch) == ("resnet18", 224, 64):
                target = f">= {GPU_LRP_TARGET:g}: {'yes' if rate >= GPU_LRP_TARGET else 'NO'}"
            print(f"| {label} | {rate:.1f} | {target} |", flush=True)
        result = explainer.explain(x, methods=("lrp",))
        maps = result.maps["lrp"].to(device)
        rate = images_per_second(
            lambda: deletion_aucs(model, x, maps, result.targets, steps=args.deletion_steps), args.batch, args.repeats)
        print(f"| deletion AUC ({args.deletion_steps + 1} forwards per image) | {rate:.1f} | |", flush=True)


if __name__ == "__main__":
    main()
