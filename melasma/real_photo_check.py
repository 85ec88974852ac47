"""What a checkpoint is worth on real photos, kept beside its weights and said beside its predictions.

A test split of synthetic or semi-synthetic images says nothing about real faces: the demo weights
score 0.86 macro AUC on cartoon faces and chance on real photos. `benchmarks/real_photos.py
--record` writes its measures to `real_photos.json` in the checkpoint's folder; the Predict tab
reads them and shows a caution with every prediction of a checkpoint that is unchecked, or checked
and below the bar of issues 19 and 26: ROC AUC >= 0.9 and >= the tone baseline + 0.1, the LRP
relevance inside the lesion polygons >= 2 times their share of the face, and most photos without
melasma called mild.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from melasma.errors import UserError

FILE = "real_photos.json"
#: The bar a checkpoint must clear before its class is read as a grade of a real photo.
MIN_AUC = 0.9
MIN_MARGIN_OVER_TONE = 0.1
#: LRP's positive relevance inside the lesion polygons over the polygons' share of the face (1 = even).
MIN_LRP_IN_POLYGON = 2.0
#: "Most" photos without melasma predicted mild: more than half.
MIN_HEALTHY_MILD_SHARE = 0.5


#: The JSON types each annotated field type accepts (an int is a valid float).
_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "str": (str,)}


class RealPhotoCheckError(UserError):
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
    def shortfalls(self) -> list[str]:
        """The bars this check misses, in words (empty when it passes)."""
        missed = []
        if self.auc_melasma < MIN_AUC or self.auc_melasma < self.tone_baseline_auc + MIN_MARGIN_OVER_TONE:
            missed.append(f"ROC AUC >= {MIN_AUC} and >= tone alone + {MIN_MARGIN_OVER_TONE}")
        if not self.lrp_in_polygon_ratio >= MIN_LRP_IN_POLYGON:
            missed.append(f"LRP in the lesion outlines >= {MIN_LRP_IN_POLYGON:g}x their share "
                          f"(measured {self.lrp_in_polygon_ratio:.2f}x)")
        if not self.nonmelasma_mild_share > MIN_HEALTHY_MILD_SHARE:
            missed.append(f"most faces without melasma called mild (measured {self.nonmelasma_mild_share:.0%})")
        return missed

    @property
    def passes(self) -> bool:
        """Whether the checkpoint clears the bar: AUC >= 0.9 and >= tone alone + 0.1, LRP in-polygon
        ratio >= 2, more than half of the photos without melasma called mild."""
        return (self.auc_melasma >= MIN_AUC and self.auc_melasma >= self.tone_baseline_auc + MIN_MARGIN_OVER_TONE
                and self.lrp_in_polygon_ratio >= MIN_LRP_IN_POLYGON
                and self.nonmelasma_mild_share > MIN_HEALTHY_MILD_SHARE)


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
    return (f"**Not a grade on real photos.** Measured {measured}; below the bar: "
            f"{'; '.join(check.shortfalls)}. Read its class as a demonstration "
            f"of the method, not as a severity; the region table reads the lesion model's map.")
