"""Batch-1 explanation latency per architecture, and (optionally) LRP localisation on synthetic faces.

    python benchmarks/explain_latency.py [--size 224] [--repeats 5] [--archs a,b]
    python benchmarks/explain_latency.py --localisation   # trains resnet18 at 64 px (minutes on a CPU)

Prints medians in ms: forward, LRP (EpsilonPlusFlat + our canonizers), Grad-CAM, gradient x input.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from melasma.explain import explain
from melasma.models import ARCHITECTURES, create


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def latency(archs: list[str], size: int, repeats: int) -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {size} px, batch 1, fp32, random init")
    print(f"{'arch':<16}{'forward':>10}{'lrp':>10}{'gradcam':>10}{'gxi':>10}")
    for arch in archs:
        torch.manual_seed(0)
        model = create(arch).eval()
        x = torch.randn(1, 3, size, size)

        def forward() -> None:
            with torch.inference_mode():
                model(x)

        row = [median_ms(forward, repeats)]
        row += [median_ms(lambda m=method: explain(model, x, m), repeats) for method in ("lrp", "gradcam", "gxi")]
        print(f"{arch:<16}" + "".join(f"{value:>10.0f}" for value in row), flush=True)


def localisation(n: int = 240, size: int = 64, epochs: int = 10) -> None:
    """Train resnet18 on synthetic faces (shift + flip augmentation), then measure on held-out faces
    the share of positive relevance inside the lesion masks per method."""
    import pandas as pd

    from melasma.data.images import load_array
    from melasma.data.masks import mask_for_image
    from melasma.data.synthetic import generate
    from melasma.explain.faithfulness import pointing_game, relevance_mass_accuracy, resize_mask
    from melasma.masi import SEVERITIES

    folder = Path(tempfile.mkdtemp(prefix="synth-"))
    table = pd.read_csv(generate(folder, n=n, size=size, seed=0))
    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    pixels = torch.stack([torch.from_numpy(load_array(folder / p, size)) for p in table["image"]])
    x = (pixels.permute(0, 3, 1, 2).float() / 255 - mean) / std
    y = torch.tensor([SEVERITIES.index(s) for s in table["true_severity"]])
    masks = [resize_mask(mask_for_image(folder / p), (size, size)) for p in table["image"]]
    torch.manual_seed(0)
    model = create("resnet18")
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    n_train = int(0.8 * n)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(n_train).split(32):
            xb = x[batch].flip(3) if torch.rand(1) < 0.5 else x[batch]
            dx, dy = torch.randint(-8, 9, (2,)).tolist()
            loss = torch.nn.functional.cross_entropy(model(torch.roll(xb, (dy, dx), (2, 3))), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x[n_train:]).argmax(1) == y[n_train:]).float().mean().item()
    share = float(np.mean([m.mean() for m in masks[n_train:]]))
    print(f"held-out accuracy {accuracy:.2f}; lesion mask share of the image {share:.3f}")
    for label, options in {
        "lrp epsilon_plus_flat": {"method": "lrp"},
        "lrp epsilon_gamma_box": {"method": "lrp", "composite": "epsilon_gamma_box"},
        "gradcam": {"method": "gradcam"}, "gxi": {"method": "gxi"},
    }.items():
        maps = [explain(model, xi[None], **options) for xi in x[n_train:]]
        mass = np.nanmean([relevance_mass_accuracy(r, m) for r, m in zip(maps, masks[n_train:])])
        hits = np.mean([pointing_game(r, m) for r, m in zip(maps, masks[n_train:])])
        print(f"{label:<24} mass in mask {mass:.3f} ({mass / share:.1f}x chance), pointing game {hits:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--archs", default=",".join(ARCHITECTURES))
    parser.add_argument("--localisation", action="store_true")
    args = parser.parse_args()
    if args.localisation:
        localisation()
    else:
        latency(args.archs.split(","), args.size, args.repeats)


if __name__ == "__main__":
    main()
