"""The one evaluation of a trained network on held-out images, used after training and by `evaluate`.

`evaluate_split` runs a model over a `TestSet` and reads its outputs through the head (softmax
probabilities, or a regression head's MASI and derived bins one-hot): the study's metrics with 95%
bootstrap CIs (`evaluate_predictions`, or `evaluate_regression` against the manifest's MASI) and
accuracy and macro AUC per skin-type group. `evaluate_checkpoint` does it for a saved checkpoint on
a data set's test split (or all of it), re-derived with the training seed and cut-offs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from melasma.data.manifest import load_dataset, manifest_hash
from melasma.data.skin_tone import skin_groups
from melasma.errors import UserError
from melasma.masi import SEVERITIES
from melasma.models import load_checkpoint
from melasma.models.head import Head
from melasma.training.device import resolve_device
from melasma.training.loop import Split, load_splits, predict_outputs
from melasma.training.metrics import (
    MIN_SUBGROUP_N,
    Evaluation,
    SubgroupResult,
    evaluate_predictions,
    evaluate_regression,
    subgroup_metrics,
)
from melasma.training.report import TABLE_COLUMNS, subgroup_columns

SPLIT_CHOICES = ("test", "val", "train", "all")


@dataclass(frozen=True)
class TestSet:
    """Held-out images in the manifest's order: their tensors (`split`), the manifest's MASI
    (float64, NaN where none), skin-type groups and paths."""

    split: Split
    masi: np.ndarray
    groups: tuple[str, ...]
    paths: tuple[str, ...]

    @classmethod
    def from_table(cls, table: pd.DataFrame, split: Split) -> TestSet:
        """The rows of `table` (a `load_dataset` table) whose images `split` holds, in order."""

        groups = skin_groups(table["skin_type"].tolist(), split.images.cpu().numpy())
        return cls(split, table["masi"].to_numpy(float), tuple(groups), tuple(table["path"].astype(str)))

    @property
    def labels(self) -> np.ndarray:
        return self.split.labels.cpu().numpy()


@dataclass(frozen=True)
class TestResult:
    """What `evaluate_split` found: the metrics, the per-group results, the class probabilities
    (N, classes: softmax, or the derived bin one-hot) and a regression head's MASI (else None)."""

    evaluation: Evaluation
    subgroups: tuple[SubgroupResult, ...]
    probabilities: np.ndarray
    predicted_masi: np.ndarray | None

    @property
    def predicted(self) -> np.ndarray:
        """The predicted class index of each image."""
        return self.probabilities.argmax(1)

    def subgroups_json(self) -> list[dict[str, Any]]:
        """The per-group results as metrics.json lists them (no AUC for a regression head)."""
        dropped = ("auc_macro", "auc_macro_ci95") if self.predicted_masi is not None else ()
        return [{key: value for key, value in asdict(group).items() if key not in dropped}
                for group in self.subgroups]

    def subgroup_columns(self) -> dict[str, Any]:
        """The per-group summary columns (`report.subgroup_columns`; no AUC for a regression head)."""
        return {key: value for key, value in subgroup_columns(self.subgroups).items()
                if not (self.predicted_masi is not None and key.startswith("auc_macro["))}


def evaluate_split(model: nn.Module, test: TestSet, head: Head, cutoffs: tuple[float, float], *,
                   mean: Sequence[float], std: Sequence[float], batch_size: int, bootstrap: int,
                   seed: int) -> TestResult:
    """Metrics of `model` (eval mode, no augmentation, inputs normalised with `mean` / `std`) on
    `test`, read through `head` with `cutoffs`; a regression head needs the MASI of every image."""
    outputs = predict_outputs(model, test.split, batch_size, tuple(mean), tuple(std))
    probs = head.probabilities(outputs, cutoffs, len(SEVERITIES)).numpy()
    masi = head.masi(outputs)
    predicted = None if masi is None else masi.numpy()
    if predicted is None:
        evaluation = evaluate_predictions(test.labels, probs, SEVERITIES, bootstrap, seed)
    else:
        evaluation = evaluate_regression(test.masi, predicted, cutoffs, SEVERITIES, bootstrap, seed)
    subgroups = subgroup_metrics(test.labels, probs, test.groups, SEVERITIES, bootstrap, seed)
    return TestResult(evaluation, tuple(subgroups), probs, predicted)


