"""The PostgreSQL rater store beside SQLite: selection by settings and flags, `db migrate` (copy,
verification, refusal of a non-empty target), one transaction per write under concurrent writers,
and clear errors for a server that cannot be reached. Real databases only (`postgres_url`)."""

from __future__ import annotations

import argparse
import io
import json
import threading
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pytest
from PIL import Image

from annotation import workflow
from annotation.db.engines import DatabaseUnavailable, close_pool
from annotation.ingest import ingest
from annotation.store import AnnotationError, ImageCompleteError, RatingStore
from melasma.cli import main, serve
from melasma.cli.settings_flags import settings_from_args
from melasma.masi import REGIONS, RaterScores
from melasma.settings import Settings


def uniform(area: int, darkness: int, homogeneity: int) -> dict[str, dict[str, int]]:
    return {r: {"area": area, "darkness": darkness, "homogeneity": homogeneity} for r in REGIONS}


def write_pngs(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        buffer = io.BytesIO()
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
            buffer, format="PNG")
        paths.append(folder / f"p{i}.png")
        paths[-1].write_bytes(buffer.getvalue())
    return paths


def filled_store(store: RatingStore, settings: Settings, tmp_path: Path) -> list[str]:
    """4 photos: one closed and adjudicated, one closed with a re-rating request, revisions, an open one."""
    ids = ingest(store, settings.photos_dir, write_pngs(tmp_path / "in", 4), patient_id="P-1",
                 visit_date="2024-02-29").added
    for k, rater in enumerate(settings.raters):
        for image in ids[:2]:
            workflow.submit(store, settings, rater, image, uniform(k + 1, 1, 1))
    workflow.submit(store, settings, "rater1", ids[2], uniform(1, 1, 1))
    workflow.submit(store, settings, "rater1", ids[2], uniform(2, 2, 2))  # a revision
    workflow.adjudicate(store, settings, "boss", ids[0], 7.5, "consensus meeting")
    workflow.request_rerate(store, settings, "boss", ids[1], "rater2", "chin scored as forehead")
    return ids


def snapshot(store: RatingStore) -> tuple[object, ...]:
    return (store.images(), store.ratings(), store.audit_trail(), store.adjudications(),
            store.rating_counts(), store.rerate_requests("rater2"))


def test_settings_and_flag_select_the_backend(tmp_path: Path, postgres_url: str) -> None:
    assert RatingStore.for_settings(Settings(data_dir=tmp_path)).engine.name == "sqlite"
    chosen = Settings.from_env({"MELASMA_DATA_DIR": str(tmp_path), "MELASMA_DATABASE_URL": postgres_url})
    assert RatingStore.for_settings(chosen).engine.name == "postgresql"
    with pytest.raises(ValueError, match="must start with postgresql:// or sqlite:///, got mysql:"):
        Settings(database_url="mysql://root:secret@db/x")
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)  # `serve` and app.py take the flag too
    assert settings_from_args(parser.parse_args(["--database-url", postgres_url]), {}).database_url == postgres_url

    # The annotation commands are unchanged: --database-url sends them to PostgreSQL.
    photo = write_pngs(tmp_path / "in", 1)[0]
    flags = ["--data-dir", str(tmp_path / "data"), "--database-url", postgres_url]
    assert main(["ingest", str(photo), *flags]) == 0
    assert not (tmp_path / "data" / "annotations.sqlite").exists()
    image_id = RatingStore(postgres_url).images()[0].id
    assert main(["rate", "--rater", "rater1", "--image", image_id, "--scores", "1,1,1,1,1,1,1,1,1,1,1,1",
                 *flags]) == 0
    assert RatingStore(postgres_url).get_rating(image_id, "rater1").masi == 2.0


