"""The summary across architectures, like the study's Table 1, as CSV and markdown.

Beyond the study's columns each row says what the weights started from (`pretrained`), whether the
run collapsed to a constant or chance-level predictor (`collapsed`, `collapse_cause`), and accuracy
and macro AUC per skin-type group (`accuracy[skin G]`, `auc_macro[skin G]` with `_lo`/`_hi`).
Rows of a MASI regression head (`head` "regression") sit beside classifier rows: their bin metrics
come from the predicted MASI, they add `mae` and `icc` (ICC(2,1) with the consensus MASI), and the
probability-based columns (AUC, ECE) are n/a; classifier rows show n/a for MAE and ICC.
`merge_summaries` puts the tables of several runs (e.g. one per head) into one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from melasma.training.metrics import MIN_SUBGROUP_N, Evaluation, SubgroupResult

#: metric key -> column title of the markdown table
TABLE_COLUMNS: dict[str, str] = {
    "accuracy": "Accuracy", "precision_weighted": "Precision", "recall_weighted": "Recall",
    "f1_weighted": "F1", "f1_macro": "F1 macro", "kappa_quadratic": "QW kappa", "ece": "ECE",
    "mae": "MAE", "icc": "ICC(2,1)",
}


def summary_row(arch: str, evaluation: Evaluation, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One flat row: arch, every metric with its CI bounds (`<metric>_lo`, `<metric>_hi`), extras."""
    row: dict[str, Any] = {"arch": arch, "n_test": evaluation.n}
    for name, value in evaluation.metrics.items():
        low, high = evaluation.ci95.get(name, (math.nan, math.nan))
        row.update({name: value, f"{name}_lo": low, f"{name}_hi": high})
    row.update(extra or {})
    return row


def subgroup_columns(subgroups: Sequence[SubgroupResult]) -> dict[str, Any]:
    """Flat summary columns for per-skin-type results: `accuracy[skin G]`, `auc_macro[skin G]`, bounds, n."""
    columns: dict[str, Any] = {}
    for group in subgroups:
        for name, value, (low, high) in (("accuracy", group.accuracy, group.accuracy_ci95),
                                         ("auc_macro", group.auc_macro, group.auc_macro_ci95)):
            key = f"{name}[skin {group.group}]"
            columns.update({key: value, f"{key}_lo": low, f"{key}_hi": high})
        columns[f"n[skin {group.group}]"] = group.n
    return columns


def _cell(row: Mapping[str, Any], name: str) -> str:
    value = row.get(name, math.nan)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    low, high = row.get(f"{name}_lo", math.nan), row.get(f"{name}_hi", math.nan)
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return f"{value:.3f}"
    return f"{value:.3f} ({low:.2f}-{high:.2f})"


def _subgroup_cell(row: Mapping[str, Any], group: str) -> str:
    n = row.get(f"n[skin {group}]", 0)
    n = 0 if n is None or (isinstance(n, float) and math.isnan(n)) else int(n)
    if n < MIN_SUBGROUP_N:
        return f"n={n}: too few"
    return f"n={n}: {_cell(row, f'accuracy[skin {group}]')} / {_cell(row, f'auc_macro[skin {group}]')}"


def to_markdown(summary: pd.DataFrame, classes: Sequence[str]) -> str:
    """Table 1 as markdown: point estimates with 95% bootstrap CIs in brackets."""
    columns = {**TABLE_COLUMNS, **{f"auc_{name}": f"AUC {name}" for name in classes}, "auc_macro": "AUC macro"}
    rows = summary.to_dict(orient="records")
    lines = ["| Model | Head | Weights | " + " | ".join(columns.values()) + " | Collapsed |",
             "|---" * (len(columns) + 4) + "|"]
    for row in rows:
        collapsed = f"**yes**: {row.get('collapse_cause')}" if row.get("collapsed") in (True,) else "no"
        head = row.get("head") if isinstance(row.get("head"), str) else "classification"
        lines.append(f"| {row['arch']} | {head} | {row.get('pretrained', 'n/a')} | "
                     + " | ".join(_cell(row, name) for name in columns) + f" | {collapsed} |")
    n = ", ".join(f"{row['arch']} {row['n_test']}" for row in rows)
    lines += ["", (f"Test images: {n}. Brackets: 95% bootstrap confidence intervals. Precision, recall "
                  "and F1 are support-weighted (as the study); QW kappa is quadratic-weighted; "
                  "ECE uses 15 bins and has no interval (it is biased upwards, and a percentile bootstrap "
                  "of it misses the true value most of the time at these sizes). Collapsed: one predicted class on validation or test, or a final "
                  "training loss not below ln 3 (chance). Regression rows: bins derived from the predicted "
                  "MASI with the run's cut-offs; MAE in MASI points; ICC(2,1) of predicted vs consensus "
                  "MASI with its F-based CI; AUC and ECE need probabilities (n/a).")]
    groups = sorted({m.group(1) for key in summary.columns if (m := re.fullmatch(r"n\[skin (.+)\]", key))})
    if groups:
        lines += ["", ("Per skin type (test images): accuracy / macro AUC with 95% bootstrap CIs; \"too few\" "
                      f"below {MIN_SUBGROUP_N} images"), "",
                  "| Model | " + " | ".join(f"{g}" for g in groups) + " |", "|---" * (len(groups) + 1) + "|"]
        for row in rows:
            cells = [_subgroup_cell(row, g) for g in groups]
            lines.append(f"| {row['arch']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def merge_summaries(runs: Sequence[str | Path], out: str | Path, classes: Sequence[str]) -> pd.DataFrame:
    """One Table 1 from the `summary.csv` of several run folders (say a classifier and a regression
    run on the same data), written to `out/summary.csv` and `out/summary.md`."""
    tables = [pd.read_csv(Path(run) / "summary.csv") for run in runs]
    return write_summary(pd.concat(tables, ignore_index=True).to_dict(orient="records"), out, classes)


def write_summary(rows: Sequence[Mapping[str, Any]], out: str | Path, classes: Sequence[str]) -> pd.DataFrame:
    """Write `out/summary.csv` and `out/summary.md`; returns the table (empty with no rows)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = pd.DataFrame(list(rows))
    summary.to_csv(out / "summary.csv", index=False)
    text = to_markdown(summary, classes) if len(summary) else "No architecture finished.\n"
    (out / "summary.md").write_text(text)
    return summary
