"""Batch-1 latency of predict, LRP, Grad-CAM and gradient x input per architecture, CPU and CUDA.

Random-init models from `melasma.models.create`, one 224 px input, fp32, eager; prints the median
of `--repeats` timed runs after warm-up, as a markdown table, with each explanation's cost as a
multiple of the forward pass it cannot be faster than (the ceiling), our forward against the naive
one (a contiguous eager model; ours is channels-last), and checks the issue's targets:
2-core CPU: googlenet predict <= 60 ms and predict + LRP + Grad-CAM <= 500 ms; GPU: each <= 15 ms.

    python benchmarks/predict_latency.py --archs googlenet,mobilenetv2_100 --repeats 10
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from melasma.explain import explain  # noqa: E402
from melasma.explain.lrp import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from melasma.inference import Predictor  # noqa: E402
from melasma.models import create  # noqa: E402

ARCHS = ("alexnet", "googlenet", "resnet18", "vgg16", "densenet121", "mobilenetv2_100")
CPU_PREDICT_TARGET_MS = 60.0  # googlenet predict on a 2-core CPU
CPU_TOTAL_TARGET_MS = 500.0  # predict + LRP + Grad-CAM on a 2-core CPU
GPU_TARGET_MS = 15.0  # each of predict, LRP, Grad-CAM on a GPU


def median_ms(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 2) -> float:
    """Median wall time of `fn()` in milliseconds (CUDA work synchronised)."""
    times = []
    for i in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def measure(arch: str, device: torch.device, size: int, repeats: int) -> dict[str, float]:
    """Median latencies (ms) for one random-init architecture: the naive forward (contiguous
    eager model) and, as the Predict tab runs it (a `Predictor`'s model and input layout),
    predict, LRP, Grad-CAM and gxi."""
    torch.manual_seed(0)
    naive = create(arch, num_classes=3, pretrained="off").to(device).eval()
    ours = Predictor(copy.deepcopy(naive), {"arch": arch, "image_size": size, "mean": IMAGENET_MEAN,
                                            "std": IMAGENET_STD}, device=device)
    x = torch.randn(1, 3, size, size, device=device)
    x_ours = x.contiguous(memory_format=torch.channels_last)

    def forward(model: torch.nn.Module, inputs: torch.Tensor) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            with torch.inference_mode():
                return torch.softmax(model(inputs), dim=1).cpu()
        return run

    row = {"naive": median_ms(forward(naive, x), device, repeats),
           "predict": median_ms(forward(ours.model, x_ours), device, repeats)}
    for method in ("lrp", "gradcam", "gxi"):
        row[method] = median_ms(lambda m=method: explain(ours.model, x_ours, method=m).cpu(), device, repeats)
    row["total"] = row["predict"] + row["lrp"] + row["gradcam"]
    return row


def verdicts(device: torch.device, arch: str, row: dict[str, float]) -> str:
    """Which of the issue's targets this row meets (targets apply per device)."""
    if device.type == "cuda":
        worst = max(row["predict"], row["lrp"], row["gradcam"])
        return f"each <= {GPU_TARGET_MS:g} ms: {'yes' if worst <= GPU_TARGET_MS else 'NO'}"
    notes = [f"total <= {CPU_TOTAL_TARGET_MS:g} ms: {'yes' if row['total'] <= CPU_TOTAL_TARGET_MS else 'NO'}"]
    if arch == "googlenet":
        ok = row["predict"] <= CPU_PREDICT_TARGET_MS
        notes.insert(0, f"predict <= {CPU_PREDICT_TARGET_MS:g} ms: {'yes' if ok else 'NO'}")
    return "; ".join(notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default=",".join(ARCHS), help="comma-separated architectures")
    parser.add_argument("--size", type=int, default=224, help="input side in pixels (default 224)")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per measurement")
    parser.add_argument("--devices", default="cpu,cuda", help="devices to try (cuda only if present)")
    args = parser.parse_args()
    devices = [torch.device(d) for d in args.devices.split(",")
               if d != "cuda" or torch.cuda.is_available()]
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, batch 1, fp32, "
          f"{args.size} px, median of {args.repeats}")
    print()
    print("| device | arch | naive predict ms | predict ms | naive / ours | LRP ms | Grad-CAM ms | gxi ms "
          "| total ms | LRP / predict | Grad-CAM / predict | targets |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for device in devices:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        for arch in args.archs.split(","):
            row = measure(arch, device, args.size, args.repeats)
            print(f"| {name} | {arch} | {row['naive']:.1f} | {row['predict']:.1f} | "
                  f"{row['naive'] / row['predict']:.2f} | {row['lrp']:.1f} | "
                  f"{row['gradcam']:.1f} | {row['gxi']:.1f} | {row['total']:.1f} | "
                  f"{row['lrp'] / row['predict']:.1f} | {row['gradcam'] / row['predict']:.1f} | "
                  f"{verdicts(device, arch, row)} |", flush=True)


if __name__ == "__main__":
    main()
