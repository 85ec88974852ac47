"""Grad-CAM through pytorch-grad-cam, on each architecture's target layer from the model registry."""

from __future__ import annotations

import torch
from torch import nn

from melasma.explain.lrp import ExplainError, Targets, check_input


def cam_targets(target: Targets, count: int) -> list | None:
    """pytorch-grad-cam's per-image targets for `target` (None: each image's predicted class)."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if target is None:
        return None
    values = [int(target)] * count if isinstance(target, int) else [int(t) for t in target]
    if len(values) != count:
        raise ExplainError(f"expected {count} targets (one per image), got {len(values)}")
    if min(values) < 0:
        raise ExplainError(f"target must be a class index >= 0, got {min(values)}")
    return [ClassifierOutputTarget(value) for value in values]


def gradcam_map(model: nn.Module, x: torch.Tensor, layer: nn.Module, target: Targets = None) -> torch.Tensor:
    """Grad-CAM of `target` (None: predicted class) at `layer`, upsampled to x's (H, W), in [0, 1]:
    (N, H, W).

    The hooks live only inside pytorch-grad-cam's context manager. Call with the model in eval mode.
    """
    from pytorch_grad_cam import GradCAM

    check_input(x)
    targets = cam_targets(target, x.shape[0])
    # an input that needs a gradient keeps the graph alive when the parameters are frozen
    with torch.enable_grad(), GradCAM(model=model, target_layers=[layer]) as cam:
        try:
            grayscale = cam(input_tensor=x.detach().clone().requires_grad_(True), targets=targets)
        except IndexError:
            raise ExplainError(f"target {target} is not a class index of this model") from None
    return torch.from_numpy(grayscale).float()
