"""`TrainConfig`: one training run's settings, defaulting to the study's protocol, checked up front."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from melasma.errors import UserError
from melasma.masi import DEFAULT_CUTOFFS, SCALE_MAX

#: Seeds numpy and torch accept (64-bit).
MAX_SEED = 2**63 - 1

DEVICES = ("auto", "cpu", "cuda", "mps")
#: Output heads: three severity logits, or one MASI value (scaled to 0-1) regressed on the mean MASI.
HEADS = ("classification", "regression")
#: Adam learning rate `lr_auto` uses for a network that starts from random init.
SCRATCH_LR = 1e-4
#: The learning rates and weight decays a run may use: wider than any published recipe, narrow
#: enough that an absurd value (lr 1e308 ended as "Input contains NaN") is refused before training.
LR_RANGE = (1e-8, 10.0)
MAX_WEIGHT_DECAY = 1.0


@dataclass
class TrainConfig:
    """Settings of `train_many`. Defaults follow the study: Adam lr 1e-3, weight decay 1e-4, batch 32,
    224 px, early stopping after 3 epochs without validation-loss improvement.

    `archs` may be given as a comma list; `data`, `out` and `cache_dir` as strings; `pretrained` is
    "auto" (torchvision's ImageNet weights, as the study), "timm", "off" or a weights file.
    `bootstrap` is the number of resamples behind the 95% CIs. `cutoffs` are the MASI values where
    moderate and severe begin (a "16,32" string is accepted). `lr_auto` trains networks that start
    from random init with `SCRATCH_LR` (the study's 1e-3 collapses AlexNet and VGG16 from scratch).
    `allow_patient_overlap` accepts a user `split` column that puts one patient in two splits.
    `head` "regression" trains one output on the manifest's mean MASI (smooth L1 on MASI / 48)
    instead of the three severity logits; bins then come from the predicted MASI and `cutoffs`.
    `processes` is how many data-parallel processes a queued job trains with (the job runner
    launches torchrun for more than one): 0 means one per GPU when several are present, else one.
    """

    data: Path
    archs: tuple[str, ...] = ("resnet18",)
    epochs: int = 30
    batch_size: int = 32
    image_size: int = 224
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 3
    device: str = "auto"
    pretrained: str = "auto"
    seed: int = 0
    out: Path = field(default_factory=lambda: Path("runs") / "latest")
    class_weighted: bool = False
    cache_dir: Path | None = None
    bootstrap: int = 1000
    cutoffs: tuple[float, float] = DEFAULT_CUTOFFS["masi"]
    lr_auto: bool = False
    allow_patient_overlap: bool = False
    head: str = "classification"
    processes: int = 0

    def __post_init__(self) -> None:
        self.data = Path(self.data).expanduser()
        self.out = Path(self.out).expanduser()
        self.cache_dir = Path(self.cache_dir).expanduser() if self.cache_dir else None
        names = self.archs.split(",") if isinstance(self.archs, str) else list(self.archs)
        self.archs = tuple(dict.fromkeys(name.strip() for name in names if name.strip()))
        if not self.archs:
            raise UserError("choose at least one architecture")
        # deferred: imports torch; reading the defaults (train --help) needs none
        from melasma.models import get_spec
        from melasma.models.factory import PRETRAINED_SOURCES

        specs = [get_spec(name) for name in self.archs]  # UserError naming an unknown one
        for name, low in (("epochs", 1), ("batch size", 2), ("patience", 1), ("bootstrap", 0), ("processes", 0)):
            value = getattr(self, name.replace(" ", "_"))
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UserError(f"{name} must be an integer >= {low}, got {value!r}")
        smallest = max(specs, key=lambda spec: spec.min_size)
        if not isinstance(self.image_size, int) or self.image_size < smallest.min_size:
            raise UserError(f"image size must be at least {smallest.min_size} px for {smallest.name}, "
                             f"got {self.image_size!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise UserError(f"seed must be from 0 to 2**63-1, got {self.seed!r}")
        if not (math.isfinite(self.lr) and LR_RANGE[0] <= self.lr <= LR_RANGE[1]):
            raise UserError(f"learning rate must be from {LR_RANGE[0]:g} to {LR_RANGE[1]:g}, got {self.lr!r}")
        if not 0 <= self.weight_decay <= MAX_WEIGHT_DECAY:
            raise UserError(f"weight decay must be from 0 to {MAX_WEIGHT_DECAY:g}, got {self.weight_decay!r}")
        if self.device.split(":")[0] not in DEVICES:
            raise UserError(f"device must be one of {', '.join(DEVICES)} (or cuda:N), got {self.device!r}")
        self.pretrained = str(self.pretrained)
        if self.pretrained not in PRETRAINED_SOURCES and not Path(self.pretrained).expanduser().is_file():
            raise UserError(f"pretrained must be {', '.join(PRETRAINED_SOURCES)} or a weights file; "
                             f"{self.pretrained} not found")
        self.cutoffs = parse_cutoffs(self.cutoffs)
        if self.head not in HEADS:
            raise UserError(f"head must be one of {', '.join(HEADS)}, got {self.head!r}")
        if self.head == "regression" and self.class_weighted:
            raise UserError("class weighting applies to the classification head only")

    def learning_rate(self, pretrained_source: str) -> float:
        """The Adam learning rate for a network whose weights started from `pretrained_source`."""
        return SCRATCH_LR if self.lr_auto and pretrained_source.startswith("random init") else self.lr


def parse_cutoffs(value: str | tuple[float, float] | list[float]) -> tuple[float, float]:
    """MASI cut-offs (moderate from, severe from) from "16,32" or a pair; 0 < first < second <= 48."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        low, high = (float(part) for part in parts)
    except (TypeError, ValueError):
        raise UserError(f"cutoffs must be two numbers such as 16,32, got {value!r}") from None
    if not 0 < low < high <= SCALE_MAX["masi"]:
        raise UserError(f"cutoffs must satisfy 0 < moderate < severe <= 48, got {low:g},{high:g}")
    return low, high
