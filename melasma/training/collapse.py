"""Collapse: a run that ends as a constant predictor or never beats chance on its training loss.

From random init the study's Adam lr 1e-3 drives AlexNet and VGG16 to always predict the majority
class. `detect_collapse` names such runs and the likely cause, so Table 1 never shows one as a model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from melasma.training.config import SCRATCH_LR


@dataclass(frozen=True)
class Collapse:
    """Whether a run collapsed; `signs` are the observations, `cause` the likely cause and remedy."""

    collapsed: bool
    signs: tuple[str, ...] = ()
    cause: str = ""

    def describe(self) -> str:
        """One line for tables and logs ("" when the run did not collapse)."""
        return f"{'; '.join(self.signs)} (likely cause: {self.cause})" if self.collapsed else ""


def detect_collapse(predictions: dict[str, np.ndarray], final_train_loss: float, classes: Sequence[str], *,
                    lr: float, pretrained_source: str) -> Collapse:
    """A collapse when any split in `predictions` (name -> predicted class indices) holds one
    predicted class, or the last epoch's training loss is not below ln(number of classes) (chance)."""
    signs = []
    for split, predicted in predictions.items():
        values = np.unique(np.asarray(predicted))
        if len(predicted) > 1 and len(values) == 1:
            signs.append(f"one predicted class on {split} (always {classes[int(values[0])]})")
    chance = math.log(len(classes))
    if not final_train_loss < chance:
        signs.append(f"final training loss {final_train_loss:.3f} not below ln {len(classes)} = {chance:.3f}")
    if not signs:
        return Collapse(False)
    if pretrained_source.startswith("random init") and lr > SCRATCH_LR:
        cause = (f"random init with Adam lr {lr:g}; from scratch train with --lr {SCRATCH_LR:g} "
                 f"(or --lr-auto), see docs/training.md")
    else:
        cause = f"Adam lr {lr:g} too high for this network or data, or too few epochs; try a 10x lower --lr"
    return Collapse(True, tuple(signs), cause)
