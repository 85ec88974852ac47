"""What the Train tab shows, rendered from stored job data: curves, results, data-set summary, text.

Pure functions of a job's status (`melasma.jobs.job_status`) or a manifest, so every refresh draws
the whole view from the job store: a reload, a second browser or a missed tick never leaves a plot
empty or carries series of another job.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from melasma.data.manifest import load_dataset
from melasma.data.splits import patient_id_warning
from melasma.errors import UserError
from melasma.masi import DEFAULT_CUTOFFS, SEVERITIES
from melasma.training.report import TABLE_COLUMNS

#: Below this many test photos a 95% CI is too wide to rank models: the table says so.
TINY_TEST_SET = 30
#: Below this many photos in a class the model has little to learn that class from.
FEW_PER_CLASS = 10
EMPTY_CLASS_ADVICE = ("A class without photos cannot be learnt: rate more photos in that MASI range, or move "
                      "the cut-offs so that every class gets photos, then export again.")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~&$=:\"'^])")


def plain_markdown(text: str) -> str:
    """`text` escaped for a gr.Markdown: links, images, HTML and emphasis show as the characters typed;
    line breaks are kept."""
    return "  \n".join(_MARKDOWN_SPECIAL.sub(r"\\\1", line) for line in str(text).splitlines())


def curves_figure(history: Sequence[Mapping[str, Any]], archs: Sequence[str]) -> Figure:
    """Loss and accuracy per epoch, training (solid) and validation (dashed), one colour per
    architecture of this job; before the first epoch ends the axes say what they wait for."""
    fig = Figure(figsize=(7.2, 3.0), dpi=100)
    axes = fig.subplots(1, 2)
    colours = {arch: f"C{index % 10}" for index, arch in enumerate(archs)}
    for ax, metric, label in zip(axes, ("loss", "acc"), ("loss", "accuracy")):
        for arch in archs:
            rows = [row for row in history if row.get("arch") == arch]
            for split, style in (("train", "-"), ("val", "--")):
                points = [(row["epoch"], row[f"{split}_{metric}"]) for row in rows
                          if isinstance(row.get(f"{split}_{metric}"), (int, float))]
                if points:
                    ax.plot(*zip(*points), style, marker="o", ms=3, color=colours[arch],
                            label=f"{arch} {'training' if split == 'train' else 'validation'}")
        ax.set_xlabel("epoch", fontsize=10)
        ax.set_title(label, fontsize=11)
        ax.tick_params(labelsize=9)
        ax.grid(alpha=0.3)
        if metric == "acc":
            ax.set_ylim(0, 1)
        if not history:
            ax.text(0.5, 0.5, "waiting for the first epoch", ha="center", va="center", transform=ax.transAxes,
                    fontsize=10, color="0.4")
        ax.xaxis.get_major_locator().set_params(integer=True)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=9, frameon=False)
        fig.tight_layout(rect=(0, 0.08 + 0.07 * ((len(labels) - 1) // 4), 1, 1))
    else:
        fig.tight_layout()
    return fig


def _with_ci(row: Mapping[str, Any], name: str) -> str:
    value = row.get(name)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return "n/a"
    low, high = row.get(f"{name}_lo"), row.get(f"{name}_hi")
    if isinstance(low, (int, float)) and isinstance(high, (int, float)) and math.isfinite(low) and math.isfinite(high):
        return f"{value:.3f} ({low:.2f}-{high:.2f})"
    return f"{value:.3f}"


def results_table(summary: Sequence[Mapping[str, Any]]) -> pd.DataFrame | None:
    """Table 1 of a job: each metric with its 95% bootstrap CI, the test-set size, epochs, time, and
    a "Collapsed" column when a run collapsed to a constant predictor."""
    if not summary:
        return None
    metrics = {**TABLE_COLUMNS, **{f"auc_{name}": f"AUC {name}" for name in SEVERITIES}}
    rows = []
    for row in summary:
        line: dict[str, Any] = {"Model": row.get("arch"), "Test photos": row.get("n_test")}
        line.update({title: _with_ci(row, name) for name, title in metrics.items() if name in row})
        line.update({"Epochs": row.get("epochs_run"), "Train s": round(float(row.get("train_seconds") or 0), 1)})
        if any(other.get("collapsed") for other in summary):
            line["Collapsed"] = (row.get("collapse_cause") or "yes") if row.get("collapsed") else ""
        rows.append(line)
    return pd.DataFrame(rows)


def results_note(summary: Sequence[Mapping[str, Any]]) -> str:
    """Warnings under the results: a tiny test set, collapsed runs (empty when all is well)."""
    if not summary:
        return ""
    notes = ["Numbers in brackets are 95% bootstrap confidence intervals on the test set."]
    sizes = [int(row["n_test"]) for row in summary if isinstance(row.get("n_test"), (int, float))]
    if sizes and min(sizes) < TINY_TEST_SET:
        notes.append(f"**The test set has only {min(sizes)} photos** (fewer than {TINY_TEST_SET}): the intervals "
                     "are wide and differences between models are not reliable. Add photos before comparing.")
    collapsed = [str(row.get("arch")) for row in summary if row.get("collapsed")]
    if collapsed:
        notes.append(f"**Collapsed:** {', '.join(collapsed)} predicted (nearly) one class for every photo; "
                     "do not use these checkpoints (try ImageNet weights or a lower learning rate).")
    return "\n\n".join(notes)


def data_summary(path: str | Path, cutoffs: tuple[float, float] | None = None) -> str:
    """Photos per severity class and split of a data set, the MASI cut-offs that made the classes,
    and what to do about an empty or tiny class; the data-set error when it cannot be read."""
    try:
        table = load_dataset(path, cutoffs=cutoffs)
    except (UserError, OSError) as error:
        text = f"**This data set cannot be used yet:** {plain_markdown(str(error))}"
        if "no images for class" in str(error):
            text += "\n\n" + EMPTY_CLASS_ADVICE
        return text
    low, high = cutoffs or DEFAULT_CUTOFFS["masi"]
    counts = table.groupby(["severity", "split"]).size().unstack(fill_value=0)
    lines = [(f"**{len(table)} photos.** Classes from MASI cut-offs: mild < {low:g} ≤ moderate < {high:g} ≤ severe "
              "(photos labelled by class, not by MASI, keep their labels)."), "",
             "| class | train | val | test | total |", "|---|---|---|---|---|"]
    advice = []
    for name in SEVERITIES:
        split = {part: int(counts.loc[name, part]) if name in counts.index and part in counts else 0
                 for part in ("train", "val", "test")}
        total = sum(split.values())
        lines.append(f"| {name} | {split['train']} | {split['val']} | {split['test']} | {total} |")
        if total == 0:
            advice.append(f"**No {name} photos.** {EMPTY_CLASS_ADVICE}")
        elif total < FEW_PER_CLASS:
            advice.append(f"Only {total} {name} photos: results for this class will be unreliable.")
    no_patients = patient_id_warning(table)
    if no_patients:
        advice.insert(0, f"**Warning: {no_patients[0].upper() + no_patients[1:]}.**")
    test_size = int((table["split"] == "test").sum())
    if test_size < TINY_TEST_SET:
        advice.append(f"The test split has {test_size} photos (fewer than {TINY_TEST_SET}): expect wide "
                      "confidence intervals.")
    return "\n".join(lines + ([""] + advice if advice else []))
