"""LRP with zennit's stock rules against the lean rules (`melasma.explain.rules`), in one process.

Two canonized copies of one random-init model carry EpsilonPlusFlat (biases excluded, as the app
runs it): one with zennit's rules, one with the lean rules. Both
are timed alternately (batch 1, fp32, channels-last), beside predict, as wall and CPU ms
(`time.process_time`), median of `--repeats`; the maps' largest difference relative to the stock
map's largest magnitude is printed too (the equivalence tests require <= 1e-5).

    python benchmarks/lrp_rules_ab.py --arch googlenet --threads 1
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from melasma.explain.canonizers import canonizers_for
from melasma.explain.lrp import COMPOSITES, one_hot_start
from melasma.models import create, get_spec
from melasma.models.registry import IMAGENET_MEAN, IMAGENET_STD


def lrp_runner(model: torch.nn.Module, x: torch.Tensor, lean: bool) -> Callable[[], torch.Tensor]:
    """A function computing the input relevance of the predicted class with its own model copy."""
    duplicate = copy.deepcopy(model)
    composite = COMPOSITES["epsilon_plus_flat"](
        duplicate, x, canonizers_for(get_spec(model).lrp_canonizer), "bias", IMAGENET_MEAN, IMAGENET_STD, lean=lean
    )
    composite.register(duplicate)

    def run() -> torch.Tensor:
        with torch.enable_grad():
            inputs = x.detach().clone().requires_grad_(True)
            output = duplicate(inputs)
            (relevance,) = torch.autograd.grad(output, inputs, grad_outputs=one_hot_start(None)(output.detach()))
        return relevance

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="googlenet")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create(args.arch).eval().to(memory_format=torch.channels_last)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    x = torch.randn(1, 3, args.size, args.size).contiguous(memory_format=torch.channels_last)

    def predict() -> torch.Tensor:
        with torch.inference_mode():
            return model(x)

    runs = {"stock zennit rules": lrp_runner(model, x, False), "lean rules": lrp_runner(model, x, True),
            "predict": predict}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for run in runs.values():
        run()  # warm-up
    for _ in range(args.repeats):
        for name, run in runs.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            times[name].append(((time.perf_counter() - wall) * 1000.0, (time.process_time() - cpu) * 1000.0))
    print(f"torch {torch.__version__}, {args.arch}, {args.size} px, batch 1, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}")
    print()
    print("| run | wall ms | CPU ms | CPU / predict CPU |")
    print("|---|---|---|---|")
    predict_cpu = statistics.median(c for _, c in times["predict"])
    for name, values in times.items():
        cpu = statistics.median(c for _, c in values)
        print(f"| {name} | {statistics.median(w for w, _ in values):.1f} | {cpu:.1f} | {cpu / predict_cpu:.1f} |")
    stock, lean = runs["stock zennit rules"](), runs["lean rules"]()
    print(f"\nlargest map difference / largest stock magnitude: {((stock - lean).abs().max() / stock.abs().max()).item():.2g}")


if __name__ == "__main__":
    main()
