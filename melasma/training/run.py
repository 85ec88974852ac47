"""The study's protocol end to end: `train_many` trains, tests and writes every architecture of a run.

The data set is decoded once (`RunContext`); each architecture then goes through three steps:
`_train` (build, `fit`, time it), `_test` (`evaluate_split` on the held-out images, the same
evaluation `evaluate` runs on a saved checkpoint, and the collapse check) and `_write` (checkpoint,
metrics.json, history, figures). Under torchrun every rank trains its shard; rank 0 alone tests,
writes and sends events.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
import torch
from torch import nn

from melasma.data.manifest import DatasetError, load_dataset, manifest_hash
from melasma.data.splits import patient_id_warning
from melasma.jsonable import jsonable
from melasma.masi import SEVERITIES
from melasma.models import create, get_spec, save_checkpoint
from melasma.models.head import Head, head_for
from melasma.training import distributed, figures
from melasma.training.collapse import Collapse, detect_collapse
from melasma.training.config import TrainConfig
from melasma.training.device import resolve_device
from melasma.training.distributed import Context
from melasma.training.evaluate import TestResult, TestSet, evaluate_split
from melasma.training.events import ArchDone, LogLine, OnEvent
from melasma.training.loop import (
    ShouldStop,
    Split,
    TrainingCancelled,
    class_weights_for,
    fit,
    gathered_outputs,
    input_normalisation,
    load_splits,
)
from melasma.training.report import summary_row, write_summary


@dataclass(frozen=True)
class DataInfo:
    """The data a run trained on, as model.json's `data` records it."""

    path: str
    manifest_hash: str
    seed: int
    cutoffs: tuple[float, float]
    n: dict[str, int]
    patient_ids: int
    warnings: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "cutoffs": list(self.cutoffs), "warnings": list(self.warnings)}


@dataclass(frozen=True)
class RunContext:
    """What every architecture of a run shares: the config, device and process group, the decoded
    splits, the held-out images (rank 0 only; None elsewhere), the data facts and the callbacks."""

    config: TrainConfig
    device: torch.device
    ctx: Context
    splits: dict[str, Split]
    test: TestSet | None
    data: DataInfo
    emit: OnEvent
    stop: ShouldStop

    @property
    def head(self) -> Head:
        return head_for(self.config.head)


@dataclass(frozen=True)
class TrainingSummary:
    """How one architecture's training went (metrics.json's and model.json's `training`)."""

    epochs_run: int
    best_epoch: int
    best_val_loss: float
    seconds: float
    device: str
    processes: int
    lr: float
    images_per_s: float


@dataclass(frozen=True)
class Trained:
    """A trained network with its provenance, history and validation outputs (every rank's rows)."""

    arch: str
    model: nn.Module
    pretrained: str
    history: pd.DataFrame
    summary: TrainingSummary
    val_outputs: torch.Tensor


def _train(arch: str, run: RunContext) -> Trained:
    """Build `arch` (seeded), train it with `fit` and gather its validation outputs (every rank)."""
    config, device, ctx = run.config, run.device, run.ctx
    torch.manual_seed(config.seed)
    model = create(arch, run.head.outputs(len(SEVERITIES)), config.pretrained).to(device)
    pretrained = str(model.pretrained_source)
    lr = config.learning_rate(pretrained)
    run.emit(LogLine(f"{arch}: weights {pretrained}; Adam lr {lr:g}"))
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    train = run.splits["train"]
    weights = class_weights_for(distributed.gather_rows(train.labels, train.total, ctx, device), len(SEVERITIES)) \
        if config.class_weighted else None
    started = time.perf_counter()
    try:
        history = fit(model, train, run.splits["val"], config, arch=arch, class_weights=weights,
                      on_event=run.emit, should_stop=run.stop, lr=lr, ctx=ctx)
    except torch.OutOfMemoryError as error:
        raise torch.OutOfMemoryError(
            f"out of memory training {arch} on {device} at batch {config.batch_size}, {config.image_size} px: "
            "lower --batch-size or --image-size") from error
    seconds = time.perf_counter() - started
    best = history.loc[history["val_loss"].idxmin()]
    summary = TrainingSummary(len(history), int(best["epoch"]), float(best["val_loss"]), seconds, str(device),
                              ctx.world_size, lr, train.total * len(history) / max(seconds, 1e-9))
    val_outputs = gathered_outputs(model, run.splits["val"], config.batch_size, ctx)
    return Trained(arch, model, pretrained, history, summary, val_outputs)


def _test(trained: Trained, test: TestSet, run: RunContext) -> tuple[TestResult, Collapse]:
    """The held-out evaluation and the collapse verdict (rank 0)."""
    config = run.config
    mean, std = input_normalisation(trained.model)
    result = evaluate_split(trained.model, test, run.head, config.cutoffs, mean=mean, std=std,
                            batch_size=config.batch_size, bootstrap=config.bootstrap, seed=config.seed)
    val_predicted = run.head.bins(trained.val_outputs, config.cutoffs).numpy()
    collapse = detect_collapse({"validation": val_predicted, "test": result.predicted},
                               float(trained.history["train_loss"].iloc[-1]), SEVERITIES,
                               lr=trained.summary.lr, pretrained_source=trained.pretrained)
    return result, collapse


