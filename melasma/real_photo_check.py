"""What a checkpoint is worth on real photos, kept beside its weights and said beside its predictions.

A test split of synthetic or semi-synthetic images says nothing about real faces: the demo weights
score 0.86 macro AUC on cartoon faces and chance on real photos. `benchmarks/real_photos.py
--record` writes its measures to `real_photos.json` in the checkpoint's folder; the Predict tab
reads them and shows a caution with every prediction of a checkpoint that is unchecked, or checked
and not better than chance or than skin tone alone (issue 19's bar: ROC AUC >= 0.9 and >= the tone
baseline + 0.1).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

FILE = "real_photos.json"
#: The bar a checkpoint must clear before its class is read as a grade of a real photo.
MIN_AUC = 0.9
MIN_MARGIN_OVER_TONE = 0.1


#: The JSON types each annotated field type accepts (an int is a valid float).
_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "str": (str,)}


class RealPhotoCheckError(ValueError):
    """A `real_photos.json` that cannot be read as a RealPhotoCheck."""


@dataclass(frozen=True)
class RealPhotoCheck:
    """Melasma-vs-not on `images` real photos (`melasma_images` with melasma), measured `measured`
    (date and machine) on `source`; the same keys as `benchmarks/real_photos.py --json`."""

    images: int
    melasma_images: int
    auc_melasma: float
    tone_baseline_auc: float
    nonmelasma_mild_share: float
    lrp_in_polygon_ratio: float
    gxi_in_polygon_ratio: float
    gradcam_in_polygon_ratio: float
    source: str
    measured: str

    @property
    def passes(self) -> bool:
        """Whether the checkpoint clears the bar (AUC >= 0.9 and >= tone alone + 0.1)."""
        return self.auc_melasma >= MIN_AUC and self.auc_melasma >= self.tone_baseline_auc + MIN_MARGIN_OVER_TONE


def write_check(directory: str | Path, check: RealPhotoCheck) -> Path:
    """Write `check` as `real_photos.json` in the checkpoint folder; returns the file."""
    path = Path(directory) / FILE
    path.write_text(json.dumps(asdict(check), indent=2) + "\n")
    return path


def read_check(directory: str | Path) -> RealPhotoCheck | None:
    """The checkpoint's real-photo check, or None when it has none; raises RealPhotoCheckError for
    a file with missing, extra or mistyped fields."""
    path = Path(directory) / FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RealPhotoCheckError(f"{path}: not JSON ({error})") from None
    except RecursionError:
        raise RealPhotoCheckError(f"{path}: not a check (nested too deeply)") from None
    expected = {f.name: f.type for f in fields(RealPhotoCheck)}
    if not isinstance(raw, dict) or set(raw) != set(expected):
        raise RealPhotoCheckError(f"{path}: expected the keys {', '.join(expected)}")
    for name, kind in expected.items():
        wanted: tuple[type, ...] = _TYPES[str(kind)]
        if not isinstance(raw[name], wanted) or isinstance(raw[name], bool):
            raise RealPhotoCheckError(f"{path}: {name} must be {kind}, got {raw[name]!r}")
    values: dict[str, Any] = {k: float(v) if expected[k] == "float" else v for k, v in raw.items()}
    return RealPhotoCheck(**values)


def caution(check: RealPhotoCheck | None, *, markdown: bool = True) -> str:
    """One paragraph, Markdown for the Predict tab or plain text for the CLI: what this checkpoint's
    class is worth on a real photo (a warning unless it clears the bar)."""
    text = _caution(check)
    return text if markdown else text.replace("**", "").replace("`", "")


def _caution(check: RealPhotoCheck | None) -> str:
    if check is None:
        return ("**Not checked on real photos.** This checkpoint has no `real_photos.json`: its class "
                "was measured only on its own test split. Run `python benchmarks/real_photos.py "
                "--weights DIR --record` before reading it as a grade.")
    measured = (f"on {check.images} real photos ({check.melasma_images} with melasma; {check.source}, "
                f"{check.measured}) it told melasma from no melasma with ROC AUC {check.auc_melasma:.2f} "
                f"(0.5 = chance; skin tone alone: {check.tone_baseline_auc:.2f})")
    if check.passes:
        return f"Checked on real photos: {measured}."
    return (f"**Not a grade on real photos.** Measured {measured}. Read its class as a demonstration "
            f"of the method, not as a severity; the region table reads the lesion model's map.")
