"""A model's explanations at the speed of its forward pass: set up once, reused for every call.

The per-call path (`melasma.explain.explain`) canonizes the model and registers zennit's hooks on
every layer (and pytorch-grad-cam's on one), then removes them all, on every call: that set-up,
not arithmetic, made explanations 20-40 times slower than the forward pass (issue 14). An
`Explainer` does it once per loaded model:

- LRP: a dedicated copy of the model, canonized, with the composite's hooks registered until
  `close()`, using the lean form of zennit's rules (`melasma.explain.rules`: modified parameters
  computed once, all-zero branches skipped, and each hooked layer's own backward, whose result
  zennit discards, never run);
- Grad-CAM and gradient x input: a second copy carrying pytorch-grad-cam's activation and
  gradient hooks on the target layer. One forward and one backward of the target logits give both
  maps: the gradient at the input (gxi) and the layer's activations and gradients (Grad-CAM).

The caller's model is never touched, so prediction keeps its plain forward. The hooks hold
per-forward state, so one lock serialises calls. Maps equal the per-call path's (tests: max abs
difference <= 1e-5 of the map's largest magnitude, six architectures).
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

import torch
from torch import nn

from melasma.explain.cam import cam_targets
from melasma.explain.canonizers import canonizers_for
from melasma.explain.lrp import (
    COMPOSITES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LRP_ZERO_BIAS,
    ExplainError,
    Targets,
    check_input,
    one_hot_start,
    target_indices,
)
from melasma.explain.methods import METHODS
from melasma.explain.rules import drop_merged_batch_norms
from melasma.models.registry import get_spec, resolve_module

#: Grad-CAM feature maps with fewer cells than this per side localise too coarsely to trust.
COARSE_CAM_CELLS = 4


@dataclass(frozen=True)
class Explanations:
    """Maps for a batch: `maps[method]` is (N, H, W) float32 on the CPU, for class `targets[i]`.

    `logits` (N, C) come from the plain (uncanonized) forward when Grad-CAM or gxi ran, else from
    the LRP copy. `cam_grid` is Grad-CAM's feature-map size (rows, columns), or None.
    `latency_ms` holds "gradient pass" (Grad-CAM and gxi together) and "lrp", as run, and LRP's two
    parts, "lrp forward" and "lrp relevance" (the backward pass of the rules).
    """

    targets: tuple[int, ...]
    logits: torch.Tensor
    maps: dict[str, torch.Tensor]
    cam_grid: tuple[int, int] | None
    latency_ms: dict[str, float]

    @property
    def cam_is_coarse(self) -> bool:
        """Whether Grad-CAM's feature map is too small to localise (under 4 x 4 cells)."""
        return self.cam_grid is not None and min(self.cam_grid) < COARSE_CAM_CELLS


