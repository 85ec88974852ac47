"""The relevance report: per model and severity, the study's mean relevance, localisation, faithfulness.

For every checkpoint and image: the prediction; per method the mean of the map (for gradient x
input this is the study's Table 2 number; for LRP it is left empty, since EpsilonPlusFlat conserves
relevance and its mean is 1 / (H * W) for every image), the share of the map's absolute relevance
that is positive, and where a lesion mask exists (synthetic `masks/`, or COCO polygons as in
roboflow-melasma) relevance mass inside the mask and the pointing game; the deletion AUC. Data is a
labelled set (labels.csv or class folders: severity = the label; the split is rebuilt with the
checkpoint's seed and cut-offs, and refused when the manifest differs from the one it trained on)
or any folder of photos (severity = the predicted class). Images run in batches through one
`Explainer` per checkpoint, on the GPU when there is one. Writes per_image.csv, summary.csv,
study_table2.csv and bar plots (PNG) into the output folder.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from melasma.data.manifest import DEFAULT_CSV_NAMES, IMAGE_EXTENSIONS, load_dataset, manifest_hash
from melasma.data.masks import mask_for_image
from melasma.errors import UserError
from melasma.explain import METHODS, TABLE, Explainer
from melasma.explain.faithfulness import (
    deletion_aucs,
    mean_relevance,
    pointing_game,
    relevance_mass_accuracy,
    resize_mask,
)
from melasma.inference import Predictor
from melasma.masi import SEVERITIES
from melasma.models.checkpoint import CheckpointMeta
from melasma.training.device import resolve_device

SPLIT_CHOICES = ("all", "train", "val", "test")
SUMMARY_METRICS = ("mean_relevance", "positive_share", "mass_in_mask", "mask_share", "pointing_game", "deletion_auc")


class ReportError(UserError):
    """Bad report input: no images, unknown method or split, a different manifest."""


@dataclass
class LoadedModel:
    """A checkpoint ready for the report: its label and its `Predictor` (model, the Predict tab's
    preprocessing, and the Explainer the report runs through)."""

    label: str
    predictor: Predictor

    @property
    def model(self) -> nn.Module:
        return self.predictor.model

    @property
    def meta(self) -> CheckpointMeta:
        return self.predictor.meta

    @property
    def arch(self) -> str:
        return self.predictor.arch

    @property
    def classes(self) -> tuple[str, ...]:
        return self.predictor.classes

    @property
    def size(self) -> int:
        return self.predictor.image_size

    @property
    def mean(self) -> torch.Tensor:
        """The input normalisation's mean, (1, 3, 1, 1)."""
        return torch.tensor(self.meta.mean, dtype=torch.float32).view(1, 3, 1, 1)

    @property
    def std(self) -> torch.Tensor:
        """The input normalisation's standard deviation, (1, 3, 1, 1)."""
        return torch.tensor(self.meta.std, dtype=torch.float32).view(1, 3, 1, 1)

    def tensor(self, path: str) -> torch.Tensor:
        """The photo squashed to the model's square input and normalised: (1, 3, S, S)."""
        return self.batch([path])

    def batch(self, paths: Sequence[str]) -> torch.Tensor:
        """Photos preprocessed exactly as the Predict tab does: (N, 3, S, S) on the model's device."""
        return self.predictor.batch(paths)

    @property
    def seed(self) -> int:
        """The split seed the checkpoint was trained with (0 when not recorded)."""
        return self.meta.seed

    @property
    def manifest_hash(self) -> str | None:
        """The hash of the manifest the checkpoint was trained on, when recorded."""
        return self.meta.manifest_hash


def load_models(weights: Sequence[str | os.PathLike], device: str = "cpu") -> list[LoadedModel]:
    """Each checkpoint directory loaded once; labels are folder names (RUN/ARCH when they clash)."""
    directories = [Path(w) for w in weights]
    if not directories:
        raise ReportError("give at least one checkpoint directory with --weights")
    names = [d.resolve().name for d in directories]
    loaded = []
    for directory, name in zip(directories, names):
        label = name if names.count(name) == 1 else f"{directory.resolve().parent.name}/{name}"
        loaded.append(LoadedModel(label, Predictor.from_checkpoint(directory, device=device)))
    return loaded


def _is_labelled(folder: Path) -> bool:
    return folder.is_file() or any((folder / n).is_file() for n in DEFAULT_CSV_NAMES) or any(
        (folder / s).is_dir() for s in SEVERITIES
    )


