"""Which training data a request may name: a set inside the data folder, nothing else on the server.

A path outside the data folder is refused with one message whatever it names (an existing file, a
missing one, a folder), so the answer reveals nothing about the server's files. Symbolic links are
resolved first: a link inside the folder that points out of it is refused too.
"""

from __future__ import annotations

import os
from pathlib import Path

from melasma.errors import UserError

OUTSIDE = ("training data must be a set inside the app's data folder: the demo set, an Annotate "
           "export or a set uploaded there")


class DataPathError(UserError):
    """A training data path outside the data folder (always the same message)."""


def training_data(text: str | Path, data_dir: str | Path) -> Path:
    """The real path of `text` (relative paths are read from the data folder) if it lies inside
    `data_dir`; DataPathError otherwise. Whether it exists is checked later, by the training."""
    root = Path(os.path.realpath(Path(data_dir).expanduser()))
    raw = str(text).strip()
    if not raw or "\x00" in raw:
        raise DataPathError(OUTSIDE)
    path = Path(raw)
    if not path.is_absolute():
        path = root / path  # "~/x" too: a home folder is not the data folder
    resolved = Path(os.path.realpath(path))
    if resolved == root or not resolved.is_relative_to(root):
        raise DataPathError(OUTSIDE)
    return resolved
