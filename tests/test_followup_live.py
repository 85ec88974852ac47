"""The Patients tab's API served live (the whole app, through gradio_client): `/patients` with
search, `/timeline` numbers and figure, a clear error for an unknown patient, and raters refused."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from gradio_client.exceptions import AppError
from PIL import Image

from annotation.store import RatingStore
from live_app import live_app
from melasma.data.longitudinal import generate
from melasma.followup.demo import load_into_store
from melasma.settings import Settings

pytestmark = pytest.mark.live


def _clinic(tmp_path: Path) -> dict[str, list[float]]:
    """Three synthetic patients x three visits loaded into tmp_path/data; their consensus MASI by patient."""
    generate(tmp_path / "set", patients=3, visits=3, size=64, seed=1)
    settings = Settings(data_dir=tmp_path / "data")
    load_into_store(tmp_path / "set", RatingStore(settings.data_dir / "annotations.sqlite"), settings)
    courses: dict[str, list[tuple[str, float]]] = {}
    with (tmp_path / "set" / "labels.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            courses.setdefault(row["patient_id"], []).append((row["visit_date"], float(row["masi"])))
    return {pid: [m for _, m in sorted(values)] for pid, values in courses.items()}


def test_patients_and_timeline_api(tmp_path: Path) -> None:
    expected = _clinic(tmp_path)
    with live_app(tmp_path / "data") as (_, client):
        table = client.predict("", api_name="/patients")
        assert [row[0] for row in table["data"]] == ["P000", "P001", "P002"]
        assert table["headers"][:3] == ["patient", "visits", "scored"]
        only = client.predict("p001", api_name="/patients")
        assert [row[0] for row in only["data"]] == ["P001"]
        summary, figure = client.predict("P001", api_name="/timeline")
        assert [v["masi"] for v in summary["visits"]] == pytest.approx(expected["P001"])
        assert summary["baseline_masi"] == pytest.approx(expected["P001"][0])
        assert summary["percent"] == pytest.approx(100 * (expected["P001"][-1] / expected["P001"][0] - 1))
        first = next((i for i, m in enumerate(expected["P001"]) if i and m <= expected["P001"][0] / 2), None)
        assert summary["masi50"] == (summary["visits"][first]["visit_date"] if first else None)
        with Image.open(figure) as png:
            assert png.format == "PNG" and png.width > 500
        with pytest.raises(AppError, match="unknown patient 'P999'"):
            client.predict("P999", api_name="/timeline")
        # with the demo checkpoint and the face-region analysis: the machine's numbers per visit
        machine, _ = client.predict("P001", "demo", True, api_name="/timeline")
        assert all(v["model_severity"] in ("mild", "moderate", "severe") for v in machine["visits"])
        assert [v["masi"] for v in machine["visits"]] == [v["masi"] for v in summary["visits"]]
        with pytest.raises(AppError, match="unknown checkpoint 'nope'"):
            client.predict("P001", "nope", False, api_name="/timeline")


def test_raters_cannot_read_the_patients_tab(tmp_path: Path) -> None:
    _clinic(tmp_path)
    auth = (("coord", "c-pass"), ("rater1", "r-pass"), ("rater2", "r-pass"), ("rater3", "r-pass"))
    with live_app(tmp_path / "data", auth=auth, coordinators=("coord",), raters=("rater1", "rater2", "rater3"),
                  client_auth=("rater1", "r-pass")) as (_, client):
        with pytest.raises(AppError, match="only a coordinator"):
            client.predict("", api_name="/patients")
        with pytest.raises(AppError, match="only a coordinator"):
            client.predict("P000", api_name="/timeline")
