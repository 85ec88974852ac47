"""Grad-CAM through pytorch-grad-cam, on each architecture's target layer from the model registry."""

from __future__ import annotations

import torch
from torch import nn

from melasma.explain.lrp import ExplainError, check_input


def gradcam_map(model: nn.Module, x: torch.Tensor, layer: nn.Module, target: int | None = None) -> torch.Tensor:
    """Grad-CAM of `target` (None: predicted class) at `layer`, upsampled to x's (H, W), in [0, 1].

    The hooks live only inside pytorch-grad-cam's context manager. Call with the model in eval mode.
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    check_input(x)
    if target is not None and int(target) < 0:
        raise ExplainError(f"target must be a class index >= 0, got {target}")
    targets = None if target is None else [ClassifierOutputTarget(int(target))]
    # an input that needs a gradient keeps the graph alive when the parameters are frozen
    with torch.enable_grad(), GradCAM(model=model, target_layers=[layer]) as cam:
        try:
            grayscale = cam(input_tensor=x.detach().clone().requires_grad_(True), targets=targets)
        except IndexError:
            raise ExplainError(f"target {target} is not a class index of this model") from None
    return torch.from_numpy(grayscale[0]).float()
