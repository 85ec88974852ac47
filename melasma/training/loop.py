"""Training: `fit` one network with early stopping, `train_many` for the study's protocol end to end.

Images are decoded once (`melasma.data.cache`), and each split lives as one uint8 tensor on the
training device; batches are indexed, converted to float and augmented there with per-sample
randomness. On CUDA the step runs under bf16 autocast with channels-last tensors; elsewhere fp32.
"""

from __future__ import annotations

import copy
import json
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager

import numpy as np
import pandas as pd
import torch
from torch import nn

from melasma.masi import SCALE_MAX, SEVERITIES
from melasma.models import create, get_spec, save_checkpoint
from melasma.models.checkpoint import jsonable
from melasma.training import figures
from melasma.training.augment import IMAGENET_MEAN, IMAGENET_STD, Augment, normalize, to_float
from melasma.training.collapse import detect_collapse
from melasma.training.config import TrainConfig
from melasma.training.device import resolve_device
from melasma.training.metrics import evaluate_predictions, evaluate_regression, masi_bins, subgroup_metrics
from melasma.training.report import subgroup_columns, summary_row, write_summary

Event = dict[str, Any]
OnEvent = Callable[[Event], None]
ShouldStop = Callable[[], bool]
#: Seconds between two batch events (every batch is still polled for cancellation).
BATCH_EVENT_EVERY_S = 0.25


class TrainingCancelled(Exception):
    """`should_stop()` returned True during training."""


@dataclass
class Split:
    """One split as tensors on the training device: uint8 images (N, H, W, 3), int64 labels and
    float32 mean MASI (NaN where the manifest gives none)."""

    images: torch.Tensor
    labels: torch.Tensor
    masi: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def load_splits(table: pd.DataFrame, image_size: int, device: torch.device,
                cache_dir: Path | None = None) -> dict[str, Split]:
    """The train/val/test splits of a `load_dataset` table, decoded once and moved to `device`."""
    from melasma.data.cache import load_cached

    images = torch.from_numpy(load_cached(table["path"].tolist(), image_size, cache_dir=cache_dir))
    labels = torch.from_numpy(np.array(table["label"], dtype=np.int64))
    masi = torch.from_numpy(np.array(table["masi"], dtype=np.float32))
    splits = {}
    for name in ("train", "val", "test"):
        rows = torch.as_tensor(np.flatnonzero(table["split"].to_numpy() == name))
        splits[name] = Split(images[rows].to(device), labels[rows].to(device), masi[rows].to(device))
    return splits


def autocast(device: torch.device) -> ContextManager:
    """bf16 autocast on CUDA; fp32 elsewhere (CPUs without bf16 units run it 5-15x slower)."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def prepare_batch(images: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                  augment: Augment | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 (B, H, W, 3) on the device -> normalised float (B, 3, H, W), augmented if asked."""
    x = to_float(images)
    if augment is not None:
        x = augment(x, generator)
    x = normalize(x, mean, std)
    return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module,
               x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward/backward/update; returns the (detached) mean loss and the (detached) outputs."""
    with autocast(x.device):
        logits = model(x)
    loss = criterion(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), logits.detach().float()


class MasiLoss(nn.Module):
    """Smooth L1 between a regression head's single output and MASI / 48 (targets in MASI points)."""

    def forward(self, output: torch.Tensor, masi: torch.Tensor) -> torch.Tensor:
        return nn.functional.smooth_l1_loss(output[:, 0], masi / SCALE_MAX["masi"])


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


@torch.no_grad()
def predict_outputs(model: nn.Module, split: Split, batch_size: int = 64, mean=IMAGENET_MEAN,
                    std=IMAGENET_STD) -> torch.Tensor:
    """The raw outputs (N, outputs) of `model` in eval mode, without augmentation, on the CPU."""
    model.eval()
    outputs = []
    for rows in batch_indices(len(split), batch_size):
        x = prepare_batch(split.images[rows.to(split.images.device)], mean, std)
        with autocast(x.device):
            outputs.append(model(x).float().cpu())
    return torch.cat(outputs)


def predict_probs(model: nn.Module, split: Split, batch_size: int = 64, mean=IMAGENET_MEAN,
                  std=IMAGENET_STD) -> np.ndarray:
    """Softmax probabilities (N, classes) of `model` in eval mode, without augmentation."""
    return predict_outputs(model, split, batch_size, mean, std).softmax(1).numpy()


def predict_masi(model: nn.Module, split: Split, batch_size: int = 64, mean=IMAGENET_MEAN,
                 std=IMAGENET_STD) -> np.ndarray:
    """A regression head's predicted MASI (N,), clipped to 0-48, in eval mode without augmentation."""
    return masi_from_output(predict_outputs(model, split, batch_size, mean, std)).numpy()