def test_migrate_copies_everything_and_refuses_a_non_empty_target(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    source = RatingStore(settings.data_dir / "annotations.sqlite")
    ids = filled_store(source, settings, tmp_path)
    before = snapshot(source)

    with source.transaction() as conn:  # a side table of another module beside the store's
        conn.execute("CREATE TABLE side_notes (image_id TEXT PRIMARY KEY)")
    assert main(["db", "migrate", "--from", f"sqlite:///{source.path}", "--to", postgres_url]) == 0
    out, err = capsys.readouterr()
    assert "rating_audit        8       8" in out and "verified: 21 rows" in out
    assert "not copied (not part of the rater store): side_notes" in err
    target = RatingStore(postgres_url)
    assert snapshot(target) == before  # same rows, ids, order, timestamps, revisions
    assert target.audit_trail(image_id=ids[2])[1].old_scores == uniform(1, 1, 1)

    # Ids continue after the copied ones; the rules hold on the copy.
    request = workflow.request_rerate(target, settings, "boss", ids[0], "rater3", "x")
    assert request.id == len(before[3]) + 1
    with pytest.raises(ImageCompleteError):
        target.save_rating(ids[0], "rater4", RaterScores.from_raw(uniform(1, 1, 1)), max_ratings=3)

    # A target that is not empty is refused and left as it was.
    assert main(["db", "migrate", "--from", str(source.path), "--to", postgres_url]) == 2
    assert "is not empty (4 images, 7 ratings, 8 rating_audit, 3 adjudications)" in capsys.readouterr().err
    assert len(target.adjudications()) == 3

    # And back: PostgreSQL -> a new SQLite file gives the same store again.
    back = tmp_path / "back.sqlite"
    assert main(["db", "migrate", "--from", postgres_url, "--to", f"sqlite:///{back}"]) == 0
    assert snapshot(RatingStore(back))[:2] == snapshot(target)[:2]
    assert RatingStore(back).integrity_check() == "ok" == target.integrity_check()


def test_migrate_refuses_a_missing_source(tmp_path: Path, postgres_url: str) -> None:
    from annotation.db.migrate import MigrationError, migrate

    with pytest.raises(MigrationError, match="does not exist"):
        migrate(tmp_path / "nothing.sqlite", postgres_url)
    with pytest.raises(MigrationError, match="same database"):
        migrate(postgres_url, postgres_url)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_first_ratings_never_exceed_k(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """12 writers race for one photo that takes 3 ratings: exactly 3 stored, 3 audit rows."""
    raters = tuple(f"r{i}" for i in range(12))
    settings = Settings(data_dir=tmp_path / "data", raters=raters, ratings_per_image=3)
    target = request.getfixturevalue("postgres_url") if backend == "postgresql" else \
        settings.data_dir / "annotations.sqlite"
    store = RatingStore(target)
    image = ingest(store, settings.photos_dir, write_pngs(tmp_path / "in", 1)).added[0]
    start, outcomes = threading.Barrier(len(raters)), []

    def submit(rater: str) -> None:
        start.wait()
        try:
            workflow.submit(store, settings, rater, image, uniform(1, 1, 1))
            outcomes.append("stored")
        except ImageCompleteError:
            outcomes.append("refused")

    threads = [threading.Thread(target=submit, args=(r,)) for r in raters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused"] * 9 + ["stored"] * 3
    assert len(store.ratings()) == 3 and len(store.audit_trail()) == 3


def test_unreachable_server_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"postgresql://melasma:s3cret@/nowhere?host={tmp_path}"  # no server listens in tmp_path
    with pytest.raises(DatabaseUnavailable, match="cannot open the rater store") as info:
        RatingStore(url)
    assert "s3cret" not in str(info.value) and "melasma:***@" in str(info.value)
    with pytest.raises(DatabaseUnavailable) as info:
        RatingStore(f"postgresql:///nowhere?host={tmp_path}&user=melasma&password=s3cret")
    assert "s3cret" not in str(info.value) and "password=***" in str(info.value)
    assert main(["agreement", "--data-dir", str(tmp_path), "--database-url", url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot open the rater store") and "s3cret" not in err
    assert isinstance(info.value, OSError) and not isinstance(info.value, AnnotationError)


def test_schema_version_newer_than_the_app_is_refused(postgres_url: str) -> None:
    store = RatingStore(postgres_url)
    with store.connect() as conn:
        conn.execute("UPDATE melasma_schema SET version = 99")
    with pytest.raises(AnnotationError, match="schema version 99 is newer"):
        RatingStore(postgres_url)
    assert json.dumps(store.rating_counts()) == "{}"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_adjudication_log_is_checked_and_append_only(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    settings = Settings(data_dir=tmp_path / "data", coordinators=("boss",))
    target = request.getfixturevalue("postgres_url") if backend == "postgresql" else \
        settings.data_dir / "annotations.sqlite"
    store = RatingStore(target)
    ids = filled_store(store, settings, tmp_path)
    with pytest.raises(AnnotationError, match=r"^adjudication refused: .*(?i:check)"):
        store.add_adjudication(ids[0], "boss", "adjudicate", "no MASI given", old_masi=4.0)
    with pytest.raises(AnnotationError, match="adjudication refused"):
        store.add_adjudication(ids[0], "boss", "adjudicate", "  ", old_masi=4.0, new_masi=5.0)
    assert len(store.adjudications()) == 2  # the refused ones left nothing behind
    statements = ["UPDATE adjudications SET reason = 'edited'", "DELETE FROM adjudications"]
    if backend == "postgresql":
        statements.append("TRUNCATE adjudications")
    with store.connect() as conn:
        for statement in statements:
            with pytest.raises(store.engine.integrity_errors, match="adjudication log is append-only"):
                conn.execute(statement)
    assert [a.reason for a in store.adjudications()] == ["consensus meeting", "chin scored as forehead"]
    later = store.add_adjudication(ids[1], "boss", "adjudicate", "after re-rating", old_masi=4.0, new_masi=6.0)
    # Writable after each refusal. Ids only grow: PostgreSQL's sequences keep the numbers that a
    # refused insert drew (gaps), SQLite's AUTOINCREMENT does not.
    assert later.id == 3 if backend == "sqlite" else later.id > 2
    assert [a.id for a in store.adjudications()] == sorted(a.id for a in store.adjudications())


def test_a_user_without_create_rights_gets_one_line(postgres_url: str) -> None:
    import psycopg

    role = f"reader_{uuid.uuid4().hex[:8]}"  # PostgreSQL 15+: no CREATE on schema public for others
    parts = urlsplit(postgres_url)
    reader = urlunsplit(parts._replace(netloc=f"{role}:pw-{role}@{parts.netloc.rpartition('@')[2]}"))
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}'")
    try:
        with pytest.raises(DatabaseUnavailable, match="cannot set up the rater store .*permission denied"):
            RatingStore(reader)
    finally:
        close_pool(reader)
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"DROP ROLE {role}")