@dataclass(frozen=True)
class CheckpointEvaluation:
    """`evaluate_checkpoint`'s answer: which checkpoint on which data and split, the result and
    the images it ran on; `to_json` is what `evaluate --out` writes."""

    weights: str
    arch: str
    data: str
    split: str
    pretrained: str
    test: TestSet
    result: TestResult

    @property
    def evaluation(self) -> Evaluation:
        return self.result.evaluation

    def to_json(self) -> dict[str, Any]:
        """The metrics, per-group results and one row per image (`masi` and `predicted_masi` for a
        regression head)."""
        regression = self.result.predicted_masi is not None
        predicted = self.result.predicted_masi if regression else self.result.probabilities
        return {"weights": self.weights, "arch": self.arch, "data": self.data, "split": self.split,
                **self.evaluation.to_json(), "subgroups": self.result.subgroups_json(),
                "pretrained": self.pretrained, "predictions": [
                    {"path": path, "label": int(label), "probabilities": [round(float(p), 6) for p in row],
                     **({"masi": float(masi), "predicted_masi": round(float(value), 4)} if regression else {})}
                    for path, label, row, masi, value in zip(self.test.paths, self.test.labels,
                                                             self.result.probabilities, self.test.masi,
                                                             predicted)]}  # type: ignore[arg-type]


def evaluate_checkpoint(weights: str | Path, data: str | Path, *, split: str = "test", device: str = "auto",
                        batch_size: int = 64, cache_dir: Path | None = None,
                        bootstrap: int = 1000) -> CheckpointEvaluation:
    """Metrics of the checkpoint in `weights` on `data`, with accuracy and macro AUC per skin-type
    group. The split is re-derived with the training seed, cut-offs and patient-overlap choice, so
    "test" is the same held-out set the training run reported on. A regression-head checkpoint
    reports MAE, ICC and the derived bins' metrics (`evaluate_regression`) and needs a masi value
    for every evaluated image."""
    if split not in SPLIT_CHOICES:
        raise UserError(f"split must be one of {', '.join(SPLIT_CHOICES)}, got {split!r}")
    torch_device = resolve_device(device)
    model, meta = load_checkpoint(weights, torch_device)
    full = load_dataset(data, seed=meta.seed, cutoffs=meta.cutoffs, allow_patient_overlap=meta.allow_patient_overlap)
    table = full if split == "all" else full[full["split"] == split].reset_index(drop=True)
    if meta.head.predicts_masi:
        missing = int(table["masi"].isna().sum())
        if missing:
            raise UserError(f"{data}: a regression checkpoint is evaluated on the mean MASI, but {missing} "
                             f"of {len(table)} images have no masi value")
    loaded = load_splits(table.assign(split="test"), meta.image_size, torch_device, cache_dir)["test"]
    test = TestSet.from_table(table, loaded)
    result = evaluate_split(model, test, meta.head, meta.cutoffs, mean=meta.mean, std=meta.std,
                            batch_size=batch_size, bootstrap=bootstrap, seed=meta.seed)
    if meta.manifest_hash and manifest_hash(full) != meta.manifest_hash:
        result = replace(result, evaluation=result.evaluation.with_note(
            "this data set differs from the one the checkpoint was trained on: its test split is not the "
            "training run's held-out set"))
    return CheckpointEvaluation(str(weights), meta.arch, str(data), split, meta.pretrained, test, result)


def format_table(checked: CheckpointEvaluation) -> str:
    """The metrics with 95% CIs as aligned text lines."""
    result = checked.evaluation
    names = {**TABLE_COLUMNS, **{f"auc_{c}": f"AUC {c}" for c in result.classes}, "auc_macro": "AUC macro",
             "precision_macro": "Precision macro", "recall_macro": "Recall macro"}
    lines = [(f"{checked.arch} on {checked.split} split: {result.n} images "
              f"({', '.join(f'{k} {v}' for k, v in result.support.items())})"),
             f"{'metric':<16} {'value':>7}   95% CI"]
    for key, title in names.items():
        if key not in result.metrics:
            continue
        value = result.metrics[key]
        low, high = result.ci95.get(key, (float("nan"), float("nan")))
        interval = f"   {low:.3f}-{high:.3f}" if not (math.isnan(low) or math.isnan(high)) else ""
        lines.append(f"{title:<16} {value:>7.3f}{interval}" if not math.isnan(value) else f"{title:<16} {'n/a':>7}")
    lines.append("confusion (rows true, columns predicted): " + " ".join(map(str, result.confusion_matrix)))
    regression = checked.result.predicted_masi is not None  # no AUC without probabilities
    for group in checked.result.subgroups:
        if group.too_few:
            lines.append(f"skin type {group.group} (n={group.n}): too few images (under {MIN_SUBGROUP_N})")
            continue
        auc = "" if regression else (f", macro AUC {group.auc_macro:.3f} ({group.auc_macro_ci95[0]:.3f}-"
                                     f"{group.auc_macro_ci95[1]:.3f})")
        lines.append(f"skin type {group.group} (n={group.n}): accuracy {group.accuracy:.3f} "
                     f"({group.accuracy_ci95[0]:.3f}-{group.accuracy_ci95[1]:.3f}){auc}")
    lines += [f"note: {note}" for note in result.notes]
    return "\n".join(lines)
