"""Photos rated clear (MASI 0, no melasma recorded) in an export manifest: the export marks them in
its `clear` column; the Train tab may leave them out (`without_clear`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

COLUMN = "clear"
SUFFIX = "-without-clear"


def is_clear(value: object) -> bool:
    """Whether a `clear` cell of a manifest says yes."""
    return str(value).strip().lower() in {"true", "1", "yes"}


def without_clear(manifest: str | Path) -> Path:
    """A copy of a CSV manifest without its clear photos, written beside it (so relative image paths
    still resolve); the manifest itself when it is not a CSV, has no `clear` column or no clear photo."""
    path = Path(manifest)
    if path.suffix.lower() != ".csv" or not path.is_file():
        return path
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if COLUMN not in table or not table[COLUMN].map(is_clear).any():
        return path
    target = path.with_name(f"{path.stem}{SUFFIX}.csv")
    table[~table[COLUMN].map(is_clear)].to_csv(target, index=False)
    return target