def list_images(
    data: str | os.PathLike,
    split: str | None = "val",
    max_images: int | None = None,
    *,
    seed: int = 0,
    cutoffs: tuple[float, float] | None = None,
    trained_on: str | None = None,
    force: bool = False,
    note: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Columns `path` and `true_severity` (None when unlabelled); at most `max_images`, classes
    taken in turn so a small sample still covers every severity.

    Labelled data is split with `seed` and `cutoffs` (the checkpoint's). `split` None means the
    study's `val` split of the set the checkpoint trained on, and every image of another set (its
    split would not be that run's; `note` says so). A split asked for by name on another set (the
    manifest hash differs from `trained_on`) is refused (ReportError) unless `force`.
    """
    if split is not None and split not in SPLIT_CHOICES:
        raise ReportError(f"split must be one of {', '.join(SPLIT_CHOICES)}, got {split!r}")
    source = Path(data)
    if not source.exists():
        raise ReportError(f"{source}: no such file or folder")
    if _is_labelled(source):
        table = load_dataset(source, seed=seed, cutoffs=cutoffs)
        other = bool(trained_on) and manifest_hash(table) != trained_on
        if other and split is None:
            split = "all"
            if note is not None:
                note(f"{source} is not the data set this checkpoint was trained on: reporting on all its images "
                     "(--split val reads the training run's validation split only on that set)")
        split = split or "val"
        if other and not force and split != "all":
            raise ReportError(
                f"{source} is not the data set this checkpoint was trained on (manifest hash differs), so its "
                f"{split} split is not the training run's; pass --force to use it anyway"
            )
        if split != "all":
            table = table[table["split"] == split]
        table = table.rename(columns={"severity": "true_severity"})[["path", "true_severity"]]
    else:
        split = split or "all"
        paths = sorted(
            str(p.resolve()) for p in source.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        table = pd.DataFrame({"path": paths, "true_severity": None})
    if table.empty:
        raise ReportError(f"{source}: no images found" + (f" in the {split} split" if split != "all" else ""))
    turn = table.groupby(table["true_severity"].fillna(""), sort=False).cumcount()
    table = table.assign(_turn=turn).sort_values(["_turn", "path"], kind="stable").drop(columns="_turn")
    if max_images is not None:
        if max_images < 1:
            raise ReportError(f"max images must be at least 1, got {max_images}")
        table = table.head(max_images)
    return table.reset_index(drop=True)


def _lesion_mask(path: str, size: int) -> np.ndarray | None:
    mask = mask_for_image(path)
    if mask is None:
        return None
    mask = resize_mask(mask, (size, size))
    return mask if mask.any() else None


def positive_share(relevance: np.ndarray | torch.Tensor) -> float:
    """The share of the map's absolute relevance that is positive (NaN for an all-zero map)."""
    values = np.asarray(relevance, dtype=np.float64)
    total = np.abs(values).sum()
    return float(np.clip(values, 0, None).sum() / total) if total > 0 else math.nan


def batch_rows(
    loaded: LoadedModel, explainer: Explainer, images: pd.DataFrame, methods: Sequence[str],
    deletion_steps: int = 16, baseline: str = "mean",
) -> list[dict]:
    """One row per image and method for a batch of images (`path`, `true_severity`) and one model."""
    x = loaded.batch(images["path"].tolist())
    result = explainer.explain(x, methods=tuple(methods))
    probabilities = torch.softmax(result.logits, dim=1)
    aucs = {
        method: deletion_aucs(loaded.model, x, result.maps[method].to(x.device), result.targets,
                              steps=deletion_steps, baseline=baseline)
        for method in methods
    }
    rows = []
    for i, image in enumerate(images.itertuples(index=False)):
        index = result.targets[i]
        predicted = loaded.classes[index]
        mask = _lesion_mask(image.path, loaded.size)
        for method in methods:
            relevance = result.maps[method][i]
            rows.append({
                "model": loaded.label, "arch": loaded.arch, "image": image.path,
                "true_severity": image.true_severity, "predicted": predicted,
                "severity": image.true_severity or predicted, "probability": float(probabilities[i, index]),
                "method": method,
                "mean_relevance": math.nan if TABLE[method].conserved else mean_relevance(relevance),
                "positive_share": positive_share(relevance),
                "mass_in_mask": relevance_mass_accuracy(relevance, mask) if mask is not None else math.nan,
                "mask_share": float(mask.mean()) if mask is not None else math.nan,
                "pointing_game": float(pointing_game(relevance, mask)) if mask is not None else math.nan,
                "deletion_auc": float(aucs[method][i]),
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
                            label="mask share (chance)" if position == 0 else "_nolegend_")
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
    split: str | None = None,
    device: str = "auto",
    batch_size: int = 16,
    deletion_steps: int = 16,
    baseline: str = "mean",
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
    estimate: Callable[[float, int], None] | None = None,
    note: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Run the report (see module doc); returns the summary table. `split` None: see `list_images`;
    `note(text)` receives what the report decided about the data.

    `progress(done, total)` after each batch; `estimate(seconds, total)` once, after the first
    image (timed alone, set-up included, so the estimate errs long), before the rest.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ReportError(f"methods must be among {', '.join(METHODS)}, got {', '.join(methods) or 'none'}")
    if batch_size < 1:
        raise ReportError(f"batch size must be at least 1, got {batch_size}")
    models = load_models(weights, str(resolve_device(device)))
    listed = [list_images(data, split, max_images, seed=m.seed, cutoffs=m.meta.cutoffs,
                          trained_on=m.manifest_hash, force=force, note=note) for m in models]
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    total, done = sum(len(images) for images in listed), 0
    for loaded, images in zip(models, listed):
        explainer = loaded.predictor.explainer
        try:
            starts = [0, *range(1, len(images), batch_size)] if done == 0 else range(0, len(images), batch_size)
            bounds = list(starts) + [len(images)]
            for start, stop in itertools.pairwise(bounds):
                began = time.perf_counter()
                rows.extend(batch_rows(loaded, explainer, images.iloc[start:stop], methods, deletion_steps, baseline))
                done += stop - start
                if estimate is not None and done == 1:
                    estimate((time.perf_counter() - began) * total, total)
                if progress is not None:
                    progress(done, total)
        finally:
            loaded.predictor.close()
    per_image = pd.DataFrame(rows)
    per_image.to_csv(out_dir / "per_image.csv", index=False)
    summary = summarise(per_image)
    summary.to_csv(out_dir / "summary.csv", index=False)
    study_table(per_image).to_csv(out_dir / "study_table2.csv")
    write_plots(per_image, out_dir)
    return summary
