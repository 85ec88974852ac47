"""A study is never mixed with demo data: `synth` refuses to overwrite a data set (the app's demo set)
or to add synthetic photos and ratings to a store holding real ones unless --force, and the Agreement
and Export screens say how many photos are synthetic (their real handlers, in the local mode)."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest

from annotation.ingest import ingest
from annotation.store import RatingStore
from melasma.__main__ import main
from melasma.data.synthetic import generate
from melasma.data.synthetic_marks import synthetic_ids
from melasma.settings import Settings
from melasma.ui.annotate import build_annotate_tab
from melasma.ui.annotate_text import report_markdown

VISITS = ["synth", "--visits", "2", "--patients", "2", "--size", "64"]


def real_photo(tmp_path: Path) -> Path:
    """A photo a clinic took (here: any photo not written into the store by `synth`)."""
    generate(tmp_path / "clinic", n=1, size=64, seed=9)
    return next((tmp_path / "clinic" / "images").glob("*.jpg"))


def test_synth_never_overwrites_a_data_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    demo = tmp_path / "data" / "demo"
    assert main(["synth", "--out", str(demo), "--n", "6", "--size", "32"]) == 0
    before = (demo / "labels.csv").read_bytes()
    capsys.readouterr()
    assert main(["synth", "--out", str(demo), "--n", "9", "--size", "32", "--seed", "3"]) == 2
    assert "already holds a data set" in capsys.readouterr().err
    assert (demo / "labels.csv").read_bytes() == before
    assert main(["synth", "--out", str(demo), "--n", "9", "--size", "32", "--seed", "3", "--force"]) == 0
    assert (demo / "labels.csv").read_bytes() != before


def test_synthetic_patients_stay_out_of_a_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = tmp_path / "study"
    settings = Settings(data_dir=study)
    store = RatingStore.for_settings(settings)
    ingest(store, settings.photos_dir, [real_photo(tmp_path)], patient_id="P-0042")

    code = main([*VISITS, "--out", str(tmp_path / "followup"), "--data-dir", str(study)])
    assert code == 2 and "holds 1 real photo(s)" in capsys.readouterr().err
    assert len(store.images()) == 1 and not (tmp_path / "followup").exists()  # nothing written

    own = tmp_path / "followup-data"
    assert main([*VISITS, "--out", str(tmp_path / "followup"), "--data-dir", str(own)]) == 0
    assert len(synthetic_ids(Settings(data_dir=own).layout)) == 4

    assert main([*VISITS, "--out", str(tmp_path / "again"), "--seed", "5", "--data-dir", str(study), "--force"]) == 0
    assert len(store.images()) == 5 and len(synthetic_ids(settings.layout)) == 4


def test_agreement_and_export_say_when_photos_are_synthetic(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert main([*VISITS, "--out", str(tmp_path / "followup"), "--data-dir", str(data)]) == 0
    settings = Settings(data_dir=data)
    with gr.Blocks():
        tab = build_annotate_tab(settings)
    local = gr.Request(username=None)
    numbers, _ = tab.agreement(local)
    assert numbers["synthetic_photos"] == 4
    assert "4 of 4 photos are synthetic" in report_markdown(numbers)
    assert "4 of 4 photos here are synthetic" in tab.export_preview(local)

    clean = Settings(data_dir=tmp_path / "clean")
    ingest(RatingStore.for_settings(clean), clean.photos_dir, [real_photo(tmp_path)])
    with gr.Blocks():
        other = build_annotate_tab(clean)
    assert other.agreement(local)[0]["synthetic_photos"] == 0
    assert "synthetic" not in report_markdown(other.agreement(local)[0])
    assert "synthetic" not in other.export_preview(local)
