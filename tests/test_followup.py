"""Follow-up: the synthetic treatment effect and MASI-50/75 flags recovered exactly through ingest,
ratings and the store; outcomes math; manifest validation; the timeline CLI's bad-input messages."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from annotation import workflow
from annotation.store import RatingStore
from annotation.visit_manifest import (
    ManifestError,
    VisitEntry,
    entries_from_folder,
    ingest_visits,
    read_manifest,
)
from annotation.visit_notes import VisitNotes
from melasma.cli import main
from melasma.data.longitudinal import generate, shrink
from melasma.followup import cohort_responders, load_patients, outcome, patient_timeline
from melasma.followup.demo import load_into_store
from melasma.followup.export import long_frame, write_long_csv, write_patient_record
from melasma.followup.figures import timeline_figure
from melasma.followup.outcomes import percent_change, reached, wilson_interval
from melasma.followup.visits import FollowupError, Patient, Visit
from melasma.masi import REGIONS, masi
from melasma.settings import Settings

PATIENTS, VISITS = 6, 4


def _loaded(root: Path, rater_noise: bool) -> tuple[RatingStore, Settings, list[dict[str, str]]]:
    generate(root / "set", patients=PATIENTS, visits=VISITS, size=32, seed=7, rater_noise=rater_noise)
    settings = Settings(data_dir=root / "data")
    store = RatingStore(settings.data_dir / "annotations.sqlite")
    load_into_store(root / "set", store, settings)
    with (root / "set" / "labels.csv").open(newline="") as handle:
        return store, settings, list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def exact(tmp_path_factory: pytest.TempPathFactory) -> tuple[RatingStore, Settings, list[dict[str, str]]]:
    return _loaded(tmp_path_factory.mktemp("exact"), rater_noise=False)


@pytest.fixture(scope="module")
def noisy(tmp_path_factory: pytest.TempPathFactory) -> tuple[RatingStore, Settings, list[dict[str, str]]]:
    return _loaded(tmp_path_factory.mktemp("noisy"), rater_noise=True)


def _courses(labels: list[dict[str, str]], column: str) -> dict[str, list[tuple[date, float]]]:
    courses: dict[str, list[tuple[date, float]]] = defaultdict(list)
    for row in labels:
        courses[row["patient_id"]].append((date.fromisoformat(row["visit_date"]), float(row[column])))
    return {pid: sorted(values) for pid, values in courses.items()}


def _first_below(course: list[tuple[date, float]], share: float) -> date | None:
    """Independent of the code under test: first visit whose MASI is at most share x baseline."""
    base = course[0][1]
    return next((day for day, value in course[1:] if base > 0 and value <= base * share + 1e-9), None)


def test_noiseless_raters_recover_the_true_effect_and_flags_exactly(exact) -> None:
    store, settings, labels = exact
    patients = load_patients(store, settings)
    truth = _courses(labels, "true_masi")
    response = {row["patient_id"]: float(row["response"]) for row in labels}
    assert sorted(patients) == sorted(truth) and len(patients) == PATIENTS
    for pid, course in truth.items():
        result = outcome(patients[pid])
        assert [v.masi for v in patients[pid].visits] == pytest.approx([m for _, m in course], abs=1e-9)
        base, last = course[0][1], course[-1][1]
        assert result.latest.percent == pytest.approx(100 * (last - base) / base, abs=1e-6)
        # the generator's effect: the last visit is at most (1 - response) x baseline, within one item step
        assert last <= base * (1 - response[pid]) + 1e-9
        assert last >= base * (1 - response[pid]) - 3.0
        assert result.masi50 == _first_below(course, 0.5)
        assert result.masi75 == _first_below(course, 0.25)
        assert patients[pid].treatment_start == course[0][0]
    assert any(outcome(p).masi50 for p in patients.values())
    assert any(outcome(p).masi50 is None for p in patients.values())


def test_noisy_raters_consensus_and_flags_match_the_labels_exactly(noisy) -> None:
    store, settings, labels = noisy
    patients = load_patients(store, settings)
    consensus = _courses(labels, "masi")
    truth = _courses(labels, "true_masi")
    assert all(v.status == "complete" for p in patients.values() for v in p.visits)
    for pid, course in consensus.items():
        result = outcome(patients[pid])
        assert [v.masi for v in patients[pid].visits] == pytest.approx([m for _, m in course], abs=1e-9)
        assert result.masi50 == _first_below(course, 0.5)
        assert result.masi75 == _first_below(course, 0.25)
        low = [v.masi_low for v in patients[pid].visits]
        high = [v.masi_high for v in patients[pid].visits]
        assert all(lo <= m <= hi for lo, m, hi in zip(low, [m for _, m in course], high))
    # the effect measured by the raters is close to the true one (cohort mean % change at the last visit)
    measured = np.mean([outcome(p).latest.percent for p in patients.values()])
    true = np.mean([100 * (c[-1][1] - c[0][1]) / c[0][1] for c in truth.values()])
    assert abs(measured - true) < 10


def test_regions_sum_to_the_visit_masi_and_region_change(exact) -> None:
    store, settings, _ = exact
    patient = next(iter(load_patients(store, settings).values()))
    for visit in patient.visits:
        assert sum(visit.regions.values()) == pytest.approx(visit.masi, abs=1e-9)
    result = outcome(patient)
    for change in result.changes:
        visit = next(v for v in patient.visits if v.visit_date == change.visit_date)
        assert change.regions == pytest.approx({r: visit.regions[r] - result.baseline.regions[r] for r in REGIONS})


def test_shrink_never_raises_an_item_and_lands_at_or_under_the_target() -> None:
    start = {r: {"area": 5, "darkness": 3, "homogeneity": 4} for r in REGIONS}
    lower = shrink(start, 20.0)
    assert masi(lower) <= 20.0 and masi(lower) > 17.0
    assert all(lower[r][i] <= start[r][i] for r in REGIONS for i in start[r])


def test_outcome_math() -> None:
    assert percent_change(20, 10) == -50 and percent_change(0, 3) is None
    assert reached(10, 5, 0.5) and not reached(10, 5.0001, 0.5)
    assert reached(12.4, 3.1, 0.75) and not reached(0, 0, 0.5)
    assert reached(0.3, 0.1 + 0.05, 0.5)  # float noise at the boundary does not flip the flag
    for k, n in ((0, 8), (3, 8), (8, 8), (41, 100)):
        z, p = 1.959963984540054, k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        assert wilson_interval(k, n) == pytest.approx((centre - half, centre + half), abs=1e-9)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def _visit(pid: str, day: str, value: float, status: str = "complete") -> Visit:
    share = {r: value * w for r, w in zip(REGIONS, (0.3, 0.3, 0.3, 0.1))}
    return Visit(pid, date.fromisoformat(day), (f"{pid}{day}",), status, masi=value, mmasi=value / 2,
                 masi_low=value - 1, masi_high=value + 1, regions=share)  # type: ignore[arg-type]


def test_cohort_responders_per_window_count_each_patient_once() -> None:
    a = Patient("A", (_visit("A", "2026-01-01", 20), _visit("A", "2026-01-29", 12), _visit("A", "2026-02-26", 4)))
    b = Patient("B", (_visit("B", "2026-01-01", 10), _visit("B", "2026-01-29", 9), _visit("B", "2026-02-05", 5)))
    c = Patient("C", (_visit("C", "2026-01-01", 10), _visit("C", "2026-01-08", 4, "needs adjudication"),
                      _visit("C", "2026-02-26", 8)))
    windows = cohort_responders([outcome(p) for p in (a, b, c)], (0, 6, 10))
    first, second = windows
    # (0, 6] weeks: A at week 4 (40 %), B at week 5 (last visit in the window: -50 %); C's week-1 visit is disputed
    assert (first.patients, first.responders) == (2, {"MASI-50": 1, "MASI-75": 0})
    assert (second.patients, second.responders) == (2, {"MASI-50": 1, "MASI-75": 1})
    assert outcome(a).masi75 == date(2026, 2, 26) and outcome(c).masi50 is None
    with pytest.raises(ValueError, match="increasing"):
        cohort_responders([], (0, 6, 6))


def _photo(path: Path, seed: int) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_manifest_lists_every_problem_and_stores_nothing(tmp_path: Path) -> None:
    for i in range(3):
        _photo(tmp_path / f"p{i}.png", i)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    manifest = tmp_path / "visits.csv"
    manifest.write_text(
        "image,patient_id,visit_date,treatment,notes\n"
        "p0.png,P1,2026-01-05,TXA,baseline\n"
        "p1.png,,2026-02-05,,\n"            # no patient
        "p2.png,P1,2026-13-01,,\n"          # bad date
        "missing.png,P1,2026-03-05,,\n"     # no such file
        "p0.png,P1,2026-04-05,,\n"          # listed twice
        "broken.jpg,P2,2026-01-05,,\n"      # not an image
    )
    with pytest.raises(ManifestError) as caught:
        read_manifest(manifest)
    text = str(caught.value)
    assert text.startswith("visits.csv: 5 problem(s), nothing stored")
    for expected in ("line 3: patient_id is empty", "line 4: visit date", "line 5: ", "missing.png is not a file",
                     "line 6: p0.png is already listed (visits.csv line 2)", "line 7: broken.jpg"):
        assert expected in text
    # the ingest checks the files again (they may change after reading): nothing is stored then
    store = RatingStore(tmp_path / "annotations.sqlite")
    entries = [VisitEntry(tmp_path / "p1.png", "P1", "2026-01-05"), VisitEntry(tmp_path / "gone.png", "P1", "2026-02-05")]
    with pytest.raises(ManifestError, match="1 problem"):
        ingest_visits(store, tmp_path / "photos", entries)
    assert store.images() == []  # nothing stored


def test_manifest_columns_and_folder_pattern(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("image,patient,visit_date,treatement\n")
    with pytest.raises(ManifestError, match="4 problem"):
        read_manifest(bad)  # missing patient_id, unknown patient, unknown treatement, no rows
    folder = tmp_path / "photos_in"
    folder.mkdir()
    _photo(folder / "P7_2026-01-05.png", 1)
    _photo(folder / "P7_2026-02-05_left.png", 2)
    _photo(folder / "holiday.png", 3)
    _photo(folder / "P7_2026-02-31.png", 4)
    with pytest.raises(ManifestError) as caught:
        entries_from_folder(folder)
    assert "2 problem(s)" in str(caught.value) and "holiday.png" in str(caught.value)
    (folder / "holiday.png").unlink()
    (folder / "P7_2026-02-31.png").unlink()
    entries = entries_from_folder(folder)
    assert [(e.patient_id, e.visit_date) for e in entries] == [("P7", "2026-01-05"), ("P7", "2026-02-05")]


def test_manifest_ingest_stores_patient_date_treatment_and_finds_duplicates(tmp_path: Path) -> None:
    _photo(tmp_path / "a.png", 1)
    _photo(tmp_path / "b.png", 2)
    manifest = tmp_path / "visits.csv"
    manifest.write_text("image,patient_id,visit_date,treatment,notes\n"
                        "a.png,P1,2026-01-05,=cmd|' /C calc'!A0,baseline\nb.png,P1,2026-02-05,,\n")
    store = RatingStore(tmp_path / "annotations.sqlite")
    summary = ingest_visits(store, tmp_path / "photos", read_manifest(manifest))
    assert len(summary.added) == 2
    assert [(i.patient_id, i.visit_date) for i in store.images()] == [("P1", "2026-01-05"), ("P1", "2026-02-05")]
    notes = VisitNotes(store).all()
    assert notes[summary.added[0]].treatment == "=cmd|' /C calc'!A0" and summary.added[1] not in notes
    (tmp_path / "again.csv").write_text("image,patient_id,visit_date\na.png,P2,2026-03-01\n")
    again = ingest_visits(store, tmp_path / "photos", read_manifest(tmp_path / "again.csv"))
    assert again.files[0].outcome == "duplicate" and "already stored for patient P1" in again.files[0].reason
    # the long export escapes the formula-looking treatment
    settings = Settings(data_dir=tmp_path)
    frame = long_frame(load_patients(store, settings).values())
    assert len(frame) == 2 * len(REGIONS) and set(frame["status"]) == {"open"}
    path = write_long_csv(load_patients(store, settings).values(), tmp_path / "long.csv")
    assert pd.read_csv(path)["treatment"].iloc[0].startswith("'=")


def test_export_and_figure(exact, tmp_path: Path) -> None:
    store, settings, _ = exact
    patients = load_patients(store, settings)
    frame = long_frame(patients.values())
    assert len(frame) == PATIENTS * VISITS * len(REGIONS)
    baseline_rows = frame[frame["days_from_baseline"] == 0]
    assert set(baseline_rows["change"]) == {0.0}
    patient = next(iter(patients.values()))
    figure = timeline_figure(patient, outcome(patient))
    labels = [line.get_label() for line in figure.axes[0].get_lines()]
    assert "consensus MASI" in labels and any(label.startswith("MASI-50") for label in labels)
    assert any(label.startswith("treatment start") for label in labels)
    record = write_patient_record(patient, outcome(patient), tmp_path)
    assert record.figure.stat().st_size > 10_000
    assert len(pd.read_csv(record.table)) == VISITS


def _store_with(tmp_path: Path, visits: list[tuple[str, str, bool]]) -> Settings:
    """Photos (patient, date, rated by both raters?) in a 2-rater store."""
    settings = Settings(data_dir=tmp_path / "data", raters=("r1", "r2"), ratings_per_image=2)
    store = RatingStore(settings.data_dir / "annotations.sqlite")
    from annotation.ingest import ingest

    scores = {r: {"area": 2, "darkness": 2, "homogeneity": 2} for r in REGIONS}
    for n, (patient, day, rated) in enumerate(visits):
        photo = _photo(tmp_path / f"v{n}.png", 100 + n)
        image_id = ingest(store, settings.photos_dir, [photo], patient_id=patient, visit_date=day).added[0]
        for rater in ("r1", "r2") if rated else ():
            workflow.submit(store, settings, rater, image_id, scores)
    return settings


@pytest.mark.parametrize(("visits", "patient", "message"), [
    ([("P1", "2026-01-05", True), ("P1", "2026-02-05", True)], "P9", "unknown patient 'P9'"),
    ([("P1", "2026-01-05", True)], "P1", "has one visit (2026-01-05)"),
    ([("P1", "2026-01-05", True), ("P1", "2026-01-05", True)], "P1", "same visit date 2026-01-05"),
    ([("P1", "2026-01-05", True), ("P1", "2026-02-05", False)], "P1",
     "1 of 2 visits have a complete consensus"),
])
def test_timeline_cli_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], visits, patient, message) -> None:
    settings = _store_with(tmp_path, visits)
    code = main(["timeline", "--data-dir", str(settings.data_dir), "--raters", "r1,r2",
                 "--ratings-per-image", "2", "--patient", patient])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and message in err and "Traceback" not in err
    with pytest.raises(FollowupError):
        patient_timeline(load_patients(RatingStore(settings.data_dir / "annotations.sqlite"), settings), patient)


def test_timeline_cli_cohort_and_empty_store(exact, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, settings, _ = exact
    assert main(["timeline", "--data-dir", str(settings.data_dir), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "responders per visit window" in out and "P000" in out
    assert (tmp_path / "out" / "followup_long.csv").is_file() and (tmp_path / "out" / "P000_timeline.png").is_file()
    assert main(["timeline", "--data-dir", str(tmp_path / "empty")]) == 2
    assert "no patient has dated photos" in capsys.readouterr().err
    assert main(["synth", "--visits", "1", "--out", str(tmp_path / "one")]) == 2
    assert "at least 2 visits" in capsys.readouterr().err


def _moved(photo: Image.Image) -> Image.Image:
    """The same face turned 8 degrees, shifted and shrunk to 85 %: a later visit's framing."""
    w, h = photo.size
    turned = photo.rotate(8, translate=(w * 0.05, h * 0.03), resample=Image.Resampling.BILINEAR)
    return turned.resize((int(w * 0.85), int(h * 0.85)))


