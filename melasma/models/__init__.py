"""The study's six CNNs (and any timm model): registry, factory and safetensors checkpoints."""

from melasma.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from melasma.models.factory import create
from melasma.models.registry import ARCHITECTURES, ArchSpec, get_spec, resolve_module

__all__ = [
    "ARCHITECTURES", "ArchSpec", "CheckpointError", "create", "get_spec", "load_checkpoint",
    "resolve_module", "save_checkpoint",
]
