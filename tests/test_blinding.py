"""Blinding after a photo closes: raters cannot revise; coordinators adjudicate or ask for re-rating,
and every decision is logged; the export carries `status` and `adjudicated`."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from annotation import workflow
from annotation.export import export
from annotation.ingest import ingest
from annotation.store import AnnotationError, ImageClosedError, RatingStore
from melasma.settings import Settings
from tests.test_annotation_store import uniform, write_pngs


@pytest.fixture
def closed(tmp_path: Path) -> tuple[Settings, RatingStore, str, str]:
    """A store with two photos: the first closed with MASI 4 / 12 / 24 (bins disagree), the second open."""
    settings = Settings(data_dir=tmp_path / "data")
    store = RatingStore(settings.data_dir / "annotations.sqlite")
    first, second = ingest(store, settings.photos_dir, write_pngs(tmp_path / "in", 2)).added
    for rater, scores in zip(settings.raters, (uniform(2, 1, 1), uniform(3, 2, 2), uniform(4, 3, 3))):
        workflow.submit(store, settings, rater, first, scores)
    workflow.submit(store, settings, "rater1", second, uniform(1, 1, 1))
    return settings, store, first, second


def test_revision_is_refused_once_the_photo_has_its_k_ratings(closed) -> None:
    settings, store, first, second = closed
    with pytest.raises(ImageClosedError, match="closed"):
        workflow.submit(store, settings, "rater1", first, uniform(6, 4, 4))
    assert store.get_rating(first, "rater1").revision == 1  # nothing changed
    assert workflow.submit(store, settings, "rater1", second, uniform(2, 1, 1)).revision == 2  # open: allowed
    row, = workflow.adjudication_queue(store, settings)
    assert row.image.id == first and row.status == "disputed"


def test_adjudication_resolves_and_is_logged(closed) -> None:
    settings, store, first, _ = closed
    with pytest.raises(AnnotationError, match="say why"):
        workflow.adjudicate(store, settings, "boss", first, 20.0, " ")
    with pytest.raises(AnnotationError, match="between 0 and 48"):
        workflow.adjudicate(store, settings, "boss", first, 49.0, "typo")
    decision = workflow.adjudicate(store, settings, "boss", first, 20.0, "reviewed at full size")
    assert (decision.coordinator, decision.old_masi, decision.new_masi) == ("boss", pytest.approx(40 / 3), 20.0)
    assert workflow.adjudication_queue(store, settings) == []
    row, = workflow.consensus_rows(store, settings)
    assert (row.status, row.adjudicated, row.label_masi) == ("adjudicated", 20.0, 20.0)
    with store.connect() as conn, pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE adjudications SET new_masi = 0")

    result = export(store, settings, settings.photos_dir)
    manifest = pd.read_csv(result.manifest)
    assert manifest.loc[0, ["masi", "severity", "status", "adjudicated"]].tolist() == [20.0, "moderate", "adjudicated", 20.0]


def test_rerate_request_reopens_the_photo_for_that_rater_only(closed) -> None:
    settings, store, first, second = closed
    workflow.request_rerate(store, settings, "boss", first, "rater3", "area looks overestimated")
    with pytest.raises(ImageClosedError):
        workflow.submit(store, settings, "rater2", first, uniform(1, 1, 1))
    assert workflow.next_image(store, settings, "rater3").id == first  # first in their queue
    row, = workflow.consensus_rows(store, settings)
    assert row.status == "re-rating" and row.rerating == ("rater3",)
    assert workflow.submit(store, settings, "rater3", first, uniform(3, 2, 2)).revision == 2
    with pytest.raises(ImageClosedError):  # one revision per request
        workflow.submit(store, settings, "rater3", first, uniform(3, 2, 1))
    row, = workflow.consensus_rows(store, settings)
    assert row.status == "agreed" and row.consensus.per_rater == [4.0, 12.0, 12.0]  # all mild, spread 8
    assert workflow.next_image(store, settings, "rater3").id == second
    log = store.adjudications(first)
    assert [(d.action, d.coordinator, d.rater, d.reason) for d in log] == [
        ("rerate", "boss", "rater3", "area looks overestimated")]


def test_not_visible_regions_rule(tmp_path: Path) -> None:
    """Same region not visible for all raters: MASI rescaled to the visible weight and trainable;
    raters disagreeing on visibility: disputed and left out of the manifest until adjudicated."""
    settings = Settings(data_dir=tmp_path / "data", raters=("a", "b"), ratings_per_image=2)
    store = RatingStore(settings.data_dir / "annotations.sqlite")
    same, differ = ingest(store, settings.photos_dir, write_pngs(tmp_path / "in", 2)).added
    partial = {r: s for r, s in uniform(2, 2, 1).items() if r != "chin"}  # no chin scores needed
    for rater in ("a", "b"):
        done = workflow.submit(store, settings, rater, same, partial, hidden=("chin",))
        assert done.masi == pytest.approx(5.4)  # 0.9 x 2 x 3, chin stored as 0
    workflow.submit(store, settings, "a", differ, uniform(2, 2, 1))
    workflow.submit(store, settings, "b", differ, partial, hidden=("chin",))
    with pytest.raises(AnnotationError, match="at least one region"):
        workflow.submit(store, settings, "a", differ, {}, hidden=("forehead", "right_malar", "left_malar", "chin"))

    rows = {row.image.id: row for row in workflow.consensus_rows(store, settings)}
    assert rows[same].hidden == ("chin",) and rows[same].label_masi == pytest.approx(6.0)  # 5.4 / 0.9
    assert rows[same].status == "agreed" and rows[same].trainable
    assert rows[differ].hidden is None and rows[differ].status == "disputed" and not rows[differ].trainable
    assert "raters disagree on which regions are visible" in rows[differ].reasons

    manifest = pd.read_csv(export(store, settings, settings.photos_dir).manifest)
    assert manifest["image"].tolist() == [f"images/{same}.jpg"] and manifest.loc[0, "not_visible"] == "chin"
    workflow.adjudicate(store, settings, "boss", differ, 6.0, "chin hidden by a scarf: rated the rest")
    manifest = pd.read_csv(export(store, settings, settings.photos_dir).manifest)
    assert len(manifest) == 2


def test_a_database_without_the_not_visible_column_is_upgraded(closed) -> None:
    _, store, first, _ = closed
    with store.connect() as conn:
        conn.execute("ALTER TABLE ratings DROP COLUMN hidden")  # as written by schema version 1
    reopened = RatingStore(store.path)
    assert reopened.get_rating(first, "rater1").hidden == ()
    assert len(reopened.ratings()) == 4
