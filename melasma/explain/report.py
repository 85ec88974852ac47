"""The relevance report: per model and severity, the study's mean relevance, localisation, faithfulness.

For every checkpoint and image: the prediction; per method the mean of the map (for gradient x
input this is the study's Table 2 number), and where a lesion mask exists (synthetic `masks/`, or
COCO polygons as in roboflow-melasma) relevance mass inside the mask and the pointing game; the
deletion AUC. Data is a labelled set (labels.csv or class folders: severity = the label) or any
folder of photos (severity = the predicted class). Writes per_image.csv, summary.csv,
study_table2.csv and bar plots (PNG) into the output folder.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from melasma.explain import METHODS, explain, inference_state
from melasma.explain.faithfulness import (
    deletion_auc,
    mean_relevance,
    pointing_game,
    relevance_mass_accuracy,
    resize_mask,
)

SPLIT_CHOICES = ("all", "train", "val", "test")
SUMMARY_METRICS = ("mean_relevance", "mass_in_mask", "mask_share", "pointing_game", "deletion_auc")


class ReportError(ValueError):
    """Bad report input: no images, unknown method or split."""


@dataclass
class LoadedModel:
    """A checkpoint ready for the report: its label, model and input preprocessing."""

    label: str
    model: nn.Module
    arch: str
    classes: tuple[str, ...]
    size: int
    mean: torch.Tensor
    std: torch.Tensor

    def tensor(self, path: str) -> torch.Tensor:
        """The photo squashed to the model's square input and normalised: (1, 3, S, S)."""
        from melasma.data.images import load_array

        pixels = torch.from_numpy(load_array(path, self.size)).permute(2, 0, 1).float().div(255.0)
        device = next(self.model.parameters()).device
        return ((pixels[None] - self.mean) / self.std).to(device)


def load_models(weights: Sequence[str | os.PathLike], device: str = "cpu") -> list[LoadedModel]:
    """Each checkpoint directory loaded once; labels are folder names (RUN/ARCH when they clash)."""
    from melasma.models import load_checkpoint

    directories = [Path(w) for w in weights]
    if not directories:
        raise ReportError("give at least one checkpoint directory with --weights")
    names = [d.resolve().name for d in directories]
    loaded = []
    for directory, name in zip(directories, names):
        model, meta = load_checkpoint(directory, device=device)
        label = name if names.count(name) == 1 else f"{directory.resolve().parent.name}/{name}"
        loaded.append(LoadedModel(
            label, model, str(meta["arch"]), tuple(meta["classes"]), int(meta["image_size"]),
            torch.tensor(meta["mean"], dtype=torch.float32).view(1, 3, 1, 1),
            torch.tensor(meta["std"], dtype=torch.float32).view(1, 3, 1, 1),
        ))
    return loaded


def _is_labelled(folder: Path) -> bool:
    from melasma.data.manifest import DEFAULT_CSV_NAMES
    from melasma.masi import SEVERITIES

    return folder.is_file() or any((folder / n).is_file() for n in DEFAULT_CSV_NAMES) or any(
        (folder / s).is_dir() for s in SEVERITIES
    )


