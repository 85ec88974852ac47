"""A fast check of a semi-synthetic set against real photos: a tiny CNN trained on it, scored on
the held-out real photos (ROC AUC melasma vs not of P(moderate) + 2 P(severe)).

Usage: python benchmarks/semisynth_probe.py DATA [--n 600] [--size 64] [--epochs 12] [--seeds 3]

DATA is a semi-synthetic folder (labels.csv, bases.json); its `train_bases` are left out of the
real photos. Minutes on a CPU: for comparing generator variants before one longer training, not a
measure of the demo model (that is benchmarks/real_photos.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "roboflow-melasma"
CLASSES = ("mild", "moderate", "severe")


def load(paths: list[Path], size: int) -> torch.Tensor:
    """Images squashed to size x size (as the Predictor does), float (N, 3, H, W) in [0, 1]."""
    arrays = [np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)) for p in paths]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255


def tiny_cnn() -> nn.Module:
    """Four conv blocks and a linear head (about 100 k parameters)."""
    layers: list[nn.Module] = []
    width = 3
    for out in (16, 32, 64, 96):
        layers += [nn.Conv2d(width, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(), nn.MaxPool2d(2)]
        width = out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3), nn.Linear(width, 3))


def probe(x: torch.Tensor, y: torch.Tensor, real: torch.Tensor, labels: list[bool], epochs: int, seed: int) -> float:
    """Train one tiny CNN (flip augmentation, Adam 2e-3) and return its real-photo AUC."""
    torch.manual_seed(seed)
    model = tiny_cnn()
    optimiser = torch.optim.Adam(model.parameters(), 2e-3, weight_decay=1e-4)
    loss = nn.CrossEntropyLoss()
    for _ in range(epochs):
        model.train()
        for index in torch.randperm(len(x)).split(32):
            batch = x[index]
            batch = torch.where(torch.rand(len(batch), 1, 1, 1) < 0.5, batch.flip(-1), batch)
            optimiser.zero_grad()
            loss(model((batch - 0.5) / 0.25), y[index]).backward()
            optimiser.step()
    model.eval()
    with torch.no_grad():
        probs = model((real - 0.5) / 0.25).softmax(1)
    return float(roc_auc_score(labels, (probs[:, 1] + 2 * probs[:, 2]).numpy()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--n", type=int, default=600, help="training images (train split, first n)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    data = Path(args.data)
    table = pd.read_csv(data / "labels.csv")
    table = table[table["split"] == "train"].head(args.n)
    x = load([data / p for p in table["image"]], args.size)
    y = torch.tensor([CLASSES.index(s) for s in table["severity"]])
    used = set(json.loads((data / "bases.json").read_text())["train_bases"])
    photos = [(p, folder == "melasma") for folder in ("melasma", "non-melasma")
              for p in sorted((REAL / folder).glob("*.jpg")) if p.name not in used]
    real = load([p for p, _ in photos], args.size)
    labels = [m for _, m in photos]
    aucs = [probe(x, y, real, labels, args.epochs, seed) for seed in range(args.seeds)]
    print(f"{data}: {len(x)} images, {len(photos)} real photos ({sum(labels)} melasma); "
          f"AUC per seed {' '.join(f'{a:.3f}' for a in aucs)}; mean {np.mean(aucs):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
