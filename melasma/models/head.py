"""The output head: how a network's outputs become severity bins, class probabilities and MASI.

A classification head has one output per class: its probabilities are the softmax, its bin the
most probable class, and it trains with cross-entropy. A regression head has one output, MASI / 48:
its MASI is that output times 48 clipped to 0-48, its bin the severity of that MASI under the
cut-offs (mild below the first, severe from the second), its probabilities that bin one-hot (the
head gives no probabilities), and it trains with smooth L1. Training, evaluation and inference all
ask `head_for(name)`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import nn

from melasma.masi import SCALE_MAX


class MasiLoss(nn.Module):
    """Smooth L1 between a regression head's single output and MASI / 48 (targets in MASI points);
    `reduction` as torch's losses ("mean" or "sum")."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, output: torch.Tensor, masi: torch.Tensor) -> torch.Tensor:
        return nn.functional.smooth_l1_loss(output[:, 0], masi / SCALE_MAX["masi"], reduction=self.reduction)


def bins_from_masi(masi: torch.Tensor, cutoffs: tuple[float, float]) -> torch.Tensor:
    """Severity indices of MASI values exactly as `melasma.masi.severity` bins them: mild below the
    first cut-off, severe from the second. Each cut-off becomes the smallest value of `masi`'s dtype
    at or above it, so a float32 MASI compares as in float64 (a cut-off such as 10.7 rounds down to
    a float32 that the MASI 10.6999998 would otherwise reach) with no float64 on the device."""
    exact = torch.tensor(cutoffs, dtype=torch.float64)
    edges = exact.to(masi.dtype)
    edges = torch.where(edges.double() < exact, torch.nextafter(edges, torch.full_like(edges, math.inf)), edges)
    return torch.bucketize(masi, edges.to(masi.device), right=True)


class Head(ABC):
    """One way of reading a network's raw outputs (N, outputs)."""

    name: ClassVar[str]
    #: Whether the head regresses MASI (trained on MASI values, no class logits to explain or AUC to
    #: compute) rather than classifying (trained on class indices).
    predicts_masi: ClassVar[bool]

    @abstractmethod
    def outputs(self, n_classes: int) -> int:
        """How many outputs the network has for `n_classes` severity classes."""

    @abstractmethod
    def criterion(self, class_weights: torch.Tensor | None, reduction: str) -> nn.Module:
        """The training loss of the raw outputs against MASI values (`predicts_masi`) or class indices."""

    @abstractmethod
    def masi(self, outputs: torch.Tensor) -> torch.Tensor | None:
        """The predicted MASI (N,) in the outputs' dtype, clipped to 0-48; None for a classifier."""

    @abstractmethod
    def bins(self, outputs: torch.Tensor, cutoffs: tuple[float, float]) -> torch.Tensor:
        """The predicted severity index (N,) of each row."""

    @abstractmethod
    def probabilities(self, outputs: torch.Tensor, cutoffs: tuple[float, float], n_classes: int) -> torch.Tensor:
        """Class probabilities (N, n_classes): the softmax, or the derived bin one-hot."""


class ClassificationHead(Head):
    """One logit per class; softmax probabilities; cross-entropy."""

    name = "classification"
    predicts_masi = False

    def outputs(self, n_classes: int) -> int:
        return n_classes

    def criterion(self, class_weights: torch.Tensor | None, reduction: str) -> nn.Module:
        return nn.CrossEntropyLoss(weight=class_weights, reduction=reduction)

    def masi(self, outputs: torch.Tensor) -> torch.Tensor | None:
        return None

    def bins(self, outputs: torch.Tensor, cutoffs: tuple[float, float]) -> torch.Tensor:
        return outputs.argmax(1)

    def probabilities(self, outputs: torch.Tensor, cutoffs: tuple[float, float], n_classes: int) -> torch.Tensor:
        return outputs.softmax(1)


class RegressionHead(Head):
    """One output, MASI / 48; bins and one-hot probabilities from the clipped MASI; smooth L1."""

    name = "regression"
    predicts_masi = True

    def outputs(self, n_classes: int) -> int:
        return 1

    def criterion(self, class_weights: torch.Tensor | None, reduction: str) -> nn.Module:
        return MasiLoss(reduction)

    def masi(self, outputs: torch.Tensor) -> torch.Tensor:
        return (outputs[:, 0] * SCALE_MAX["masi"]).clamp(0, SCALE_MAX["masi"])

    def bins(self, outputs: torch.Tensor, cutoffs: tuple[float, float]) -> torch.Tensor:
        return bins_from_masi(self.masi(outputs), cutoffs)

    def probabilities(self, outputs: torch.Tensor, cutoffs: tuple[float, float], n_classes: int) -> torch.Tensor:
        return nn.functional.one_hot(self.bins(outputs, cutoffs), n_classes).to(outputs.dtype)


_HEADS: dict[str, Head] = {head.name: head for head in (ClassificationHead(), RegressionHead())}


def head_for(name: str) -> Head:
    """The head called `name` (a checkpoint's `head`, `TrainConfig.head`); ValueError otherwise."""
    if name not in _HEADS:
        raise ValueError(f"head must be {' or '.join(_HEADS)}, got {name!r:.40}")
    return _HEADS[name]
