"""One JSON sanitiser for everything the package writes or answers as JSON (model.json, metrics.json,
the job queue's rows, API answers): strict JSON, never NaN."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any


def jsonable(value: Any) -> Any:
    """`value` as plain JSON types: mappings (keys as str), sequences and sets as lists, numpy arrays
    and numpy / torch scalars as numbers, paths as str; NaN and inf become None; anything else its str."""
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(item) for item in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return jsonable(value.tolist())
    return str(value)


def dumps(value: Any, **kwargs: Any) -> str:
    """Strict JSON (`allow_nan=False`) of `jsonable(value)`; `kwargs` go to `json.dumps` (e.g. indent)."""
    return json.dumps(jsonable(value), allow_nan=False, **kwargs)
