"""Annotate -> Train in the default set-up: the app started from a folder with the default relative data
folder (``./data``), served live and driven with gradio_client. The Train tab's presets name files that
exist (never ``data/data/...``), an Annotate export trains, and Start refuses a set it could not read
before anything is queued."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from gradio_client import Client

from annotation import workflow
from annotation.ingest import ingest
from annotation.store import RatingStore
from live_app import live_app, rated_store
from melasma.data.synthetic import generate
from melasma.jobs.store import JobStore
from melasma.settings import Settings
from melasma.ui.train import UNUSABLE

pytestmark = pytest.mark.live

DATA_BOX = "Manifest (labels.csv) or class folder"


def component_value(client: Client, label: str) -> Any:
    """The value a component of the served page starts with (from the page's config)."""
    (props,) = [c["props"] for c in client.config["components"] if c.get("props", {}).get("label") == label]
    return props["value"]


def start(client: Client, data: str) -> str:
    # data, archs, other timm models, epochs, batch size, image size, lr, patience, seed, device, weights, cut-offs
    return client.predict(data, ["resnet18"], "", 1, 8, 32, 1e-3, 1, 0, "cpu", "off", "16,32",
                          api_name="/start_training")


def test_default_relative_data_folder_hands_the_export_to_train(
    tmp_path: Path, synth_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MELASMA_DATA_DIR", raising=False)
    settings = Settings.from_env()  # the default: ./data, relative to where the app starts
    shutil.copytree(synth_dir, tmp_path / "data" / "demo")
    rated_store(synth_dir, settings)
    with live_app(Path("data")) as (_, client):
        demo = component_value(client, DATA_BOX)
        # shown relative to the data folder (the page's config never reveals the server's folders), read once
        assert demo == "demo/labels.csv" and (tmp_path / "data" / demo).is_file()

        _, manifest = client.predict(api_name="/export")
        assert Path(manifest).is_absolute() and Path(manifest).is_file()
        assert Path(manifest).parent.parent == tmp_path / "data" / "exports"

        job_id = start(client, manifest)
        stored = JobStore(tmp_path / "data" / "jobs.sqlite").get(job_id).config
        assert stored["data"] == manifest  # not .../data/data/exports/...
        client.predict(job_id, api_name="/cancel_training")
    assert settings.data_dir == tmp_path / "data"  # made absolute once, at start-up


def test_start_refuses_a_set_it_cannot_read_and_queues_nothing(
    tmp_path: Path, synth_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copytree(synth_dir, tmp_path / "data" / "demo")
    (tmp_path / "data" / "exports" / "few").mkdir(parents=True)
    (tmp_path / "data" / "exports" / "few" / "manifest.csv").write_text("image,masi\n")
    with live_app(Path("data")) as (_, client):
        for data, reason in (("exports/none/manifest.csv", "no such file or folder"),
                             ("exports/few/manifest.csv", "no images for class")):
            with pytest.raises(Exception, match=UNUSABLE) as refused:
                start(client, data)
            assert reason in str(refused.value)
    assert JobStore(tmp_path / "data" / "jobs.sqlite").list() == []


def test_clear_photos_are_marked_in_the_export_and_train_can_leave_them_out(
    tmp_path: Path, synth_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(data_dir=Path("data"))
    rated_store(synth_dir, settings)
    store = RatingStore.for_settings(settings)
    generate(tmp_path / "clear", n=2, size=64, seed=11)
    for photo in sorted((tmp_path / "clear" / "images").glob("*.jpg")):
        (image_id,) = ingest(store, settings.photos_dir, [photo], patient_id=photo.stem).added
        for rater in settings.raters:
            workflow.submit(store, settings, rater, image_id, workflow.scores_from_values([0] * 12))
    with live_app(Path("data")) as (_, client):
        _, manifest = client.predict(api_name="/export")
        table = pd.read_csv(manifest)
        assert table["clear"].sum() == 2 and set(table.loc[table["clear"], "severity"]) == {"mild"}
        jobs = JobStore(tmp_path / "data" / "jobs.sqlite")

        kept = start(client, manifest)  # the default: clear photos train as mild
        assert jobs.get(kept).config["data"] == manifest
        client.predict(kept, api_name="/cancel_training")

        left_out = client.predict(manifest, ["resnet18"], "", 1, 8, 32, 1e-3, 1, 0, "cpu", "off", "16,32", False,
                                  api_name="/start_training")
        data = Path(jobs.get(left_out).config["data"])
        assert data.parent == Path(manifest).parent and data.name == "manifest-without-clear.csv"
        assert len(pd.read_csv(data)) == len(table) - 2 and not pd.read_csv(data)["clear"].any()
        client.predict(left_out, api_name="/cancel_training")
