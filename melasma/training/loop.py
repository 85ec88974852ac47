"""Training: `fit` one network with early stopping, `train_many` for the study's protocol end to end.

Images are decoded once (`melasma.data.cache`), and each split lives as one uint8 tensor on the
training device; batches are indexed, converted to float and augmented there with per-sample
randomness. On CUDA the step runs under bf16 autocast with channels-last tensors; elsewhere fp32.
Under torchrun the same code trains data-parallel (`melasma.training.distributed`): each process
holds its shard of the train and validation images, and rank 0 writes the results.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from melasma.data.cache import load_cached
from melasma.data.manifest import DatasetError, load_dataset, manifest_hash
from melasma.data.skin_tone import skin_groups
from melasma.data.splits import patient_id_warning
from melasma.masi import SCALE_MAX, SEVERITIES
from melasma.models import create, get_spec, save_checkpoint
from melasma.models.checkpoint import jsonable
from melasma.training import distributed, figures
from melasma.training.augment import IMAGENET_MEAN, IMAGENET_STD, Augment, normalize, to_float
from melasma.training.collapse import detect_collapse
from melasma.training.config import TrainConfig
from melasma.training.device import resolve_device
from melasma.training.distributed import SINGLE, Context
from melasma.training.events import ArchDone, BatchDone, EpochDone, LogLine, OnEvent
from melasma.training.metrics import evaluate_predictions, evaluate_regression, masi_bins, subgroup_metrics
from melasma.training.report import subgroup_columns, summary_row, write_summary

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


class MasiLoss(nn.Module):
    """Smooth L1 between a regression head's single output and MASI / 48 (targets in MASI points);
    `reduction` as torch's losses ("mean" or "sum")."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, output: torch.Tensor, masi: torch.Tensor) -> torch.Tensor:
        return nn.functional.smooth_l1_loss(output[:, 0], masi / SCALE_MAX["masi"], reduction=self.reduction)


def masi_from_output(output: torch.Tensor) -> torch.Tensor:
    """A regression head's (N, 1) output as MASI points, clipped to the scale's 0-48."""
    return (output[:, 0].float() * SCALE_MAX["masi"]).clamp(0, SCALE_MAX["masi"])


def bins_from_masi(masi: torch.Tensor, cutoffs: tuple[float, float]) -> torch.Tensor:
    """Severity indices of MASI values (mild below the first cut-off, severe from the second)."""
    return torch.bucketize(masi, torch.tensor(cutoffs, dtype=masi.dtype, device=masi.device), right=True)


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


def predict_masi(model: nn.Module, split: Split, batch_size: int = 64, mean=None,
                 std=None) -> np.ndarray:
    """A regression head's predicted MASI (N,), clipped to 0-48, in eval mode without augmentation."""
    return masi_from_output(predict_outputs(model, split, batch_size, mean, std)).numpy()


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
    if config is not None and config.head == "regression":
        masi = distributed.gather_rows(split.masi, split.total, ctx, device)
        predicted = bins_from_masi(masi_from_output(outputs), config.cutoffs)
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
    regression = config.head == "regression"
    criterion = MasiLoss("sum") if regression else nn.CrossEntropyLoss(weight=class_weights, reduction="sum")
    val_criterion = MasiLoss() if regression else nn.NLLLoss(weight=class_weights)
    targets = train.masi if regression else train.labels
    sample_weights = class_weights.to(device)[train.labels] if class_weights is not None and not regression \
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
            predicted = bins_from_masi(masi_from_output(outputs), config.cutoffs) if regression else outputs.argmax(1)
            correct += (predicted == train.labels[rows_dev]).sum()
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


