"""Training one network: `fit` with early stopping, and the split tensors, batches and predictions it uses.

Images are decoded once (`melasma.data.cache`), and each split lives as one uint8 tensor on the
training device; batches are indexed, converted to float and augmented there with per-sample
randomness. On CUDA the step runs under bf16 autocast with channels-last tensors; elsewhere fp32.
Under torchrun the same code trains data-parallel (`melasma.training.distributed`): each process
holds its shard of the train and validation images. The outputs are read through the config's head
(`melasma.models.head`). `melasma.training.run` trains, tests and writes a study's architectures.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from melasma.data.cache import load_cached
from melasma.models.head import head_for
from melasma.training import distributed
from melasma.training.augment import IMAGENET_MEAN, IMAGENET_STD, Augment, normalize, to_float
from melasma.training.config import TrainConfig
from melasma.training.distributed import SINGLE, Context
from melasma.training.events import BatchDone, EpochDone, LogLine, OnEvent

ShouldStop = Callable[[], bool]
#: Seconds between two batch events (every batch is still polled for cancellation).
BATCH_EVENT_EVERY_S = 0.25


class TrainingCancelled(Exception):
    """`should_stop()` returned True during training."""


@dataclass
class Split:
    """One split as tensors on the training device: uint8 images (N, H, W, 3), int64 labels and
    float32 mean MASI (NaN where the manifest gives none). In a multi-process run a rank holds only
    its shard, rows rank, rank + world_size, ... of the split's `total` rows."""

    images: torch.Tensor
    labels: torch.Tensor
    masi: torch.Tensor
    total: int = -1

    def __post_init__(self) -> None:
        if self.total < 0:
            self.total = len(self)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def load_splits(table: pd.DataFrame, image_size: int, device: torch.device,
                cache_dir: Path | None = None, ctx: Context = SINGLE) -> dict[str, Split]:
    """The train/val/test splits of a `load_dataset` table, decoded once and moved to `device`.
    With several processes, each rank decodes and holds its shard of train and val; rank 0 holds
    the whole test split (it alone tests and writes results), the others none of it."""
    splits = {}
    for name in ("train", "val", "test"):
        rows = np.flatnonzero(table["split"].to_numpy() == name)
        total = len(rows)
        mine = rows[distributed.shard(total, ctx).numpy()] if name != "test" else rows if ctx.is_main else rows[:0]
        part = table.iloc[mine]
        images = torch.from_numpy(load_cached(part["path"].tolist(), image_size, cache_dir=cache_dir))
        labels = torch.from_numpy(np.array(part["label"], dtype=np.int64))
        masi = torch.from_numpy(np.array(part["masi"], dtype=np.float32))
        splits[name] = Split(images.to(device), labels.to(device), masi.to(device),
                             total if name != "test" else len(mine))
    return splits


def autocast(device: torch.device) -> AbstractContextManager:
    """bf16 autocast on CUDA; fp32 elsewhere (CPUs without bf16 units run it 5-15x slower)."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def prepare_batch(images: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                  augment: Augment | None = None, generator: torch.Generator | None = None,
                  rows: torch.Tensor | None = None, batch: int | None = None) -> torch.Tensor:
    """uint8 (B, H, W, 3) on the device -> normalised float (B, 3, H, W), augmented if asked (`rows`
    of a `batch`: see `Augment`)."""
    x = to_float(images)
    if augment is not None:
        x = augment(x, generator, rows, batch)
    x = normalize(x, mean, std)
    return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module,
               x: torch.Tensor, y: torch.Tensor, scale: float | torch.Tensor = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward/backward/update of `criterion(outputs, y) * scale`; returns that (detached) loss
    and the (detached) outputs. A summing criterion with `scale` = 1 / the batch's weight makes the
    mean loss; several processes use world_size / the global batch's weight (DDP averages gradients)."""
    with autocast(x.device):
        logits = model(x)
    loss = criterion(logits.float(), y) * scale
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), logits.detach().float()


