"""benchmarks/semisynth_probe.py: the tiny CNN learns a signal that real images share, and not one they lack."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.semisynth_probe import probe  # noqa: E402


def images(levels: torch.Tensor) -> torch.Tensor:
    """16 px grey images whose brightness is `levels`, with a little noise."""
    generator = torch.Generator().manual_seed(0)
    return (levels.view(-1, 1, 1, 1) + 0.05 * torch.randn(len(levels), 3, 16, 16, generator=generator)).clamp(0, 1)


def test_probe_scores_a_shared_signal_high_and_a_missing_one_at_chance() -> None:
    torch.set_num_threads(1)
    y = torch.arange(90) % 3  # mild, moderate, severe: darker with severity
    x = images(0.8 - 0.25 * y.float())
    labels = [True] * 10 + [False] * 10
    shared = images(torch.tensor([0.3] * 10 + [0.8] * 10))  # melasma photos darker, as in training
    assert probe(x, y, shared, labels, epochs=8, seed=0) > 0.9
    missing = images(torch.full((20,), 0.55))  # nothing tells the photos apart
    assert 0.2 <= probe(x, y, missing, labels, epochs=8, seed=0) <= 0.8
