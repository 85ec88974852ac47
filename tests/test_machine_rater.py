"""The image-derived MASI as a non-human rater: its agreement numbers, its cache, and the coordinators'
`/machine_agreement` endpoint on real photos rated by three raters through the live app."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from test_annotation_live import served

from annotation.agreement import MachineAgreement, machine_agreement
from annotation.workflow import consensus_rows
from melasma.cli import main
from melasma.data.images import load_image
from melasma.layout import photo_path
from melasma.lesions import analyse
from melasma.settings import Settings
from melasma.stats.agreement import icc


class _Row:
    """The two attributes machine_agreement reads from a consensus row."""

    def __init__(self, image_id: str, masi: float) -> None:
        self.image = type("Image", (), {"id": image_id})()
        self.label_masi = masi


def test_agreement_numbers_follow_their_definitions() -> None:
    consensus = [4.0, 10.0, 18.5, 30.0, 41.0]
    rows = [_Row(f"id{i}", value) for i, value in enumerate(consensus)]
    same = machine_agreement(rows, {f"id{i}": value for i, value in enumerate(consensus)})
    assert (same.compared, same.icc, same.bias, same.mae, same.pearson_r) == (5, 1.0, 0.0, 0.0, 1.0)

    shifted = machine_agreement(rows, {f"id{i}": value + 3 for i, value in enumerate(consensus)})
    assert shifted.bias == pytest.approx(3.0) and shifted.mae == pytest.approx(3.0)
    assert shifted.pearson_r == pytest.approx(1.0)
    table = np.array([consensus, [v + 3 for v in consensus]]).T
    assert shifted.icc == pytest.approx(icc(table, "2,1"), abs=1e-4) and shifted.icc < 1  # absolute agreement

    missing = machine_agreement(rows, {"id0": 5.0, "id1": None})
    assert missing == MachineAgreement(1, 4, None, None, None, None, None, None)


@pytest.mark.live
@pytest.mark.realdata
def test_coordinators_compare_the_machine_with_three_raters_on_real_photos(
    tmp_path: Path, roboflow_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = sorted((roboflow_dir / "melasma").glob("*.jpg"))[:3] + sorted((roboflow_dir / "non-melasma").glob("*.jpg"))[:2]
    settings = Settings(data_dir=tmp_path / "data")
    with served(settings) as (tab, url):
        client = Client(url, verbose=False, download_files=str(tmp_path / "dl"))
        summary = client.predict([handle_file(str(p)) for p in photos], "P-7", "2024-06-01", api_name="/ingest")
        assert summary["added"] == len(photos)
        for index, rater in enumerate(("rater1", "rater2", "rater3")):
            image_id, _, _ = client.predict(rater, api_name="/next_image")
            while image_id:
                scores = [(index + i) % 3 for i in range(12)]
                _, image_id, _, _ = client.predict(rater, image_id, *scores, api_name="/submit_rating")

        numbers, plot, words = client.predict(api_name="/machine_agreement")
        rows = consensus_rows(tab.store, settings)
        assert len(rows) == len(photos)
        faces = [row.image.id for row in rows
                 if analyse(load_image(photo_path(settings.photos_dir, row.image.id))).measures is not None]
        assert numbers["compared"] == len(faces) >= 2
        assert numbers["without_score"] == len(photos) - len(faces)
        assert numbers["icc"] is not None and -1 <= numbers["icc"] <= 1
        assert "Image-derived MASI vs the raters' consensus" in words and plot is not None

        # Scores are cached by photo id: with the photos gone, the same numbers come back.
        assert (settings.cache_dir / "machine_masi.json").is_file()
        shutil.rmtree(settings.photos_dir)
        again, _, _ = client.predict(api_name="/machine_agreement")
        assert again == numbers

    capsys.readouterr()
    assert main(["agreement", "--data-dir", str(settings.data_dir), "--machine"]) == 0
    assert json.loads(capsys.readouterr().out)["machine"] == numbers
