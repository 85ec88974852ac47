"""Export: a training manifest the data layer reads, long-format ratings, formula injection
escaped, only fully rated images, a self-contained folder."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pandas as pd
import pytest

from annotation import workflow
from annotation.export import FORMULA_PREFIXES, escape_cell, export
from annotation.ingest import ingest
from annotation.store import AnnotationError, RatingStore
from melasma.data.manifest import load_dataset
from melasma.data.synthetic import rater_scores
from melasma.settings import Settings

HOSTILE_ID = "=HYPERLINK(\"http://evil.example\",\"x\")"


def test_escape_cell() -> None:
    for prefix in FORMULA_PREFIXES:
        assert escape_cell(prefix + "1+1") == "'" + prefix + "1+1"
    assert escape_cell("P-17") == "P-17" and escape_cell("") == ""
    assert escape_cell(-3.5) == -3.5 and escape_cell(None) is None


@pytest.fixture
def rated(synth_dir: Path, tmp_path: Path) -> tuple[RatingStore, Settings, list[str]]:
    """14 synthetic photos, two of a patient with a hostile id, the others without patient id;
    12 fully rated, 1 partly."""
    rows = list(csv.DictReader((synth_dir / "labels.csv").open()))[:14]
    settings = Settings(data_dir=tmp_path / "data")
    store = RatingStore(settings.data_dir / "annotations.sqlite")
    photos = settings.data_dir / "photos"
    ids = ingest(store, photos, [synth_dir / r["image"] for r in rows[:2]], patient_id=HOSTILE_ID,
                 visit_date="2024-01-31").added
    ids += ingest(store, photos, [synth_dir / r["image"] for r in rows[2:]]).added
    assert len(ids) == 14
    for image_id, row in zip(ids[:12], rows):
        for k, rater in enumerate(settings.raters, start=1):
            workflow.submit(store, settings, rater, image_id, rater_scores(row, k))
    workflow.submit(store, settings, "rater2", ids[12], rater_scores(rows[12], 2))
    return store, settings, ids


def test_export_writes_manifest_and_long_ratings(
    rated: tuple[RatingStore, Settings, list[str]], tmp_path: Path
) -> None:
    store, settings, ids = rated
    result = export(store, settings, settings.data_dir / "photos")
    assert result.folder.parent == settings.exports_dir and result.images == 12
    assert not [p for p in settings.exports_dir.iterdir() if p.name.startswith(".")]

    manifest = pd.read_csv(result.manifest, dtype=str, keep_default_na=False)
    assert list(manifest.columns) == ["image", "masi", "severity", "patient_id", "status", "consensus_masi", "adjudicated",
                                      "not_visible", "clear"]
    assert manifest["image"].tolist() == [f"images/{i}.jpg" for i in ids[:12]]
    consensus = {r.image.id: r.consensus for r in workflow.consensus_rows(store, settings)}
    for _, row in manifest.iterrows():
        agreed = consensus[Path(row["image"]).stem]
        assert float(row["masi"]) == pytest.approx(agreed.masi) and row["severity"] == agreed.severity
    assert set(manifest["patient_id"]) == {"'" + HOSTILE_ID, ""}

    ratings = pd.read_csv(result.ratings, dtype=str, keep_default_na=False)
    assert len(ratings) == 12 * 3 * 4  # rater x image x region, complete images only
    assert not ratings.duplicated(["image_id", "rater", "region"]).any()
    assert ids[12] not in set(ratings["image_id"])  # a half-rated photo never leaks
    assert set(ratings["patient_id"]) == {"'" + HOSTILE_ID, ""}
    assert ratings["visit_date"].iloc[0] == "2024-01-31"
    for text_file in (result.manifest, result.ratings):
        for line in text_file.read_text().splitlines():
            assert not any(cell.startswith(FORMULA_PREFIXES) for cell in next(csv.reader([line])))
    first = ratings.iloc[0]
    area, darkness, homogeneity = (int(first[c]) for c in ("area", "darkness", "homogeneity"))
    assert int(first["region_score"]) == area * (darkness + homogeneity)

    moved = tmp_path / "elsewhere"
    shutil.copytree(result.folder, moved)
    table = load_dataset(moved / "manifest.csv")  # the data layer reads it, paths resolve
    assert len(table) == 12 and all(Path(p).is_relative_to(moved) for p in table["path"])
    assert sorted(table["masi"]) == pytest.approx(sorted(c.masi for c in consensus.values()))


def test_export_refuses_when_nothing_is_complete(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    store = RatingStore(settings.data_dir / "annotations.sqlite")
    with pytest.raises(AnnotationError, match="no image has all 3 ratings"):
        export(store, settings, settings.data_dir / "photos")
    assert not settings.exports_dir.exists() or not any(settings.exports_dir.iterdir())