def _write(trained: Trained, result: TestResult, collapse: Collapse, test: TestSet, run: RunContext) -> None:
    """RUN/<arch>/: the checkpoint, metrics.json, history.csv and the figures (rank 0)."""
    config, model, evaluation = run.config, trained.model, result.evaluation
    arch_dir = config.out / trained.arch
    mean, std = input_normalisation(model)
    training = asdict(trained.summary)
    save_checkpoint(arch_dir, model, {
        "classes": list(SEVERITIES), "cutoffs": list(config.cutoffs), "image_size": config.image_size,
        "mean": list(mean), "std": list(std), "pretrained": trained.pretrained, "seed": config.seed,
        "manifest_hash": run.data.manifest_hash, "head": config.head, "config": asdict(config),
        "metrics": evaluation.metrics, "ci95": evaluation.ci95, "collapse": asdict(collapse),
        "data": run.data.to_json(), "training": training,
    })
    report = {**evaluation.to_json(), "data_warnings": list(run.data.warnings), "pretrained": trained.pretrained,
              "collapse": asdict(collapse), "subgroups": result.subgroups_json(), "training": training}
    (arch_dir / "metrics.json").write_text(json.dumps(jsonable(report), indent=2, allow_nan=False) + "\n")
    trained.history.to_csv(arch_dir / "history.csv", index=False)
    title = get_spec(trained.arch).display_name
    figures.learning_curves(trained.history, arch_dir / "learning_curves.png", title)
    classes = list(SEVERITIES)
    if result.predicted_masi is not None:
        pd.DataFrame({"path": list(test.paths), "masi": test.masi, "predicted_masi": result.predicted_masi,
                      "severity": [classes[i] for i in test.labels],
                      "predicted_severity": [classes[i] for i in result.predicted]},
                     ).to_csv(arch_dir / "predictions.csv", index=False)
    else:
        figures.roc_curves(test.labels, result.probabilities, classes, arch_dir / "roc.png", title)
    figures.confusion_matrix(evaluation.confusion_matrix, classes, arch_dir / "confusion.png", title)


def _summary_row(trained: Trained, result: TestResult, collapse: Collapse, run: RunContext) -> dict[str, Any]:
    """The architecture's row of Table 1."""
    summary = trained.summary
    return summary_row(trained.arch, result.evaluation, {
        "head": run.config.head, "pretrained": trained.pretrained, "lr": summary.lr, "collapsed": collapse.collapsed,
        "collapse_cause": collapse.describe(), **result.subgroup_columns(), "epochs_run": summary.epochs_run,
        "best_epoch": summary.best_epoch, "train_seconds": summary.seconds})


def _train_arch(arch: str, run: RunContext) -> dict[str, Any] | None:
    """Train, test and write one architecture; the summary row (None on ranks other than 0)."""
    trained = _train(arch, run)
    if run.test is None:
        distributed.barrier(run.ctx)  # rank 0 tests and writes the results
        return None
    result, collapse = _test(trained, run.test, run)
    if collapse.collapsed:
        run.emit(LogLine(f"warning: {arch} collapsed: {collapse.describe()}"))
    _write(trained, result, collapse, run.test, run)
    run.emit(ArchDone(arch, result.evaluation.metrics, asdict(trained.summary), trained.pretrained,
                      collapse.collapsed, collapse.describe()))
    distributed.barrier(run.ctx)
    return _summary_row(trained, result, collapse, run)


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


def _prepare(config: TrainConfig, device: torch.device, ctx: Context, emit: OnEvent, stop: ShouldStop) -> RunContext:
    """Load and check the data set, decode its splits onto the device and log what is ready."""
    table = load_dataset(config.data, seed=config.seed, cutoffs=config.cutoffs,
                         allow_patient_overlap=config.allow_patient_overlap)
    if head_for(config.head).predicts_masi:
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
    data = DataInfo(str(config.data), manifest_hash(table), config.seed, config.cutoffs,
                    {name: int(counts.get(name, 0)) for name in ("train", "val", "test")},
                    int(table["patient_id"].notna().sum()), (no_patients,) if no_patients else ())
    test = TestSet.from_table(table[table["split"] == "test"], splits["test"]) if ctx.is_main else None
    return RunContext(config, device, ctx, splits, test, data, emit, stop)


def _train_all(config: TrainConfig, device: torch.device, ctx: Context, emit: OnEvent,
               stop: ShouldStop) -> pd.DataFrame:
    run = _prepare(config, device, ctx, emit, stop)
    if ctx.is_main:
        config.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for arch in config.archs:
        emit(LogLine(f"training {arch}"))
        try:
            row = _train_arch(arch, run)
        except TrainingCancelled as cancelled:
            kept = ", ".join(row["arch"] for row in rows) or "none"
            emit(LogLine(f"{cancelled}; finished architectures kept: {kept}"))
            break
        if row is not None:
            rows.append(row)
    return write_summary(rows, config.out, SEVERITIES) if ctx.is_main else pd.DataFrame()
