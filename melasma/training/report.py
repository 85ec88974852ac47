"""The summary across architectures, like the study's Table 1, as CSV and markdown."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

#: metric key -> column title of the markdown table
TABLE_COLUMNS: dict[str, str] = {
    "accuracy": "Accuracy", "precision_weighted": "Precision", "recall_weighted": "Recall",
    "f1_weighted": "F1", "f1_macro": "F1 macro", "kappa_quadratic": "QW kappa", "ece": "ECE",
}


def summary_row(arch: str, evaluation: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One flat row: arch, every metric with its CI bounds (`<metric>_lo`, `<metric>_hi`), extras."""
    row: dict[str, Any] = {"arch": arch, "n_test": evaluation["n"]}
    for name, value in evaluation["metrics"].items():
        low, high = evaluation["ci95"].get(name, (math.nan, math.nan))
        row.update({name: value, f"{name}_lo": low, f"{name}_hi": high})
    row.update(extra or {})
    return row


def _cell(row: Mapping[str, Any], name: str) -> str:
    value = row.get(name, math.nan)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    low, high = row.get(f"{name}_lo", math.nan), row.get(f"{name}_hi", math.nan)
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return f"{value:.3f}"
    return f"{value:.3f} ({low:.2f}-{high:.2f})"


def to_markdown(summary: pd.DataFrame, classes: Sequence[str]) -> str:
    """Table 1 as markdown: point estimates with 95% bootstrap CIs in brackets."""
    columns = {**TABLE_COLUMNS, **{f"auc_{name}": f"AUC {name}" for name in classes}, "auc_macro": "AUC macro"}
    lines = ["| Model | " + " | ".join(columns.values()) + " |", "|---" * (len(columns) + 1) + "|"]
    for row in summary.to_dict(orient="records"):
        lines.append(f"| {row['arch']} | " + " | ".join(_cell(row, name) for name in columns) + " |")
    n = ", ".join(f"{row['arch']} {row['n_test']}" for row in summary.to_dict(orient="records"))
    lines += ["", f"Test images: {n}. Brackets: 95% bootstrap confidence intervals. Precision, recall "
                  "and F1 are support-weighted (as the study); QW kappa is quadratic-weighted; "
                  "ECE uses 15 bins."]
    return "\n".join(lines) + "\n"


def write_summary(rows: Sequence[Mapping[str, Any]], out: str | Path, classes: Sequence[str]) -> pd.DataFrame:
    """Write `out/summary.csv` and `out/summary.md`; returns the table (empty with no rows)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = pd.DataFrame(list(rows))
    summary.to_csv(out / "summary.csv", index=False)
    text = to_markdown(summary, classes) if len(summary) else "No architecture finished.\n"
    (out / "summary.md").write_text(text)
    return summary