@pytest.mark.realdata
def test_before_after_alignment_by_landmarks_on_real_photos(roboflow_dir: Path) -> None:
    from PIL import ImageOps

    from melasma.followup.align import align_pair

    centre = slice(64, 192)
    checked = 0
    for path in sorted((roboflow_dir / "non-melasma").glob("*.jpg"))[:4]:
        with Image.open(path) as image:
            photo = image.convert("RGB")
        pair = align_pair(photo, _moved(photo), 256)
        if pair.method != "landmarks":
            continue
        checked += 1
        before, after = np.asarray(pair.before, float), np.asarray(pair.after, float)
        naive = np.asarray(ImageOps.fit(_moved(photo), (256, 256)), float)
        aligned_diff = np.abs(before[centre, centre] - after[centre, centre]).mean()
        naive_diff = np.abs(before[centre, centre] - naive[centre, centre]).mean()
        assert aligned_diff < 0.5 * naive_diff, (path.name, aligned_diff, naive_diff)
    assert checked >= 3


def test_before_after_without_a_face_scales_and_crops(tmp_path: Path) -> None:
    from melasma.followup.align import align_pair

    before = Image.fromarray(np.full((60, 90, 3), 200, np.uint8))
    after = Image.fromarray(np.full((120, 80, 3), 50, np.uint8))
    pair = align_pair(before, after, 64)
    assert pair.method == "scale and crop" and "before and after" in pair.note
    assert pair.before.size == pair.after.size == (64, 64)