def _train_arch(arch: str, splits: dict[str, Split], config: TrainConfig, device: torch.device,
                data_info: dict[str, Any], test_skin: Sequence[str | None], test_paths: list[str], emit: OnEvent,
                stop: ShouldStop, ctx: Context = SINGLE) -> dict[str, Any] | None:
    """Train, test and write one architecture; the summary row (None on ranks other than 0)."""
    classes = list(SEVERITIES)
    regression = config.head == "regression"
    torch.manual_seed(config.seed)
    model = create(arch, 1 if regression else len(classes), config.pretrained).to(device)
    pretrained = str(model.pretrained_source)
    lr = config.learning_rate(pretrained)
    emit(LogLine(f"{arch}: weights {pretrained}; Adam lr {lr:g}"))
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    train = splits["train"]
    weights = class_weights_for(distributed.gather_rows(train.labels, train.total, ctx, device), len(classes)) \
        if config.class_weighted else None
    started = time.perf_counter()
    try:
        history = fit(model, train, splits["val"], config, arch=arch, class_weights=weights,
                      on_event=emit, should_stop=stop, lr=lr, ctx=ctx)
    except torch.OutOfMemoryError as error:
        raise torch.OutOfMemoryError(
            f"out of memory training {arch} on {device} at batch {config.batch_size}, {config.image_size} px: "
            "lower --batch-size or --image-size") from error
    seconds = time.perf_counter() - started
    val_outputs = gathered_outputs(model, splits["val"], config.batch_size, ctx)
    if not ctx.is_main:
        distributed.barrier(ctx)  # rank 0 tests and writes the results
        return None
    test = splits["test"]
    if regression:
        test_masi = predict_masi(model, test, config.batch_size)
        evaluation = evaluate_regression(test.masi.cpu().numpy(), test_masi, config.cutoffs, classes,
                                         config.bootstrap, config.seed)
        probs = np.eye(len(classes))[masi_bins(test_masi, config.cutoffs)]  # one-hot of the derived bins
        val_predicted = masi_bins(masi_from_output(val_outputs).numpy(), config.cutoffs)
    else:
        probs = predict_probs(model, test, config.batch_size)
        evaluation = evaluate_predictions(test.labels.cpu().numpy(), probs, classes, config.bootstrap, config.seed)
        val_predicted = val_outputs.argmax(1).numpy()
    collapse = detect_collapse({"validation": val_predicted, "test": probs.argmax(1)},
                               float(history["train_loss"].iloc[-1]), classes, lr=lr, pretrained_source=pretrained)
    if collapse.collapsed:
        emit(LogLine(f"warning: {arch} collapsed: {collapse.describe()}"))
    subgroups = subgroup_metrics(test.labels.cpu().numpy(), probs, test_skin, classes, config.bootstrap, config.seed)
    best = history.loc[history["val_loss"].idxmin()]
    training = {"epochs_run": len(history), "best_epoch": int(best["epoch"]), "best_val_loss": float(best["val_loss"]),
                "seconds": seconds, "device": str(device), "processes": ctx.world_size, "lr": lr,
                "images_per_s": train.total * len(history) / max(seconds, 1e-9)}
    arch_dir = config.out / arch
    save_checkpoint(arch_dir, model, {
        "classes": classes, "cutoffs": list(config.cutoffs), "image_size": config.image_size,
        "mean": list(input_normalisation(model)[0]), "std": list(input_normalisation(model)[1]), "pretrained": pretrained, "seed": config.seed,
        "manifest_hash": data_info["manifest_hash"], "head": config.head, "config": asdict(config),
        "metrics": evaluation["metrics"], "ci95": evaluation["ci95"], "collapse": asdict(collapse),
        "data": data_info, "training": training,
    })
    report = {**evaluation, "data_warnings": data_info["warnings"], "pretrained": pretrained, "collapse": asdict(collapse),
              "subgroups": [{key: value for key, value in asdict(group).items()
                             if not (regression and key.startswith("auc_macro"))} for group in subgroups],
              "training": training}
    (arch_dir / "metrics.json").write_text(json.dumps(jsonable(report), indent=2, allow_nan=False) + "\n")
    history.to_csv(arch_dir / "history.csv", index=False)
    title = get_spec(arch).display_name
    figures.learning_curves(history, arch_dir / "learning_curves.png", title)
    if regression:
        pd.DataFrame({"path": test_paths, "masi": test.masi.cpu().numpy(), "predicted_masi": test_masi,
                      "severity": [classes[i] for i in test.labels.cpu().numpy()],
                      "predicted_severity": [classes[i] for i in probs.argmax(1)]},
                     ).to_csv(arch_dir / "predictions.csv", index=False)
    else:
        figures.roc_curves(test.labels.cpu().numpy(), probs, classes, arch_dir / "roc.png", title)
    figures.confusion_matrix(evaluation["confusion_matrix"], classes, arch_dir / "confusion.png", title)
    emit(ArchDone(arch, evaluation["metrics"], training, pretrained, collapse.collapsed, collapse.describe()))
    distributed.barrier(ctx)
    group_columns = {key: value for key, value in subgroup_columns(subgroups).items()
                     if not (regression and key.startswith("auc_macro["))}  # AUC needs probabilities
    return summary_row(arch, evaluation, {"head": config.head, "pretrained": pretrained, "lr": lr, "collapsed": collapse.collapsed,
                                          "collapse_cause": collapse.describe(), **group_columns,
                                          "epochs_run": training["epochs_run"],
                                          "best_epoch": training["best_epoch"], "train_seconds": seconds})


