"""Evaluate a saved checkpoint on a data set's test split (or all of it) with the study's metrics."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from melasma.errors import UserError
from melasma.models import load_checkpoint
from melasma.training.device import resolve_device
from melasma.training.loop import load_splits, predict_masi, predict_probs
from melasma.training.metrics import (
    MIN_SUBGROUP_N,
    evaluate_predictions,
    evaluate_regression,
    masi_bins,
    subgroup_metrics,
)
from melasma.training.report import TABLE_COLUMNS

SPLIT_CHOICES = ("test", "val", "train", "all")


def evaluate_checkpoint(weights: str | Path, data: str | Path, *, split: str = "test", device: str = "auto",
                        batch_size: int = 64, cache_dir: Path | None = None, bootstrap: int = 1000) -> dict[str, Any]:
    """Metrics of the checkpoint in `weights` on `data`, with accuracy and macro AUC per skin-type
    group (`subgroups`). The split is re-derived with the training seed, cut-offs and patient-overlap
    choice, so "test" is the same held-out set the training run reported on. A regression-head
    checkpoint reports MAE, ICC and the derived bins' metrics (`evaluate_regression`), needs a masi
    value for every evaluated image, and lists `masi` and `predicted_masi` per prediction."""
    from melasma.data.manifest import load_dataset, manifest_hash
    from melasma.data.skin_tone import skin_groups

    if split not in SPLIT_CHOICES:
        raise UserError(f"split must be one of {', '.join(SPLIT_CHOICES)}, got {split!r}")
    torch_device = resolve_device(device)
    model, meta = load_checkpoint(weights, torch_device)
    config = meta.get("config") or {}
    seed = int(meta.get("seed", (meta.get("data") or {}).get("seed", config.get("seed", 0))))
    full = load_dataset(data, seed=seed, cutoffs=tuple(meta["cutoffs"]),
                        allow_patient_overlap=bool(config.get("allow_patient_overlap", False)))
    table = full if split == "all" else full[full["split"] == split].reset_index(drop=True)
    loaded = load_splits(table.assign(split="test"), int(meta["image_size"]), torch_device, cache_dir)["test"]
    regression = meta.get("head") == "regression"
    if regression:
        missing = int(table["masi"].isna().sum())
        if missing:
            raise UserError(f"{data}: a regression checkpoint is evaluated on the mean MASI, but {missing} "
                             f"of {len(table)} images have no masi value")
        predicted = predict_masi(model, loaded, batch_size, tuple(meta["mean"]), tuple(meta["std"]))
        cutoffs = tuple(meta["cutoffs"])
        result = evaluate_regression(table["masi"].to_numpy(float), predicted, cutoffs, meta["classes"],
                                     bootstrap, seed)
        probs = np.eye(len(meta["classes"]))[masi_bins(predicted, cutoffs)]  # one-hot of the derived bins
    else:
        probs = predict_probs(model, loaded, batch_size, tuple(meta["mean"]), tuple(meta["std"]))
        result = evaluate_predictions(loaded.labels.cpu().numpy(), probs, meta["classes"], bootstrap, seed)
    groups = skin_groups(table["skin_type"].tolist(), loaded.images.cpu().numpy())
    dropped = ("auc_macro", "auc_macro_ci95") if regression else ()  # AUC needs probabilities
    result["subgroups"] = [{key: value for key, value in asdict(group).items() if key not in dropped}
                           for group in subgroup_metrics(loaded.labels.cpu().numpy(), probs, groups,
                                                         meta["classes"], bootstrap, seed)]
    result["pretrained"] = meta.get("pretrained", "not recorded")
    trained_on = meta.get("manifest_hash", (meta.get("data") or {}).get("manifest_hash"))
    if trained_on and manifest_hash(full) != trained_on:
        result["notes"].append("this data set differs from the one the checkpoint was trained on: "
                     "its test split is not the training run's held-out set")
    return {"weights": str(weights), "arch": meta["arch"], "data": str(data), "split": split,
            **result, "predictions": [
                {"path": path, "label": int(label), "probabilities": [round(float(p), 6) for p in row],
                 **({"masi": float(masi), "predicted_masi": round(float(value), 4)} if regression else {})}
                for path, label, row, masi, value in zip(table["path"], table["label"], probs, table["masi"],
                                                         predicted if regression else probs)]}


def format_table(result: dict[str, Any]) -> str:
    """The metrics with 95% CIs as aligned text lines."""
    names = {**TABLE_COLUMNS, **{f"auc_{c}": f"AUC {c}" for c in result["classes"]}, "auc_macro": "AUC macro",
             "precision_macro": "Precision macro", "recall_macro": "Recall macro"}
    lines = [(f"{result['arch']} on {result['split']} split: {result['n']} images "
              f"({', '.join(f'{k} {v}' for k, v in result['support'].items())})"),
             f"{'metric':<16} {'value':>7}   95% CI"]
    for key, title in names.items():
        if key not in result["metrics"]:
            continue
        value = result["metrics"][key]
        low, high = result["ci95"].get(key, (float("nan"), float("nan")))
        interval = f"   {low:.3f}-{high:.3f}" if not (math.isnan(low) or math.isnan(high)) else ""
        lines.append(f"{title:<16} {value:>7.3f}{interval}" if not math.isnan(value) else f"{title:<16} {'n/a':>7}")
    lines.append("confusion (rows true, columns predicted): " + " ".join(map(str, result["confusion_matrix"])))
    for group in result.get("subgroups", []):
        if group.get("too_few"):
            lines.append(f"skin type {group['group']} (n={group['n']}): too few images (under {MIN_SUBGROUP_N})")
            continue
        auc = (f", macro AUC {group['auc_macro']:.3f} ({group['auc_macro_ci95'][0]:.3f}-"
               f"{group['auc_macro_ci95'][1]:.3f})" if "auc_macro" in group else "")
        lines.append(f"skin type {group['group']} (n={group['n']}): accuracy {group['accuracy']:.3f} "
                     f"({group['accuracy_ci95'][0]:.3f}-{group['accuracy_ci95'][1]:.3f}){auc}")
    lines += [f"note: {note}" for note in result["notes"]]
    return "\n".join(lines)