def _evaluate_loss(model: nn.Module, split: Split, criterion: nn.Module, batch_size: int,
                   config: TrainConfig | None = None) -> tuple[float, float]:
    """Validation loss and (bin) accuracy; a regression head when `config.head` says so."""
    outputs = predict_outputs(model, split, batch_size).to(split.labels.device)
    if config is not None and config.head == "regression":
        predicted = bins_from_masi(masi_from_output(outputs), config.cutoffs)
        return float(criterion(outputs, split.masi)), float((predicted == split.labels).float().mean())
    probs = outputs.softmax(1)
    loss = criterion(probs.clamp_min(1e-12).log(), split.labels)  # cross-entropy from probabilities
    return float(loss), float((probs.argmax(1) == split.labels).float().mean())


def fit(model: nn.Module, train: Split, val: Split, config: TrainConfig, *, arch: str,
        class_weights: torch.Tensor | None = None, on_event: OnEvent | None = None,
        should_stop: ShouldStop | None = None, lr: float | None = None) -> pd.DataFrame:
    """Train `model` (already on the device) with Adam (`lr`, default `config.lr`) and early
    stopping on validation loss.

    The best-validation weights are restored at the end. Returns the history (one row per epoch).
    Raises TrainingCancelled when `should_stop()` turns True (polled before every batch).
    """
    emit, stop = on_event or (lambda event: None), should_stop or (lambda: False)
    device = train.labels.device
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr if lr is None else lr,
                                 weight_decay=config.weight_decay)
    regression = config.head == "regression"
    criterion = MasiLoss() if regression else nn.CrossEntropyLoss(weight=class_weights)
    val_criterion = criterion if regression else nn.NLLLoss(weight=class_weights)
    targets = train.masi if regression else train.labels
    order_rng = torch.Generator().manual_seed(config.seed)
    augment_rng = torch.Generator(device=device).manual_seed(config.seed)
    augment = Augment()
    best_loss, best_state, best_epoch, waited = float("inf"), None, 0, 0
    rows = []
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        chunks = batch_indices(len(train), config.batch_size, order_rng)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        last_event = 0.0
        for index, rows_cpu in enumerate(chunks, 1):
            if stop():
                raise TrainingCancelled(f"cancelled during {arch} epoch {epoch}")
            rows_dev = rows_cpu.to(device, non_blocking=True)
            x = prepare_batch(train.images[rows_dev], augment=augment, generator=augment_rng)
            loss, outputs = train_step(model, optimizer, criterion, x, targets[rows_dev])
            loss_sum += loss * len(rows_cpu)
            predicted = bins_from_masi(masi_from_output(outputs), config.cutoffs) if regression else outputs.argmax(1)
            correct += (predicted == train.labels[rows_dev]).sum()
            now = time.perf_counter()
            if now - last_event >= BATCH_EVENT_EVERY_S or index == len(chunks):
                last_event = now
                emit({"type": "batch", "arch": arch, "epoch": epoch, "batch": index,
                      "n_batches": len(chunks), "loss": float(loss)})
        train_loss, train_acc = float(loss_sum) / len(train), float(correct) / len(train)
        val_loss, val_acc = _evaluate_loss(model, val, val_criterion, config.batch_size, config)
        improved = val_loss < best_loss
        if improved:
            best_loss, best_epoch, waited = val_loss, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            waited += 1
        row = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
               "val_acc": val_acc, "lr": optimizer.param_groups[0]["lr"],
               "seconds": time.perf_counter() - started}
        rows.append(row)
        emit({"type": "epoch", "arch": arch, "epochs": config.epochs, **row, "best": improved})
        if waited >= config.patience:
            emit({"type": "log", "message": f"{arch}: early stop after epoch {epoch}, validation loss "
                                            f"not improved for {config.patience} epochs (best epoch {best_epoch})"})
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return pd.DataFrame(rows)


