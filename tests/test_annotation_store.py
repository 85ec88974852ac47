"""The rating store, ingest and workflow: constraints, metadata stripping, zip safety, errors that
store nothing, blindness, revisions with an audit trail, consensus and the adjudication queue.

Every test that takes `store` runs twice: on an SQLite file and on a fresh PostgreSQL database
(`postgres_url` in conftest.py: a throw-away cluster, or MELASMA_TEST_POSTGRES)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotation import ingest as ingest_module
from annotation import workflow
from annotation.ingest import ingest
from annotation.store import (
    SCORE_COLUMNS,
    AnnotationError,
    ImageCompleteError,
    RatingStore,
    UnknownImageError,
    UnknownRaterError,
)
from melasma.layout import photo_path
from melasma.masi import REGIONS
from melasma.settings import Settings

pytestmark = pytest.mark.realdata


def uniform(area: int, darkness: int, homogeneity: int) -> dict[str, dict[str, int]]:
    """The same scores in every region (MASI = area * (darkness + homogeneity))."""
    return {r: {"area": area, "darkness": darkness, "homogeneity": homogeneity} for r in REGIONS}


def png_bytes(seed: int, size: int = 32) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def write_pngs(folder: Path, n: int, start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        path = folder / f"photo_{i}.png"
        path.write_bytes(png_bytes(i))
        paths.append(path)
    return paths


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", spread_threshold=8.0)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, settings: Settings) -> RatingStore:
    if request.param == "postgresql":
        return RatingStore(request.getfixturevalue("postgres_url"))
    return RatingStore(settings.data_dir / "annotations.sqlite")


@pytest.fixture
def image_ids(store: RatingStore, settings: Settings, tmp_path: Path) -> list[str]:
    summary = ingest(store, settings.data_dir / "photos", write_pngs(tmp_path / "in", 4))
    assert summary.errors == []
    return summary.added


def count(store: RatingStore, table: str) -> int:
    with store.connect() as conn:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def test_schema_uses_wal_foreign_keys_and_checks_every_score(
    store: RatingStore, image_ids: list[str]
) -> None:
    sqlite = store.engine.name == "sqlite"
    with store.connect() as conn:
        if sqlite:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        good = {c: 1 for c in SCORE_COLUMNS}

        def insert(image_id: str, **override: object) -> None:
            values = {**good, **override}
            names = ", ".join(values)
            marks = ", ".join("?" for _ in values)
            conn.execute(
                f"INSERT INTO ratings (image_id, rater, {names}, masi, mmasi, revision, created_at,"
                f" updated_at) VALUES (?, 'r', {marks}, 1, 1, 1, 'now', 'now')",
                (image_id, *values.values()),
            )

        refused = store.engine.integrity_errors
        # PostgreSQL's integer columns round 2.5 on assignment (SQLite's CHECK refuses it): the
        # workflow refuses non-integers before the store on both (test_bad_requests_... below).
        for column in good:
            top = 6 if column.endswith("_area") else 4
            for bad in (-1, top + 1, 2.5) if sqlite else (-1, top + 1, 6.6):
                with pytest.raises(refused, match="(?i)check"):
                    insert(image_ids[0], **{column: bad})
        with pytest.raises(refused, match="(?i)foreign key"):
            insert("0" * 16)
        for date in ("2024-13-01", "2024-02-30", "05/03/2024"):
            with pytest.raises(refused, match="(?i)check"):
                conn.execute("UPDATE images SET visit_date = ?", (date,))
        with pytest.raises(refused, match="(?i)check"):
            conn.execute("UPDATE images SET id = 'ABCDEF0123456789' WHERE id = ?", (image_ids[0],))
        conn.execute("UPDATE images SET visit_date = '2024-02-29'")  # a real date passes
    assert count(store, "ratings") == 0


def test_ingest_strips_metadata_and_finds_duplicates(
    store: RatingStore, settings: Settings, tmp_path: Path
) -> None:
    pixels = np.random.default_rng(7).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display upright
    exif.get_ifd(0x8825)[2] = (48.0, 51.0, 24.0)  # GPS latitude
    original = tmp_path / "camera.jpg"
    Image.fromarray(pixels).save(original, quality=95, exif=exif, comment=b"patient Jane Doe")
    renamed = tmp_path / "copy.png"
    Image.open(original).save(renamed)  # same picture, another name and format, EXIF kept out

    photos = settings.data_dir / "photos"
    first = ingest(store, photos, [original], patient_id=" P-17 ", visit_date="2024-03-05")
    assert first.errors == [] and len(first.added) == 1
    image_id = first.added[0]
    stored = photo_path(photos, image_id)
    with Image.open(stored) as img:
        assert img.size == (24, 40)  # orientation applied: portrait now
        assert len(img.getexif()) == 0
        assert not {"exif", "comment", "icc_profile"} & set(img.info)
    assert b"SecretCam" not in stored.read_bytes() and b"Jane" not in stored.read_bytes()
    record = store.get_image(image_id)
    assert (record.patient_id, record.visit_date, record.filename) == ("P-17", "2024-03-05", "camera.jpg")

    again = ingest(store, photos, [original, original])
    assert again.added == [] and again.duplicates == [image_id, image_id]
    assert len(store.images()) == 1
    other = ingest(store, photos, [renamed])
    assert other.added != [image_id]  # the EXIF rotation made different pixels: a new photo

    with pytest.raises(AnnotationError, match="YYYY-MM-DD"):
        ingest(store, photos, write_pngs(tmp_path / "late", 1, start=50), visit_date="05/03/2024")
    with pytest.raises(AnnotationError, match="patient id"):
        ingest(store, photos, write_pngs(tmp_path / "late", 1, start=50), patient_id="a\nb")
    assert len(store.images()) == 2


def test_ingest_zip_skips_hidden_and_reports_traversal_names(
    store: RatingStore, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("visit1/", b"")
        zf.writestr("visit1/a.png", png_bytes(1))
        zf.writestr("../../escape.png", png_bytes(2))
        zf.writestr("/abs/b.png", png_bytes(3))
        zf.writestr(".hidden.png", png_bytes(4))
        zf.writestr("__MACOSX/visit1/._a.png", b"resource fork")
        zf.writestr("notes.txt", b"not a photo")
    photos = settings.data_dir / "photos"
    summary = ingest(store, photos, [archive])
    assert len(summary.added) == 1  # visit1/a.png, stored by hash
    assert summary.errors == [
        "batch.zip: '../../escape.png' has an unsafe path, skipped",
        "batch.zip: '/abs/b.png' has an unsafe path, skipped",
        "batch.zip:notes.txt: not a recognised image file",
    ]
    assert sorted(p.name for p in photos.iterdir()) == sorted(f"{i}.jpg" for i in summary.added)
    assert not list(tmp_path.rglob("escape.png")) and not Path("/abs/b.png").exists()
    assert {store.get_image(i).filename for i in summary.added} == {"batch.zip:a.png"}

    monkeypatch.setattr(ingest_module, "MAX_ZIP_MEMBERS", 1)
    capped = ingest(store, photos, [archive])
    assert capped.added == [] and any("more than the 1 allowed" in e for e in capped.errors)
    monkeypatch.setattr(ingest_module, "MAX_ZIP_MEMBERS", 100)
    monkeypatch.setattr(ingest_module, "MAX_ZIP_BYTES", len(png_bytes(1)) + 10)
    bomb = ingest(store, photos, [archive])
    assert any("unpacks to more than" in e for e in bomb.errors)


def test_ingest_refuses_oversized_and_broken_files(
    store: RatingStore, settings: Settings, tmp_path: Path
) -> None:
    big, broken = tmp_path / "big.png", tmp_path / "broken.jpg"
    big.write_bytes(png_bytes(1, size=64))
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    summary = ingest(store, settings.data_dir / "photos", [big, broken], max_bytes=1000)
    assert summary.added == []
    assert "big.png" in summary.errors[0] and "limit" in summary.errors[0]
    assert "broken.jpg" in summary.errors[1]
    assert store.images() == []


def test_ingest_real_photos(store: RatingStore, settings: Settings, roboflow_dir: Path) -> None:
    photos = sorted((roboflow_dir / "melasma").glob("*.jpg"))[:2]
    assert len(photos) == 2
    summary = ingest(store, settings.data_dir / "photos", photos, patient_id="R1")
    assert summary.errors == [] and len(summary.added) == 2
    for image_id, source in zip(summary.added, photos):
        stored = photo_path(settings.data_dir / "photos", image_id)
        with Image.open(source) as original, Image.open(stored) as copy:
            assert copy.format == "JPEG" and copy.mode == "RGB" and len(copy.getexif()) == 0
            assert copy.size == original.size


def test_bad_requests_raise_one_line_errors_and_store_nothing(
    store: RatingStore, settings: Settings, image_ids: list[str]
) -> None:
    good = uniform(2, 2, 2)
    bad_scores = [
        {**good, "chin": {"area": 7, "darkness": 1, "homogeneity": 1}},
        {**good, "chin": {"area": 2.5, "darkness": 1, "homogeneity": 1}},
        {**good, "chin": {"area": True, "darkness": 1, "homogeneity": 1}},
        {r: good[r] for r in REGIONS[:3]},
        {**good, "nose": good["chin"]},
    ]
    for scores in bad_scores:
        with pytest.raises(ValueError) as info:
            workflow.submit(store, settings, "rater1", image_ids[0], scores)
        assert "\n" not in str(info.value)
    with pytest.raises(UnknownRaterError, match="unknown rater 'mallory'"):
        workflow.submit(store, settings, "mallory", image_ids[0], good)
    with pytest.raises(UnknownImageError, match="unknown image id"):
        workflow.submit(store, settings, "rater1", "f" * 16, good)
    with pytest.raises(UnknownRaterError):
        workflow.next_image(store, settings, "")
    with pytest.raises(AnnotationError, match="expected 12 scores"):
        workflow.scores_from_values([1] * 11)
    assert count(store, "ratings") == 0 and count(store, "rating_audit") == 0


def test_revision_keeps_an_append_only_audit_trail(
    store: RatingStore, settings: Settings, image_ids: list[str]
) -> None:
    image = image_ids[0]
    first = workflow.submit(store, settings, "rater1", image, uniform(2, 1, 1))
    second = workflow.submit(store, settings, "rater1", image, uniform(3, 2, 1))
    assert (first.masi, first.revised) == (4.0, False)
    assert (second.masi, second.revision, second.revised) == (9.0, 2, True)
    assert count(store, "ratings") == 1
    assert workflow.own_rating(store, settings, "rater1", image).scores == uniform(3, 2, 1)

    trail = store.audit_trail(image_id=image)
    assert [(e.rater, e.revision) for e in trail] == [("rater1", 1), ("rater1", 2)]
    assert trail[0].old_scores is None and trail[0].new_scores == uniform(2, 1, 1)
    assert trail[1].old_scores == uniform(2, 1, 1) and trail[1].new_scores == uniform(3, 2, 1)
    assert (trail[1].old_masi, trail[1].new_masi) == (4.0, 9.0)
    assert trail[0].changed_at < trail[1].changed_at
    with store.connect() as conn:
        with pytest.raises(store.engine.integrity_errors, match="audit trail is append-only"):
            conn.execute("UPDATE rating_audit SET new_masi = 0")
        with pytest.raises(store.engine.integrity_errors, match="audit trail is append-only"):
            conn.execute("DELETE FROM rating_audit")
        if store.engine.name == "postgresql":
            with pytest.raises(store.engine.integrity_errors, match="audit trail is append-only"):
                conn.execute("TRUNCATE rating_audit CASCADE")
    assert len(store.audit_trail()) == 2


def test_raters_are_blind_and_images_close_at_k(
    store: RatingStore, tmp_path: Path, image_ids: list[str]
) -> None:
    settings = Settings(data_dir=tmp_path / "data", raters=("a", "b", "c", "d"), ratings_per_image=3)
    first = workflow.next_image(store, settings, "a")
    assert first.id == image_ids[0]
    workflow.submit(store, settings, "a", first.id, uniform(1, 1, 1))
    assert workflow.next_image(store, settings, "a").id == image_ids[1]  # never the rated one again
    assert workflow.next_image(store, settings, "b").id == first.id  # closest to completion first
    assert workflow.own_rating(store, settings, "b", first.id) is None  # b cannot see a's scores
    assert workflow.consensus_rows(store, settings) == []  # nothing aggregated before k ratings
    workflow.submit(store, settings, "b", first.id, uniform(2, 1, 1))
    workflow.submit(store, settings, "c", first.id, uniform(3, 1, 1))
    assert workflow.next_image(store, settings, "d").id == image_ids[1]  # complete: closed
    with pytest.raises(ImageCompleteError, match="already has its 3 ratings"):
        workflow.submit(store, settings, "d", first.id, uniform(1, 1, 1))
    progress = workflow.progress(store, settings)
    assert progress["a"] == {"rated": 1, "remaining": 3} and progress["d"] == {"rated": 0, "remaining": 3}


def test_consensus_and_adjudication_queue(
    store: RatingStore, settings: Settings, image_ids: list[str]
) -> None:
    plans = {
        image_ids[0]: [uniform(2, 1, 1), uniform(2, 1, 1), uniform(2, 2, 1)],  # 4, 4, 6: agree
        image_ids[1]: [uniform(3, 2, 1), uniform(4, 2, 1), uniform(4, 2, 2)],  # 9, 12, 16: bins differ
        image_ids[2]: [uniform(6, 3, 3), uniform(6, 3, 3), uniform(4, 4, 4)],  # 36, 36, 32: severe, spread 4
        image_ids[3]: [uniform(6, 3, 3), uniform(4, 4, 4), uniform(6, 4, 4)],  # 36, 32, 48: spread 16
    }
    for image, entries in plans.items():
        for rater, scores in zip(settings.raters, entries):
            workflow.submit(store, settings, rater, image, scores)
    rows = {row.image.id: row for row in workflow.consensus_rows(store, settings)}
    assert rows[image_ids[0]].consensus.masi == pytest.approx(14 / 3)
    assert rows[image_ids[0]].consensus.severity == "mild" and not rows[image_ids[0]].flagged
    chin = rows[image_ids[0]].consensus.region_means["chin"]
    assert chin == {"area": 2, "darkness": 4 / 3, "homogeneity": 1}
    assert "severity bin" in rows[image_ids[1]].reasons[0]
    assert not rows[image_ids[2]].flagged and rows[image_ids[2]].consensus.spread == 4
    assert rows[image_ids[3]].reasons == ("MASI spread 16.0 exceeds 8",)
    queue = workflow.adjudication_queue(store, settings)
    assert [row.image.id for row in queue] == [image_ids[1], image_ids[3]]
