"""Export fully rated images: a training manifest (the data layer's CSV format) and long-format
ratings, both with spreadsheet formula injection escaped.

An export is one self-contained folder, `exports/<UTC time>/` holding `manifest.csv`, `ratings.csv`
and `images/<id>.jpg` (hard links to the stored photos where the file system allows, else copies),
so the manifest's relative paths resolve wherever the folder is moved. It is written under a
temporary name and renamed when complete. Only images with all k ratings are exported: a download
never reveals scores of an image someone may still rate.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from annotation.store import AnnotationError, RatingStore
from annotation.workflow import ConsensusRow, consensus_rows
from melasma.layout import photo_path
from melasma.masi import REGION_WEIGHTS, REGIONS, SEVERITIES, region_score, severity
from melasma.settings import Settings

MANIFEST_COLUMNS: tuple[str, ...] = (
    "image", "masi", "severity", "patient_id", "status", "consensus_masi", "adjudicated", "not_visible", "clear",
)
RATINGS_COLUMNS: tuple[str, ...] = (
    "image_id", "patient_id", "visit_date", "rater", "region", "weight", "area", "darkness",
    "homogeneity", "region_score", "rater_masi", "rater_mmasi", "revision", "rated_at", "not_visible",
)
#: Fewest photos per severity class for a set that can train (a 6:3:1 split needs one in each part).
MIN_PER_CLASS = 10
#: A cell starting with one of these is a formula to Excel / LibreOffice / Sheets.
FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")


def escape_cell(value: object) -> object:
    """Prefix text that a spreadsheet would run as a formula with `'`; other values unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def escape_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` with every text cell passed through `escape_cell`."""
    return frame.map(escape_cell)


@dataclass(frozen=True)
class ExportResult:
    """Where an export went and how many images it holds."""

    folder: Path
    manifest: Path
    ratings: Path
    images: int


def manifest_frame(rows: list[ConsensusRow]) -> pd.DataFrame:
    """The training manifest: one row per fully rated image, `image` relative to the CSV.

    `masi` / `severity` are the label: the coordinator's adjudicated MASI when there is one, else
    the raters' mean (`consensus_masi`), rescaled when all raters marked the same regions
    `not_visible`; `status` is agreed, disputed, adjudicated or re-rating. Photos whose raters
    disagree on which regions are visible are left out until a coordinator adjudicates them. `clear`
    is True for a label MASI of 0 (no melasma recorded; its `severity` is the mild class it trains as)."""
    return pd.DataFrame(
        [
            {"image": f"images/{row.image.id}.jpg", "masi": row.label_masi,
             "severity": severity(row.label_masi), "patient_id": row.image.patient_id,
             "status": row.status, "consensus_masi": row.consensus.masi,
             "adjudicated": row.adjudicated, "not_visible": " ".join(row.hidden or ()),
             "clear": row.label_masi == 0}
            for row in rows if row.trainable
        ],
        columns=list(MANIFEST_COLUMNS),
    )


def ratings_frame(rows: list[ConsensusRow]) -> pd.DataFrame:
    """Long-format ratings: one row per rater x image x region."""
    records = []
    for row in rows:
        for rating in row.ratings:
            for region in REGIONS:
                scores = rating.scores[region]
                records.append({
                    "image_id": row.image.id, "patient_id": row.image.patient_id,
                    "visit_date": row.image.visit_date, "rater": rating.rater, "region": region,
                    "weight": REGION_WEIGHTS[region], **scores,
                    "region_score": region_score(**scores),
                    "rater_masi": rating.masi, "rater_mmasi": rating.mmasi,
                    "revision": rating.revision, "rated_at": rating.updated_at,
                    "not_visible": region in rating.hidden,
                })
    return pd.DataFrame(records, columns=list(RATINGS_COLUMNS))


def class_counts(rows: list[ConsensusRow]) -> dict[str, int]:
    """Photos per severity class (of the label the manifest carries), every class listed."""
    counts = dict.fromkeys(SEVERITIES, 0)
    for row in rows:
        if row.trainable:
            counts[severity(row.label_masi)] += 1
    return counts


def clear_count(rows: list[ConsensusRow]) -> int:
    """Photos an export would write with a label MASI of 0 (clear: no melasma recorded)."""
    return sum(1 for row in rows if row.trainable and row.label_masi == 0)


def training_warnings(counts: dict[str, int]) -> list[str]:
    """Why a set with these class counts cannot train well (empty when it can)."""
    warnings = [f"no {name} photos: the model cannot learn a class it never sees"
                for name, n in counts.items() if n == 0]
    warnings += [f"only {n} {name} photo(s): fewer than {MIN_PER_CLASS}, too few to split into "
                 "training, validation and test" for name, n in counts.items() if 0 < n < MIN_PER_CLASS]
    return warnings


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def export(
    store: RatingStore, settings: Settings, photos_dir: str | Path, out_root: str | Path | None = None
) -> ExportResult:
    """Write a new export folder under `out_root` (default `settings.exports_dir`).

    Raises AnnotationError when no image has all its ratings yet, or a rated photo is missing.
    """
    rows = consensus_rows(store, settings)
    if not rows:
        raise AnnotationError(
            f"nothing to export yet: no image has all {settings.ratings_per_image} ratings"
        )
    root = Path(out_root) if out_root is not None else settings.exports_dir
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S_%fZ")
    final = root / stamp
    staging = root / f".{stamp}.partial"
    (staging / "images").mkdir(parents=True)
    try:
        for row in rows:
            source = photo_path(photos_dir, row.image.id)
            if not source.is_file():
                raise AnnotationError(f"photo of image {row.image.id} is missing from {photos_dir}")
            _link_or_copy(source, staging / "images" / f"{row.image.id}.jpg")
        escape_frame(manifest_frame(rows)).to_csv(staging / "manifest.csv", index=False)
        escape_frame(ratings_frame(rows)).to_csv(staging / "ratings.csv", index=False)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(final, final / "manifest.csv", final / "ratings.csv", len(rows))