def class_weights_for(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Balanced weights n / (classes x count) as scikit-learn's "balanced"; absent classes get 0."""
    counts = torch.bincount(labels, minlength=n_classes).float()
    return torch.where(counts > 0, len(labels) / (n_classes * counts.clamp_min(1)), torch.zeros_like(counts))


def _train_arch(arch: str, splits: dict[str, Split], config: TrainConfig, device: torch.device,
                data_info: dict[str, Any], test_skin: list[str | None], test_paths: list[str], emit: OnEvent,
                stop: ShouldStop) -> dict[str, Any]:
    classes = list(SEVERITIES)
    regression = config.head == "regression"
    torch.manual_seed(config.seed)
    model = create(arch, 1 if regression else len(classes), config.pretrained).to(device)
    pretrained = model.pretrained_source
    lr = config.learning_rate(pretrained)
    emit({"type": "log", "message": f"{arch}: weights {pretrained}; Adam lr {lr:g}"})
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    weights = class_weights_for(splits["train"].labels, len(classes)) if config.class_weighted else None
    started = time.perf_counter()
    try:
        history = fit(model, splits["train"], splits["val"], config, arch=arch, class_weights=weights,
                      on_event=emit, should_stop=stop, lr=lr)
    except torch.OutOfMemoryError as error:
        raise torch.OutOfMemoryError(
            f"out of memory training {arch} on {device} at batch {config.batch_size}, {config.image_size} px: "
            "lower --batch-size or --image-size") from error
    seconds = time.perf_counter() - started
    test = splits["test"]
    if regression:
        test_masi = predict_masi(model, test, config.batch_size)
        evaluation = evaluate_regression(test.masi.cpu().numpy(), test_masi, config.cutoffs, classes,
                                         config.bootstrap, config.seed)
        probs = np.eye(len(classes))[masi_bins(test_masi, config.cutoffs)]  # one-hot of the derived bins
        val_predicted = masi_bins(predict_masi(model, splits["val"], config.batch_size), config.cutoffs)
    else:
        probs = predict_probs(model, test, config.batch_size)
        evaluation = evaluate_predictions(test.labels.cpu().numpy(), probs, classes, config.bootstrap, config.seed)
        val_predicted = predict_probs(model, splits["val"], config.batch_size).argmax(1)
    collapse = detect_collapse({"validation": val_predicted, "test": probs.argmax(1)},
                               float(history["train_loss"].iloc[-1]), classes, lr=lr, pretrained_source=pretrained)
    if collapse.collapsed:
        emit({"type": "log", "message": f"warning: {arch} collapsed: {collapse.describe()}"})
    subgroups = subgroup_metrics(test.labels.cpu().numpy(), probs, test_skin, classes, config.bootstrap, config.seed)
    best = history.loc[history["val_loss"].idxmin()]
    training = {"epochs_run": len(history), "best_epoch": int(best["epoch"]), "best_val_loss": float(best["val_loss"]),
                "seconds": seconds, "device": str(device), "lr": lr,
                "images_per_s": len(splits["train"]) * len(history) / max(seconds, 1e-9)}
    arch_dir = config.out / arch
    save_checkpoint(arch_dir, model, {
        "classes": classes, "cutoffs": list(config.cutoffs), "image_size": config.image_size,
        "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "pretrained": pretrained, "seed": config.seed,
        "manifest_hash": data_info["manifest_hash"], "head": config.head, "config": asdict(config),
        "metrics": evaluation["metrics"], "ci95": evaluation["ci95"], "collapse": asdict(collapse),
        "data": data_info, "training": training,
    })
    report = {**evaluation, "pretrained": pretrained, "collapse": asdict(collapse),
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
    emit({"type": "arch_done", "arch": arch, "metrics": evaluation["metrics"], "training": training,
          "pretrained": pretrained, "collapsed": collapse.collapsed, "collapse_cause": collapse.describe()})
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
    after the current batch and returns the summary of the architectures already finished.
    """
    from melasma.data.manifest import DatasetError, load_dataset, manifest_hash
    from melasma.data.skin_tone import skin_groups

    emit, stop = on_event or (lambda event: None), should_stop or (lambda: False)
    device = resolve_device(config.device)
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
    splits = load_splits(table, config.image_size, device, config.cache_dir)
    emit({"type": "log", "message": f"{len(table)} images (train {counts.get('train', 0)}, val "
                                    f"{counts.get('val', 0)}, test {counts.get('test', 0)}) ready at "
                                    f"{config.image_size} px on {device} in {time.perf_counter() - started:.1f} s"})
    data_info = {"path": str(config.data), "manifest_hash": manifest_hash(table), "seed": config.seed,
                 "cutoffs": list(config.cutoffs),
                 "n": {name: int(counts.get(name, 0)) for name in ("train", "val", "test")}}
    test_skin = skin_groups(table.loc[table["split"] == "test", "skin_type"].tolist(),
                            splits["test"].images.cpu().numpy())
    test_paths = table.loc[table["split"] == "test", "path"].astype(str).tolist()
    config.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for arch in config.archs:
        emit({"type": "log", "message": f"training {arch}"})
        try:
            rows.append(_train_arch(arch, splits, config, device, data_info, test_skin, test_paths, emit, stop))
        except TrainingCancelled as cancelled:
            kept = ", ".join(row["arch"] for row in rows) or "none"
            emit({"type": "log", "message": f"{cancelled}; finished architectures kept: {kept}"})
            break
    return write_summary(rows, config.out, SEVERITIES)