def batch_indices(n: int, batch_size: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """Shuffled (with a generator) or ordered index batches; a final batch of one joins the previous
    batch, since batch norm cannot train on a single image."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    chunks = list(order.split(batch_size))
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2:] = [torch.cat(chunks[-2:])]
    return chunks


def input_normalisation(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std a model's input is normalised with: its own `input_mean` / `input_std` (set by
    `create` for weights trained on another normalisation, e.g. EfficientNet-Lite's [-1, 1]), else
    ImageNet's. Training batches, evaluation and the checkpoint's `mean` / `std` all use them."""
    mean, std = getattr(model, "input_mean", None), getattr(model, "input_std", None)
    if mean is None or std is None:
        return tuple(IMAGENET_MEAN), tuple(IMAGENET_STD)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


@torch.no_grad()
def predict_outputs(model: nn.Module, split: Split, batch_size: int = 64, mean=None,
                    std=None) -> torch.Tensor:
    """The raw outputs (N, outputs) of `model` in eval mode, without augmentation, on the CPU; `mean`
    / `std` default to the model's own (`input_normalisation`)."""
    if mean is None or std is None:
        mean, std = input_normalisation(model)
    model.eval()
    outputs = []
    for rows in batch_indices(len(split), batch_size):
        x = prepare_batch(split.images[rows.to(split.images.device)], mean, std)
        with autocast(x.device):
            outputs.append(model(x).float().cpu())
    return torch.cat(outputs)


def predict_probs(model: nn.Module, split: Split, batch_size: int = 64, mean=None,
                  std=None) -> np.ndarray:
    """Softmax probabilities (N, classes) of `model` in eval mode, without augmentation."""
    return predict_outputs(model, split, batch_size, mean, std).softmax(1).numpy()


def gathered_outputs(model: nn.Module, split: Split, batch_size: int, ctx: Context = SINGLE) -> torch.Tensor:
    """`predict_outputs` of the whole split (every rank's shard gathered, in the split's order), on the CPU."""
    return distributed.gather_rows(predict_outputs(model, split, batch_size), split.total, ctx, split.labels.device)


def _evaluate_loss(model: nn.Module, split: Split, criterion: nn.Module, batch_size: int,
                   config: TrainConfig | None = None, ctx: Context = SINGLE) -> tuple[float, float]:
    """Validation loss and (bin) accuracy over the whole split (gathered from every rank's shard);
    a regression head when `config.head` says so."""
    device = split.labels.device
    outputs = gathered_outputs(model, split, batch_size, ctx).to(device)
    labels = distributed.gather_rows(split.labels, split.total, ctx, device)
    if config is not None and head_for(config.head).predicts_masi:
        masi = distributed.gather_rows(split.masi, split.total, ctx, device)
        predicted = head_for(config.head).bins(outputs, config.cutoffs)
        return float(criterion(outputs, masi)), float((predicted == labels).float().mean())
    probs = outputs.softmax(1)
    loss = criterion(probs.clamp_min(1e-12).log(), labels)  # cross-entropy from probabilities
    return float(loss), float((probs.argmax(1) == labels).float().mean())


def _local_batches(chunks: list[torch.Tensor], ctx: Context) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
    """For each global batch (rows of the whole split): this rank's local rows, their positions in
    the batch and the batch's size."""
    for rows in chunks:
        mine = (rows % ctx.world_size == ctx.rank).nonzero().flatten()
        yield rows[mine] // ctx.world_size, mine, len(rows)


def fit(model: nn.Module, train: Split, val: Split, config: TrainConfig, *, arch: str,
        class_weights: torch.Tensor | None = None, on_event: OnEvent | None = None,
        should_stop: ShouldStop | None = None, lr: float | None = None, ctx: Context = SINGLE) -> pd.DataFrame:
    """Train `model` (already on the device) with Adam (`lr`, default `config.lr`) and early
    stopping on validation loss.

    The best-validation weights are restored at the end. Returns the history (one row per epoch).
    Raises TrainingCancelled when `should_stop()` turns True (polled before every batch). With
    several processes (`ctx`), `train` and `val` are this rank's shards; each global batch is the one
    a single process would train on, rank 0 polls `should_stop` and decides early stopping.
    """
    emit, stop = on_event or (lambda event: None), should_stop or (lambda: False)
    device = train.labels.device
    prepared = distributed.prepare(model, ctx, device, config.seed)
    net = prepared.net
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr if lr is None else lr,
                                 weight_decay=config.weight_decay)
    head = head_for(config.head)
    criterion = head.criterion(class_weights, "sum")
    val_criterion = head.criterion(None, "mean") if head.predicts_masi else nn.NLLLoss(weight=class_weights)
    targets = train.masi if head.predicts_masi else train.labels
    sample_weights = class_weights.to(device)[train.labels] if class_weights is not None and not head.predicts_masi \
        else torch.ones(len(train), device=device)
    order_rng = torch.Generator().manual_seed(config.seed)
    augment_rng = torch.Generator(device=device).manual_seed(config.seed)
    augment = Augment()
    mean, std = input_normalisation(model)
    best_loss, best_state, best_epoch, waited = float("inf"), None, 0, 0
    rows = []
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        net.train()
        chunks = batch_indices(train.total, config.batch_size, order_rng)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        last_event = 0.0
        for index, (local, positions, size) in enumerate(_local_batches(chunks, ctx), 1):
            rows_dev = local.to(device, non_blocking=True)
            # one collective per step: the global batch's loss weight, and rank 0's cancel flag
            weight_and_stop = distributed.sum_all(torch.stack([
                sample_weights[rows_dev].sum(), torch.tensor(float(ctx.is_main and stop()), device=device)]), ctx)
            if weight_and_stop[1] > 0:
                raise TrainingCancelled(f"cancelled during {arch} epoch {epoch}")
            x = prepare_batch(train.images[rows_dev], mean, std, augment=augment, generator=augment_rng,
                              rows=positions.to(device), batch=size)
            prepared.set_batch(positions.to(device), size)
            loss, outputs = train_step(net, optimizer, criterion, x, targets[rows_dev],
                                       ctx.world_size / weight_and_stop[0])
            loss_sum += loss / ctx.world_size * size  # this rank's share of the batch mean, times its size
            correct += (head.bins(outputs, config.cutoffs) == train.labels[rows_dev]).sum()
            now = time.perf_counter()
            if now - last_event >= BATCH_EVENT_EVERY_S or index == len(chunks):
                last_event = now
                emit(BatchDone(arch, epoch, index, len(chunks), float(loss)))
        totals = distributed.sum_all(torch.stack([loss_sum, correct.to(loss_sum.dtype)]), ctx)
        train_loss, train_acc = float(totals[0]) / train.total, float(totals[1]) / train.total
        val_loss, val_acc = _evaluate_loss(model, val, val_criterion, config.batch_size, config, ctx)
        improved = val_loss < best_loss
        if improved:
            best_loss, best_epoch, waited = val_loss, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            waited += 1
        event = EpochDone(arch, epoch, config.epochs, train_loss, train_acc, val_loss, val_acc,
                          optimizer.param_groups[0]["lr"], time.perf_counter() - started, improved)
        rows.append(event.row())
        emit(event)
        if distributed.from_main(waited >= config.patience, ctx, device):
            emit(LogLine(f"{arch}: early stop after epoch {epoch}, validation loss "
                         f"not improved for {config.patience} epochs (best epoch {best_epoch})"))
            break
    prepared.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    return pd.DataFrame(rows)


def class_weights_for(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Balanced weights n / (classes x count) as scikit-learn's "balanced"; absent classes get 0."""
    counts = torch.bincount(labels, minlength=n_classes).float()
    return torch.where(counts > 0, len(labels) / (n_classes * counts.clamp_min(1)), torch.zeros_like(counts))
