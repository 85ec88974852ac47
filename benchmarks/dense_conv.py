"""VGG16's dense layers in convolution form: `nn.Conv2d` against `DenseConv2d`, in one process.

timm's VGG16 head (`ConvMlp`) is a 7 x 7 convolution over the 7 x 7 map of a 224 px image
(4096 x 512 x 7 x 7) and a 1 x 1 one over the 1 x 1 result (4096 x 4096). Both layers are timed as
`nn.Conv2d` and as `melasma.models.dense_conv.DenseConv2d` (same weights), channels-last as the
Predictor runs them, batch 1, inference mode, median of `--repeats` alternated runs; prints wall ms,
minor page faults per call and the ratio, and the largest output difference.

    python benchmarks/dense_conv.py --repeats 7
"""

from __future__ import annotations

import argparse
import copy
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from melasma.models.dense_conv import DenseConv2d

LAYERS = {"fc1 (4096 x 512 x 7 x 7 over 7 x 7)": (512, 4096, 7), "fc2 (4096 x 4096 x 1 x 1 over 1 x 1)": (4096, 4096, 1)}


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 1, fp32, channels-last, "
          f"median of {args.repeats}\n")
    print("| layer | nn.Conv2d ms | DenseConv2d ms | Conv2d / Dense | page faults per call (Conv2d, Dense) | max abs diff |")
    print("|---|---|---|---|---|---|")
    for name, (channels, outputs, kernel) in LAYERS.items():
        conv = nn.Conv2d(channels, outputs, kernel).eval().to(memory_format=torch.channels_last)
        dense = copy.deepcopy(conv)
        dense.__class__ = DenseConv2d
        x = torch.randn(1, channels, kernel, kernel).contiguous(memory_format=torch.channels_last)
        times: dict[str, list[float]] = {"conv": [], "dense": []}
        faults: dict[str, list[int]] = {"conv": [], "dense": []}
        with torch.inference_mode():
            for layer in (conv, dense):
                layer(x)  # warm-up
            for _ in range(args.repeats):
                for key, layer in (("conv", conv), ("dense", dense)):
                    before, start = _faults(), time.perf_counter()
                    layer(x)
                    times[key].append((time.perf_counter() - start) * 1000.0)
                    faults[key].append(_faults() - before)
            difference = (conv(x) - dense(x)).abs().max().item()
        conv_ms, dense_ms = statistics.median(times["conv"]), statistics.median(times["dense"])
        print(f"| {name} | {conv_ms:.1f} | {dense_ms:.1f} | {conv_ms / dense_ms:.1f} | "
              f"{statistics.median(faults['conv']):.0f}, {statistics.median(faults['dense']):.0f} | {difference:.1e} |")


if __name__ == "__main__":
    main()
