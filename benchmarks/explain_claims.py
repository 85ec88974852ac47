"""Two claims about the explanations, measured rather than asserted.

1. "The study's mean gradient x input is mostly a rescaled logit": the correlation, over a
   synthetic set, between each image's mean gradient x input and its predicted class's logit, for
   the demo checkpoint (`melasma/weights/demo`).
2. MobileNetV2's depthwise convolutions under plain z+: the share of relevance that reaches the
   input (1 = conserved) with zennit's z+ on every convolution, against our `ZPlusFlatFallback`
   on the depthwise ones; random-init MobileNetV2 with batch-norm statistics from a few
   train-mode passes, 64 px.

    python benchmarks/explain_claims.py --images 120
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from melasma.data.synthetic import generate
from melasma.explain import Explainer
from melasma.explain_report import load_models
from melasma.models import create

DEMO = Path(__file__).resolve().parents[1] / "melasma" / "weights" / "demo"


def gxi_against_logit(images: int, seed: int) -> tuple[float, float, int]:
    """Pearson and Spearman correlation of per-image mean gxi with the explained logit."""
    (loaded,) = load_models([DEMO])
    with tempfile.TemporaryDirectory() as folder:
        generate(Path(folder), n=images, size=loaded.size, seed=seed)
        paths = sorted(str(p) for p in (Path(folder) / "images").iterdir())
        means, logits = [], []
        with Explainer(loaded.model, mean=loaded.mean.flatten().tolist(), std=loaded.std.flatten().tolist()) as e:
            for start in range(0, len(paths), 32):
                result = e.explain(loaded.batch(paths[start:start + 32]), methods=("gxi",))
                means.extend(result.maps["gxi"].mean(dim=(1, 2)).tolist())
                logits.extend(result.logits[torch.arange(len(result.targets)), list(result.targets)].tolist())
    return float(pearsonr(means, logits)[0]), float(spearmanr(means, logits)[0]), len(paths)


def _with_statistics(model: nn.Module, size: int) -> nn.Module:
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
        model.train()
        for _ in range(3):
            model(torch.randn(8, 3, size, size, generator=generator))
    return model.eval()


def depthwise_conservation(inputs: int, size: int = 64) -> dict[str, list[float]]:
    """Input relevance sums (one-hot start of 1) with plain z+ and with the flat fallback."""
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlusFlat

    from melasma.explain.canonizers import canonizers_for
    from melasma.explain.lrp import lrp_attribution, one_hot_start

    torch.manual_seed(0)
    model = _with_statistics(create("mobilenetv2_100"), size)
    sums: dict[str, list[float]] = {"plain z+": [], "z+ with flat fallback": []}
    for index in range(inputs):
        x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(index + 1))
        plain = EpsilonPlusFlat(zero_params="bias", canonizers=canonizers_for("timm_mobilenetv2"))
        with torch.enable_grad(), Gradient(model, plain, attr_output=one_hot_start(None)) as attributor:
            _, relevance = attributor(x.clone())
        sums["plain z+"].append(float(relevance.sum()))
        _, ours = lrp_attribution(model, x, canonizer="timm_mobilenetv2", zero_bias=True)
        sums["z+ with flat fallback"].append(float(ours.sum()))
    return sums


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=120, help="synthetic images for claim 1")
    parser.add_argument("--seed", type=int, default=1, help="synthetic set seed (the demo trained on seed 0)")
    parser.add_argument("--inputs", type=int, default=8, help="random inputs for claim 2")
    args = parser.parse_args()
    pearson, spearman, n = gxi_against_logit(args.images, args.seed)
    print(f"1. demo checkpoint, {n} synthetic images (seed {args.seed}): mean gradient x input vs the "
          f"explained logit: Pearson r = {pearson:.3f}, Spearman rho = {spearman:.3f}")
    for rule, sums in depthwise_conservation(args.inputs).items():
        print(f"2. mobilenetv2_100, {rule}: input relevance sum {np.min(sums):.3f} - {np.max(sums):.3f} "
              f"(mean {np.mean(sums):.3f}, {len(sums)} inputs; 1 = conserved)")


if __name__ == "__main__":
    main()
