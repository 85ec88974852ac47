"""The whole journey through a real server, gradio_client only: photos -> three raters' scores ->
export -> a tiny training run on the export -> predict and explain with the new checkpoint."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from PIL import Image

from live_app import live_app
from melasma.data.synthetic import generate, rater_scores
from melasma.masi import ITEMS, REGIONS, SEVERITIES, consensus, masi
from waiting import wait_until

pytestmark = pytest.mark.live

N_IMAGES = 18  # seed 0: consensus 7 mild, 6 moderate, 5 severe -> three splits of three classes
RATERS = ("rater1", "rater2", "rater3")
ARCH = "resnet18"


def _flat(scores: dict[str, dict[str, int]]) -> list[int]:
    """The 12 form values: area, darkness, homogeneity for forehead, right malar, left malar, chin."""
    return [scores[region][item] for region in REGIONS for item in ITEMS]


def _wait_done(client: Client, job_id: str) -> dict:
    return wait_until(lambda: client.predict(job_id, api_name="/training_status"), f"training job {job_id} to end",
                      done=lambda status: status["state"] in ("done", "failed", "cancelled"), interval_s=0.5)


def test_photos_to_explained_prediction(tmp_path: Path) -> None:
    source = tmp_path / "clinic"
    with generate(source, n=N_IMAGES, size=64, seed=0).open() as handle:
        rows = list(csv.DictReader(handle))
    photos = [source / row["image"] for row in rows]
    expected = {row["image"]: consensus([rater_scores(row, k) for k in (1, 2, 3)]) for row in rows}
    assert {c.severity for c in expected.values()} == set(SEVERITIES)

    with live_app(tmp_path / "data", raters=RATERS) as (_, client):
        # 1. ingest: every photo new, nothing refused; ids follow the upload order
        summary = client.predict([handle_file(str(p)) for p in photos], "", "", api_name="/ingest")
        assert (summary["added"], summary["duplicates"], summary["errors"]) == (N_IMAGES, 0, [])
        row_of = dict(zip(summary["added_ids"], rows))
        assert len(row_of) == N_IMAGES

        # 2. three blinded raters each score every photo, in the order the app hands them out
        for k, rater in enumerate(RATERS, start=1):
            image_id, photo, status = client.predict(rater, api_name="/next_image")
            rated = []
            while image_id:
                assert Path(photo).is_file() and rater in status
                scores = rater_scores(row_of[image_id], k)
                entry, image_id, photo, status = client.predict(
                    rater, image_id, *_flat(scores), api_name="/submit_rating")
                assert entry["rater"] == rater and entry["revision"] == 1
                assert entry["masi"] == pytest.approx(masi(scores))
                rated.append(entry["image_id"])
            assert sorted(rated) == sorted(row_of)
            assert "no photos left" in status

        report, _ = client.predict(api_name="/agreement")
        assert (report["complete"], report["images"]) == (N_IMAGES, N_IMAGES)
        assert -1.0 <= report["masi_icc"]["2,1"]["icc"] <= 1.0

        # 3. export: the manifest's consensus MASI equals melasma.masi computed here
        files, manifest = client.predict(api_name="/export")
        downloaded = next(Path(f) for f in files if Path(f).name == "manifest.csv")
        with downloaded.open() as handle:
            exported = {r["image"].removeprefix("images/").removesuffix(".jpg"): r for r in csv.DictReader(handle)}
        assert set(exported) == set(row_of)
        for image_id, row in row_of.items():
            truth = expected[row["image"]]
            assert float(exported[image_id]["masi"]) == pytest.approx(truth.masi)
            assert exported[image_id]["severity"] == truth.severity

        # 4. train a tiny model on the export (server-side manifest path from the Annotate tab)
        job_id = client.predict(manifest, [ARCH], "", 1, 8, 32, 1e-3, 1, 0, "cpu", "off",
                                api_name="/start_training")
        status = _wait_done(client, job_id)
        assert status["state"] == "done", status["error"]
        assert [row["arch"] for row in status["summary"]] == [ARCH]
        checkpoint = f"{job_id}/{ARCH}"
        assert (Path(status["run_dir"]) / ARCH / "model.safetensors").is_file()

        # 5. predict and explain a 3:2 photo with the new checkpoint
        wide, tall = tmp_path / "wide.jpg", tmp_path / "tall.jpg"
        Image.open(photos[0]).resize((96, 64)).save(wide)
        Image.open(photos[0]).resize((64, 96)).save(tall)
        label, latency = client.predict(handle_file(str(wide)), checkpoint, api_name="/predict")
        confidences = {c["label"]: c["confidence"] for c in label["confidences"]}
        assert set(confidences) == set(SEVERITIES) and label["label"] in SEVERITIES
        assert sum(confidences.values()) == pytest.approx(1.0, abs=1e-4)
        assert latency["total"] > 0
        sizes = {}
        for photo, method in ((wide, "lrp"), (wide, "gradcam"), (tall, "lrp")):
            figure = Path(client.predict(handle_file(str(photo)), checkpoint, method, api_name="/explain"))
            with Image.open(figure) as drawn:
                assert drawn.format == "PNG"
                sizes[photo.stem, method] = drawn.size
        # the figure is the photo beside its heatmap: both panels keep the photo's aspect ratio
        (width, wide_height), (tall_width, tall_height) = sizes["wide", "lrp"], sizes["tall", "lrp"]
        assert width == tall_width and sizes["wide", "gradcam"] == sizes["wide", "lrp"]
        assert (tall_height - wide_height) / (width / 2) == pytest.approx(96 / 64 - 64 / 96, rel=0.05)
