"""`resolve_device`: "auto" picks CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

import torch

from melasma.errors import UserError


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The torch device for "auto", "cpu", "cuda", "cuda:N" or "mps"; UserError if it is absent."""
    name = str(name).strip().lower()
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"device {name!r} requested but no CUDA GPU is available (use --device auto or cpu)")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device {name!r} requested but only {torch.cuda.device_count()} GPU(s) exist")
        return device
    if name == "mps":
        if not has_mps:
            raise UserError("device 'mps' requested but Apple MPS is not available (use --device auto or cpu)")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise UserError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps")
