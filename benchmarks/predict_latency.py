"""Batch-1 latency of predict, LRP, Grad-CAM and gradient x input per architecture, CPU or CUDA.

Random-init models from `melasma.models.create`, one input, fp32, eager, as the Predict tab runs
them: a `Predictor`'s channels-last model for predict and its `Explainer` (set up once, hooks kept,
lean LRP rules) for each method alone and for all three in one call (what the tab runs after
predict). Prints the median of `--repeats` timed runs after warm-up as a markdown table: wall time,
and CPU time of this process (`time.process_time`, all threads) so that a run on a shared machine
can be read; each explanation as a multiple of predict, and yes/no against issue 14's targets:

- GPU: LRP <= 3x predict for all six and <= 15 ms for googlenet, resnet18, mobilenetv2;
  Grad-CAM and gxi <= 2x predict.
- 2-core CPU: predict + LRP + Grad-CAM + gxi <= 250 ms for googlenet, <= 500 ms for densenet121,
  <= 2.5 s for vgg16 (measured as the tab runs it: predict, then all three maps in one call);
  LRP <= 4x predict for every architecture.

`--per-call` adds the old path (`melasma.explain.explain`: canonize, hook, unhook per call, stock
zennit rules) for LRP, in the same run, and its ratio to ours.

    python benchmarks/predict_latency.py --device cuda --repeats 20
    python benchmarks/predict_latency.py --device cpu --archs googlenet,densenet121 --repeats 5
    python benchmarks/predict_latency.py --device cpu --archs efficientnet_lite0 --size 224   # the demo model
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from melasma.explain import explain
from melasma.explain.lrp import IMAGENET_MEAN, IMAGENET_STD
from melasma.explain.methods import METHODS
from melasma.inference import Predictor
from melasma.masi import DEFAULT_CUTOFFS, SEVERITIES
from melasma.models import create
from melasma.models.checkpoint import CheckpointMeta

ARCHS = ("alexnet", "googlenet", "resnet18", "vgg16", "densenet121", "mobilenetv2_100", "efficientnet_lite0")
GPU_LRP_RATIO = 3.0
GPU_LRP_MS = 15.0
GPU_LRP_MS_ARCHS = ("googlenet", "resnet18", "mobilenetv2_100")
GPU_GRAD_RATIO = 2.0  # Grad-CAM and gxi
CPU_LRP_RATIO = 4.0
CPU_TOTAL_MS = {"googlenet": 250.0, "densenet121": 500.0, "vgg16": 2500.0}  # predict + three maps


#: Median CPU milliseconds per measured step, filled beside the wall times by `median_ms`.
CPU_MS: dict[str, float] = {}


def median_ms(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 2,
              name: str = "") -> float:
    """Median wall time of `fn()` in milliseconds (CUDA work synchronised); the median CPU time of
    this process over the same runs goes to `CPU_MS[name]`."""
    times, cpu = [], []
    for i in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1000.0)
            cpu.append((time.process_time() - start_cpu) * 1000.0)
    CPU_MS[name] = statistics.median(cpu)
    return statistics.median(times)


def measure(arch: str, device: torch.device, size: int, repeats: int, per_call: bool) -> dict[str, float]:
    """Median wall latencies (ms) for one random-init architecture, as the Predict tab runs it
    (CPU times in `CPU_MS`)."""
    torch.manual_seed(0)
    model = create(arch, num_classes=3, pretrained="off").eval()
    meta = CheckpointMeta(arch, SEVERITIES, DEFAULT_CUTOFFS["masi"], size, IMAGENET_MEAN, IMAGENET_STD)
    predictor = Predictor(model, meta, device=device)
    explainer = predictor.explainer
    x = torch.randn(1, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)

    def predict() -> torch.Tensor:
        with torch.inference_mode():
            return torch.softmax(predictor.model(x), dim=1).cpu()

    CPU_MS.clear()
    row = {"predict": median_ms(predict, device, repeats, name="predict")}
    for method in METHODS:
        row[method] = median_ms(lambda m=method: explainer.explain(x, methods=(m,)), device, repeats, name=method)
    row["all three"] = median_ms(lambda: explainer.explain(x), device, repeats, name="all three")
    if per_call:
        reference = copy.deepcopy(predictor.model)
        row["per-call lrp"] = median_ms(lambda: explain(reference, x, "lrp"), device, max(3, repeats // 4),
                                        name="per-call lrp")
    predictor.close()
    return row


def verdicts(device: torch.device, arch: str, row: dict[str, float]) -> str:
    """Which of the issue's targets this row meets (targets apply per device)."""
    def mark(ok: bool) -> str:
        return "yes" if ok else "NO"

    predict = row["predict"]
    if device.type == "cuda":
        notes = [f"LRP <= {GPU_LRP_RATIO:g}x: {mark(row['lrp'] <= GPU_LRP_RATIO * predict)}"]
        if arch in GPU_LRP_MS_ARCHS:
            notes.append(f"LRP <= {GPU_LRP_MS:g} ms: {mark(row['lrp'] <= GPU_LRP_MS)}")
        worst = max(row["gradcam"], row["gxi"])
        notes.append(f"Grad-CAM, gxi <= {GPU_GRAD_RATIO:g}x: {mark(worst <= GPU_GRAD_RATIO * predict)}")
        return "; ".join(notes)
    notes = [f"LRP <= {CPU_LRP_RATIO:g}x: {mark(row['lrp'] <= CPU_LRP_RATIO * predict)}"]
    if arch in CPU_TOTAL_MS:
        limit = CPU_TOTAL_MS[arch]
        notes.append(f"predict + 3 maps <= {limit:g} ms: {mark(row['tab'] <= limit)}")
    return "; ".join(notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default=",".join(ARCHS), help="comma-separated architectures")
    parser.add_argument("--size", type=int, default=224, help="input side in pixels (default 224)")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per measurement")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--per-call", action="store_true", help="also time the old per-call LRP path")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads")
    print(f"torch {torch.__version__}, {name}, batch 1, fp32, {args.size} px, median of {args.repeats}; "
          "each cell: wall ms (CPU ms of this process); ratios: wall (CPU); targets judged on wall time")
    print()
    extra = " per-call LRP ms | per-call / ours |" if args.per_call else ""
    print(f"| arch | predict ms | LRP ms | Grad-CAM ms | gxi ms | all three ms | predict + all three ms |{extra} "
          "LRP / predict | Grad-CAM / predict | gxi / predict | targets |")
    print("|---" * (11 + 2 * bool(args.per_call)) + "|")
    for arch in args.archs.split(","):
        row = measure(arch, device, args.size, args.repeats, args.per_call)
        row["tab"] = row["predict"] + row["all three"]
        CPU_MS["tab"] = CPU_MS["predict"] + CPU_MS["all three"]

        def cell(key: str, row: dict[str, float] = row) -> str:
            return f"{row[key]:.1f} ({CPU_MS[key]:.0f})"

        per_call = f" {cell('per-call lrp')} | {row['per-call lrp'] / row['lrp']:.1f} |" if args.per_call else ""
        def ratio(key: str, row: dict[str, float] = row) -> str:
            return f"{row[key] / row['predict']:.1f} ({CPU_MS[key] / CPU_MS['predict']:.1f})"

        print(f"| {arch} | {cell('predict')} | {cell('lrp')} | {cell('gradcam')} | {cell('gxi')} | "
              f"{cell('all three')} | {cell('tab')} |{per_call} {ratio('lrp')} | "
              f"{ratio('gradcam')} | {ratio('gxi')} | {verdicts(device, arch, row)} |", flush=True)


if __name__ == "__main__":
    main()