def list_images(data: str | os.PathLike, split: str = "all", max_images: int | None = None) -> pd.DataFrame:
    """Columns `path` and `true_severity` (None when unlabelled); at most `max_images`, classes
    taken in turn so a small sample still covers every severity."""
    from melasma.data.manifest import IMAGE_EXTENSIONS, load_dataset

    if split not in SPLIT_CHOICES:
        raise ReportError(f"split must be one of {', '.join(SPLIT_CHOICES)}, got {split!r}")
    source = Path(data)
    if not source.exists():
        raise ReportError(f"{source}: no such file or folder")
    if _is_labelled(source):
        table = load_dataset(source)
        if split != "all":
            table = table[table["split"] == split]
        table = table.rename(columns={"severity": "true_severity"})[["path", "true_severity"]]
    else:
        paths = sorted(
            str(p.resolve()) for p in source.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        table = pd.DataFrame({"path": paths, "true_severity": None})
    if table.empty:
        raise ReportError(f"{source}: no images found")
    turn = table.groupby(table["true_severity"].fillna(""), sort=False).cumcount()
    table = table.assign(_turn=turn).sort_values(["_turn", "path"], kind="stable").drop(columns="_turn")
    if max_images is not None:
        if max_images < 1:
            raise ReportError(f"max images must be at least 1, got {max_images}")
        table = table.head(max_images)
    return table.reset_index(drop=True)


def _lesion_mask(path: str, size: int) -> np.ndarray | None:
    from melasma.data.masks import mask_for_image

    mask = mask_for_image(path)
    if mask is None:
        return None
    mask = resize_mask(mask, (size, size))
    return mask if mask.any() else None


def image_rows(
    loaded: LoadedModel, path: str, true_severity: str | None, methods: Sequence[str],
    deletion_steps: int = 16, baseline: str = "mean",
) -> list[dict]:
    """One row per method for one image and one model."""
    x = loaded.tensor(path)
    with inference_state(loaded.model), torch.no_grad():
        probabilities = torch.softmax(loaded.model(x).float(), dim=1)[0].cpu()
    index = int(probabilities.argmax())
    predicted = loaded.classes[index]
    mask = _lesion_mask(path, loaded.size)
    mean = loaded.mean.flatten().tolist()
    std = loaded.std.flatten().tolist()
    rows = []
    for method in methods:
        relevance = explain(loaded.model, x, method, target=index, mean=mean, std=std)
        with inference_state(loaded.model):
            auc = deletion_auc(loaded.model, x, relevance.to(x.device), index,
                               steps=deletion_steps, baseline=baseline)
        rows.append({
            "model": loaded.label, "arch": loaded.arch, "image": path,
            "true_severity": true_severity, "predicted": predicted,
            "severity": true_severity or predicted, "probability": float(probabilities[index]),
            "method": method, "mean_relevance": mean_relevance(relevance),
            "mass_in_mask": relevance_mass_accuracy(relevance, mask) if mask is not None else math.nan,
            "mask_share": float(mask.mean()) if mask is not None else math.nan,
            "pointing_game": float(pointing_game(relevance, mask)) if mask is not None else math.nan,
            "deletion_auc": auc,
        })
    return rows


def summarise(per_image: pd.DataFrame) -> pd.DataFrame:
    """Means per model, severity and method, with the image count and how many had a mask."""
    groups = per_image.groupby(["model", "severity", "method"], sort=False)
    summary = groups[list(SUMMARY_METRICS)].mean()
    summary.insert(0, "n_images", groups.size())
    summary.insert(1, "n_masked", groups["mass_in_mask"].count())
    return summary.reset_index()


def study_table(per_image: pd.DataFrame) -> pd.DataFrame:
    """The study's Table 2: mean gradient x input per model (rows) and severity (columns)."""
    gxi = per_image[per_image["method"] == "gxi"]
    return gxi.pivot_table(index="model", columns="severity", values="mean_relevance", aggfunc="mean")


def _bar_plot(table: pd.DataFrame, title: str, ylabel: str, path: Path, reference: pd.Series | None = None) -> Path:
    figure = Figure(figsize=(max(5.0, 1.4 * len(table) + 2.5), 3.8), layout="constrained")
    axis = figure.subplots()
    table.plot.bar(ax=axis, rot=0, width=0.8)
    if reference is not None:
        for position, value in enumerate(reference.reindex(table.index)):
            if not math.isnan(value):
                axis.hlines(value, position - 0.4, position + 0.4, colors="black", linestyles="--",
                            label="mask share (chance)" if position == 0 else None)
    axis.set_title(title)
    axis.set_ylabel(ylabel)
    axis.set_xlabel("")
    axis.legend(fontsize="small")
    figure.savefig(path, dpi=120)
    return path


def write_plots(per_image: pd.DataFrame, out: Path) -> list[Path]:
    """Bar plots of the study's mean relevance, localisation (where masks exist) and deletion AUC."""
    written = []
    table2 = study_table(per_image)
    if not table2.empty:
        written.append(_bar_plot(table2, "Mean gradient x input (the study's Table 2)",
                                 "mean relevance", out / "mean_relevance.png"))
    by_method = per_image.groupby(["model", "method"])
    masked = by_method["mass_in_mask"].mean().unstack("method")
    if masked.notna().any().any():
        chance = per_image.groupby("model")["mask_share"].mean()
        written.append(_bar_plot(masked, "Positive relevance inside the lesion mask",
                                 "relevance mass accuracy", out / "mass_in_mask.png", reference=chance))
        written.append(_bar_plot(by_method["pointing_game"].mean().unstack("method"),
                                 "Pointing game (most relevant pixel on a lesion)", "hit rate",
                                 out / "pointing_game.png"))
    written.append(_bar_plot(by_method["deletion_auc"].mean().unstack("method"),
                             "Deletion AUC (lower = more faithful)", "normalised AUC",
                             out / "deletion_auc.png"))
    return written


def explain_report(
    weights: Sequence[str | os.PathLike],
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    methods: Sequence[str] = tuple(METHODS),
    max_images: int | None = None,
    split: str = "all",
    device: str = "cpu",
    deletion_steps: int = 16,
    baseline: str = "mean",
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Run the report (see module doc); returns the summary table. `progress(done, total)` per image."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ReportError(f"methods must be among {', '.join(METHODS)}, got {', '.join(methods) or 'none'}")
    models = load_models(weights, device)
    images = list_images(data, split, max_images)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    total = len(models) * len(images)
    for loaded in models:
        for image in images.itertuples(index=False):
            rows.extend(image_rows(loaded, image.path, image.true_severity, methods, deletion_steps, baseline))
            if progress is not None:
                progress(len(rows) // len(methods), total)
    per_image = pd.DataFrame(rows)
    per_image.to_csv(out_dir / "per_image.csv", index=False)
    summary = summarise(per_image)
    summary.to_csv(out_dir / "summary.csv", index=False)
    study_table(per_image).to_csv(out_dir / "study_table2.csv")
    write_plots(per_image, out_dir)
    return summary