def train_many(config: TrainConfig, *, on_event: OnEvent | None = None,
               should_stop: ShouldStop | None = None) -> pd.DataFrame:
    """Train every architecture of `config` on one data set; writes RUN/<arch>/ and RUN/summary.*.

    Bad data raises `DatasetError` before any training. A cancelled run (`should_stop()` True) stops
    after the current batch and returns the summary of the architectures already finished. Started
    by torchrun, each process trains its shard data-parallel (`melasma.training.distributed`); rank 0
    alone sends events, polls `should_stop` and writes files, and the other ranks return an empty table.
    """
    device = distributed.local_device(resolve_device(config.device))
    ctx = distributed.setup(device)
    try:
        return _train_all(config, device, ctx, on_event if ctx.is_main and on_event else (lambda event: None),
                          should_stop or (lambda: False))
    finally:
        distributed.teardown(ctx)


def _train_all(config: TrainConfig, device: torch.device, ctx: Context, emit: OnEvent,
               stop: ShouldStop) -> pd.DataFrame:
    table = load_dataset(config.data, seed=config.seed, cutoffs=config.cutoffs,
                         allow_patient_overlap=config.allow_patient_overlap)
    if config.head == "regression":
        missing = int(table["masi"].isna().sum())
        if missing:
            raise DatasetError(f"{config.data}: the regression head trains on the mean MASI, but {missing} of "
                               f"{len(table)} images have no masi value (severity only); give masi for every "
                               "image or train the classification head")
    counts = table["split"].value_counts()
    started = time.perf_counter()
    splits = load_splits(table, config.image_size, device, config.cache_dir, ctx)
    where = f"{ctx.world_size} processes (one shard each, rank 0 on {device})" if ctx.active else str(device)
    emit(LogLine(f"{len(table)} images (train {counts.get('train', 0)}, val {counts.get('val', 0)}, test "
                 f"{counts.get('test', 0)}) ready at {config.image_size} px on {where} in "
                 f"{time.perf_counter() - started:.1f} s"))
    no_patients = patient_id_warning(table)
    if no_patients:
        emit(LogLine(f"WARNING: {no_patients}"))
    data_info: dict[str, Any] = {
        "path": str(config.data), "manifest_hash": manifest_hash(table), "seed": config.seed,
        "cutoffs": list(config.cutoffs), "n": {name: int(counts.get(name, 0)) for name in ("train", "val", "test")},
        "patient_ids": int(table["patient_id"].notna().sum()), "warnings": [no_patients] if no_patients else []}
    test_rows = table["split"] == "test"
    test_skin = skin_groups(table.loc[test_rows, "skin_type"].tolist(), splits["test"].images.cpu().numpy()) \
        if ctx.is_main else []
    test_paths = table.loc[test_rows, "path"].astype(str).tolist()
    if ctx.is_main:
        config.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for arch in config.archs:
        emit(LogLine(f"training {arch}"))
        try:
            row = _train_arch(arch, splits, config, device, data_info, test_skin, test_paths, emit, stop, ctx)
        except TrainingCancelled as cancelled:
            kept = ", ".join(row["arch"] for row in rows) or "none"
            emit(LogLine(f"{cancelled}; finished architectures kept: {kept}"))
            break
        if row is not None:
            rows.append(row)
    return write_summary(rows, config.out, SEVERITIES) if ctx.is_main else pd.DataFrame()
