"""Training the lesion decoder: every augmented view is encoded once, then the decoder fits.

The encoder is frozen, so its features of a view do not change during training: `encode_views`
computes them once (fp16), and `fit_decoder` runs many epochs over them in a fraction of the time a
pass through the encoder would take. Cross-validation encodes once and fits one decoder per fold.
The loss is binary cross-entropy against the share of each 8 x 8 cell inside the lesion outline,
counted only on cells that are mostly skin (`LesionPhoto.skin`): the model is asked where on the
skin the lesion is, never to tell skin from hair or background.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from melasma.errors import UserError
from melasma.lesions.augment import View, plain_view, random_view
from melasma.lesions.net import OUTPUT_STRIDE, FpnDecoder, LesionNet
from melasma.lesions.photos import LesionPhoto
from melasma.models.packaged import PACKAGED

#: called after each epoch with (epoch, epochs, mean training loss)
OnEpoch = Callable[[int, int, float], None]
#: called after each encoded photo with (done, total)
OnEncoded = Callable[[int, int], None]


@dataclass(frozen=True)
class LesionTrainConfig:
    """How the shipped lesion model was trained (`python -m melasma lesions train` defaults)."""

    size: int = 448  # input side, px
    views: int = 8  # views per photo: the plain one and `views - 1` augmented ones
    epochs: int = 60
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    healthy: bool = False  # also train on photos without melasma (all cells negative)

    def __post_init__(self) -> None:
        if self.size % 32 or not 64 <= self.size <= 1024:
            raise UserError(f"size must be a multiple of 32 between 64 and 1024, got {self.size}")
        if self.views < 1 or self.epochs < 1 or self.batch_size < 1:
            raise UserError("views, epochs and batch size must be at least 1")
        if not 0 < self.lr < 1:
            raise UserError(f"lr must lie in (0, 1), got {self.lr}")


@dataclass
class EncodedViews:
    """Encoder features of every view of every photo, with the cell targets and weights."""

    features: list[torch.Tensor]  # per level: (photos * views, C, h, w) fp16
    target: torch.Tensor  # (photos * views, 1, s, s): share of each cell inside the outline
    weight: torch.Tensor  # (photos * views, 1, s, s): 1 where the cell is mostly skin
    views: int

    def rows(self, photo_indices: Sequence[int] | np.ndarray, view: np.ndarray) -> torch.Tensor:
        """The row of view `view[i]` of photo `photo_indices[i]`."""
        return torch.as_tensor(np.asarray(photo_indices) * self.views + view, dtype=torch.long)


def to_input(rgb: np.ndarray) -> torch.Tensor:
    """uint8 (h, w, 3) -> (1, 3, h, w) in [-1, 1], the packaged encoder's normalisation."""
    weights = PACKAGED["efficientnet_lite0"]
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255
    mean = torch.tensor(weights.mean)[:, None, None]
    std = torch.tensor(weights.std)[:, None, None]
    return (x - mean) / std


def cell_targets(view: View) -> tuple[torch.Tensor, torch.Tensor]:
    """(lesion share, skin weight) of each 8 x 8 cell of a view, each (1, s, s)."""
    lesion = F.avg_pool2d(torch.from_numpy(view.lesion)[None, None], OUTPUT_STRIDE)[0]
    skin = F.avg_pool2d(torch.from_numpy(view.skin)[None, None], OUTPUT_STRIDE)[0]
    return lesion, (skin >= 0.5).float()


def photo_views(photo: LesionPhoto, config: LesionTrainConfig, rng: np.random.Generator) -> list[View]:
    """The plain view first, then `views - 1` random ones."""
    return [plain_view(photo, config.size)] + [random_view(photo, config.size, rng)
                                               for _ in range(config.views - 1)]


def encode_views(net: LesionNet, photos: Sequence[LesionPhoto], config: LesionTrainConfig,
                 on_encoded: OnEncoded | None = None) -> EncodedViews:
    """Encode `config.views` views of every photo (seeded by `config.seed`)."""
    rng = np.random.default_rng(config.seed)
    net.eval()
    levels: list[list[torch.Tensor]] = []
    targets, weights = [], []
    for index, photo in enumerate(photos):
        views = photo_views(photo, config, rng)
        batch = torch.cat([to_input(view.rgb) for view in views])
        levels.append([level.half() for level in net.encode(batch)])
        for view in views:
            target, weight = cell_targets(view)
            targets.append(target)
            weights.append(weight)
        if on_encoded:
            on_encoded(index + 1, len(photos))
    features = [torch.cat([photo_levels[i] for photo_levels in levels]) for i in range(len(levels[0]))]
    return EncodedViews(features, torch.stack(targets), torch.stack(weights), config.views)


def fit_decoder(encoded: EncodedViews, photo_indices: Sequence[int], config: LesionTrainConfig,
                on_epoch: OnEpoch | None = None) -> FpnDecoder:
    """A decoder fitted on the views of the photos `photo_indices` (AdamW, cosine schedule)."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed + 1)
    decoder = FpnDecoder([level.shape[1] for level in encoded.features])
    optimiser = torch.optim.AdamW(decoder.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * -(-len(photo_indices) // config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.lr, total_steps=steps,
                                                   pct_start=0.1)
    photos = np.asarray(photo_indices)
    decoder.train()
    for epoch in range(config.epochs):
        order = rng.permutation(photos)
        view = rng.integers(0, encoded.views, size=len(order))
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            rows = encoded.rows(order[start:start + config.batch_size], view[start:start + config.batch_size])
            logits = decoder([level[rows].float() for level in encoded.features])
            weight = encoded.weight[rows]
            loss = (F.binary_cross_entropy_with_logits(logits, encoded.target[rows], reduction="none")
                    * weight).sum() / weight.sum().clamp_min(1.0)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(rows)
        if on_epoch:
            on_epoch(epoch + 1, config.epochs, total / len(order))
    return decoder.eval()


def training_rows(photos: Sequence[LesionPhoto], config: LesionTrainConfig,
                  subset: Sequence[int] | None = None) -> list[int]:
    """Indices of the photos a model trains on: the melasma photos of `subset` (all by default),
    plus its healthy photos when `config.healthy`."""
    chosen = range(len(photos)) if subset is None else subset
    return [i for i in chosen if photos[i].melasma or config.healthy]