def _frozen_copy(model: nn.Module) -> nn.Module:
    duplicate = copy.deepcopy(model).eval()
    for parameter in duplicate.parameters():
        parameter.requires_grad_(False)
    return duplicate


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Explainer:
    """LRP, Grad-CAM and gradient x input for one model, set up once; `close()` releases it.

    `mean`/`std` are the input normalisation (they bound EpsilonGammaBox's first layer). Thread-safe.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        composite: str = "epsilon_plus_flat",
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        from pytorch_grad_cam import GradCAM

        if composite not in COMPOSITES:
            raise ExplainError(f"composite must be one of {', '.join(COMPOSITES)}, got {composite!r}")
        spec = get_spec(model)
        self._lock = threading.Lock()
        self._lrp_model = _frozen_copy(model)
        reference = next(self._lrp_model.parameters())
        probe = torch.zeros(1, 3, 1, 1, dtype=reference.dtype, device=reference.device)
        zero_params = "bias" if LRP_ZERO_BIAS[composite] else None
        self._composite = COMPOSITES[composite](
            self._lrp_model, probe, canonizers_for(spec.lrp_canonizer), zero_params, mean, std, lean=True
        )
        self._composite.register(self._lrp_model)
        drop_merged_batch_norms(self._lrp_model, self._composite)
        self._grad_model = _frozen_copy(model)
        self._cam = GradCAM(model=self._grad_model, target_layers=[resolve_module(self._grad_model, spec.cam_layer)])
        self.device = reference.device
        self.closed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove the hooks, revert the canonizers and drop both copies (idempotent)."""
        with self._lock:
            if self.closed:
                return
            self._composite.remove()
            self._cam.activations_and_grads.release()
            del self._lrp_model, self._grad_model, self._cam, self._composite
            self.closed = True

    def explain(self, x: torch.Tensor, methods: Sequence[str] = METHODS, target: Targets = None) -> Explanations:
        """Maps of `methods` for x (N, 3, H, W) on the model's device; `target`: a class index, one
        per image, or None (each image's predicted class, from the plain forward when one runs)."""
        check_input(x)
        unknown = [m for m in methods if m not in METHODS]
        if unknown or not methods:
            raise ExplainError(f"methods must be among {', '.join(METHODS)}, got {list(methods)}")
        x = x.to(self.device)
        with self._lock:
            if self.closed:
                raise ExplainError("this explainer is closed (its checkpoint was unloaded)")
            maps: dict[str, torch.Tensor] = {}
            latency: dict[str, float] = {}
            logits: torch.Tensor | None = None
            cam_grid: tuple[int, int] | None = None
            if "gradcam" in methods or "gxi" in methods:
                start = time.perf_counter()
                logits, index, cam_grid = self._gradient_pass(x, target, methods, maps)
                target = index.tolist()  # LRP explains the classes the plain forward chose
                _synchronise(self.device)
                latency["gradient pass"] = (time.perf_counter() - start) * 1000.0
            if "lrp" in methods:
                lrp_logits, maps["lrp"] = self._lrp(x, target, latency)
                logits = lrp_logits if logits is None else logits
            assert logits is not None  # `methods` is not empty
            targets = tuple(int(t) for t in target_indices(target, logits).tolist())
        ordered = {m: maps[m] for m in METHODS if m in maps}
        return Explanations(targets, logits.detach().float().cpu(), ordered, cam_grid, latency)

    def _gradient_pass(
        self, x: torch.Tensor, target: Targets, methods: Sequence[str], maps: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int] | None]:
        """One forward and backward of the target logits: gxi from the input gradient, Grad-CAM
        from the target layer's activations and gradients (pytorch-grad-cam's own arithmetic)."""
        with torch.enable_grad():
            inputs = x.detach().clone().requires_grad_(True)
            logits = self._cam.activations_and_grads(inputs)
            index = target_indices(target, logits)
            (gradient,) = torch.autograd.grad(logits.gather(1, index[:, None]).sum(), inputs)
        cam_grid = None
        if "gxi" in methods:
            maps["gxi"] = (gradient * inputs.detach()).sum(1).float().cpu()
        if "gradcam" in methods:
            targets = cam_targets(index.tolist(), x.shape[0])
            per_layer = self._cam.compute_cam_per_layer(inputs, targets, False)
            maps["gradcam"] = torch.from_numpy(self._cam.aggregate_multi_layers(per_layer)).float()
            cam_grid = tuple(self._cam.activations_and_grads.activations[0].shape[-2:])
        self._cam.activations_and_grads.clear()
        return logits.detach(), index, cam_grid

    def _lrp(self, x: torch.Tensor, target: Targets, latency: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
        began = time.perf_counter()
        with torch.enable_grad():
            inputs = x.detach().clone().requires_grad_(True)
            output = self._lrp_model(inputs)
            start = one_hot_start(target)(output.detach())
            _synchronise(self.device)
            middle = time.perf_counter()
            (relevance,) = torch.autograd.grad(output, inputs, grad_outputs=start)
        relevance = relevance.sum(1).float().cpu()
        end = time.perf_counter()
        latency.update({"lrp": (end - began) * 1000.0, "lrp forward": (middle - began) * 1000.0,
                        "lrp relevance": (end - middle) * 1000.0})
        return output.detach(), relevance