def test_checkpoint_and_image_derived_scores_join_the_visits(exact) -> None:
    from melasma.followup.model import checkpoint_scores
    from melasma.inference import Predictor, default_checkpoint

    store, settings, _ = exact
    patient = load_patients(store, settings)["P000"]
    ids = [i for visit in patient.visits for i in visit.image_ids]
    model = checkpoint_scores(Predictor.from_checkpoint(default_checkpoint()), settings.photos_dir, ids)
    measured = {ids[0]: 12.5, ids[-1]: 3.0}  # the region analysis found a face in two photos
    patient = load_patients(store, settings, model, measured)["P000"]
    assert all(v.model is not None and v.model.severity in ("mild", "moderate", "severe") for v in patient.visits)
    assert [v.image_masi for v in patient.visits] == [12.5, None, None, 3.0]
    figure = timeline_figure(patient, outcome(patient))
    assert "image-derived MASI (face regions)" in [line.get_label() for line in figure.axes[0].get_lines()]
    assert list(long_frame([patient])["image_masi"].dropna().unique()) == [12.5, 3.0]


def test_disputed_visit_needs_adjudication_until_a_coordinator_decides(tmp_path: Path) -> None:
    settings = _store_with(tmp_path, [("P1", "2026-01-05", True), ("P1", "2026-02-05", False)])
    store = RatingStore(settings.data_dir / "annotations.sqlite")
    second = store.images()[1].id
    for rater, area in (("r1", 1), ("r2", 6)):  # MASI 2.0 vs 12.0: spread 10, over the threshold of 8
        workflow.submit(store, settings, rater, second, {r: {"area": area, "darkness": 1, "homogeneity": 1} for r in REGIONS})
    visit = load_patients(store, settings)["P1"].visits[1]
    assert (visit.status, visit.scored, visit.masi, visit.masi_low, visit.masi_high) == (
        "needs adjudication", False, 7.0, 2.0, 12.0)
    with pytest.raises(FollowupError, match="waiting: 2026-02-05 needs adjudication"):
        patient_timeline(load_patients(store, settings), "P1")
    workflow.adjudicate(store, settings, "coordinator", second, 4.0, "reviewed")
    patient = load_patients(store, settings)["P1"]
    assert patient.visits[1].status == "complete" and patient.visits[1].masi == 4.0
    assert outcome(patient).masi50 == date(2026, 2, 5)  # baseline 8.0 -> 4.0 is exactly 50 %


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_visits_and_notes_on_both_rater_store_backends(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The manifest ingest, the visit_notes side table and the timeline on SQLite and PostgreSQL."""
    generate(tmp_path / "set", patients=2, visits=3, size=32, seed=5, rater_noise=False)
    settings = Settings(data_dir=tmp_path / "data")
    target = request.getfixturevalue("postgres_url") if backend == "postgresql" else \
        settings.data_dir / "annotations.sqlite"
    store = RatingStore(target)
    load_into_store(tmp_path / "set", store, settings)
    VisitNotes(store).put([])  # the table exists once; a second open is harmless
    patients = load_patients(store, settings)
    assert sorted(patients) == ["P000", "P001"]
    patient = patient_timeline(patients, "P001")
    assert [v.notes for v in patient.visits] == ["baseline, before treatment", "visit 2", "visit 3"]
    assert patient.treatment_start == patient.visits[0].visit_date and outcome(patient).latest.percent < 0


def test_odd_patient_ids_stay_inside_the_output_folder_and_render(tmp_path: Path) -> None:
    odd = "../$\\sqrt$"  # a path climb, and mathtext that matplotlib cannot parse
    settings = _store_with(tmp_path, [(odd, "2026-01-05", True), (odd, "2026-02-05", True)])
    patient = load_patients(RatingStore(settings.data_dir / "annotations.sqlite"), settings)[odd]
    record = write_patient_record(patient, outcome(patient), tmp_path / "out")
    assert record.figure.parent == record.table.parent == tmp_path / "out"
    assert record.figure.name == "_____sqrt__timeline.png" and record.figure.stat().st_size > 10_000
