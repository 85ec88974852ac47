"""Explanations: LRP (zennit + our canonizers), Grad-CAM, gradient x input, views and metrics.

`Explainer(model)` sets a model's explanations up once (canonized copy, hooks kept) and is what
the Predict tab, the CLI and the report use. `explain(model, x, method, target)` is the per-call
reference path (`percall`). Names load on first use, so that `melasma.explain.methods` (the table
of methods, which the CLI's --help reads) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from melasma.explain.methods import METHODS, TABLE, Method

if TYPE_CHECKING:
    from melasma.explain.explainer import Explainer, Explanations
    from melasma.explain.lrp import ExplainError
    from melasma.explain.percall import IMPLEMENTATIONS, explain, inference_state

#: name -> the module that defines it (imported on first use)
_LAZY = {"Explainer": "explainer", "Explanations": "explainer", "ExplainError": "lrp", "IMPLEMENTATIONS": "percall",
         "explain": "percall", "inference_state": "percall"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"melasma.explain.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'melasma.explain' has no attribute {name!r}")


__all__ = ["IMPLEMENTATIONS", "METHODS", "TABLE", "ExplainError", "Explainer", "Explanations", "Method", "explain",
           "inference_state"]
