"""Load the synthetic follow-up set (`melasma.data.longitudinal`) into a data folder: ingest its
visits.csv through the manifest path and store the three simulated raters' scores."""

from __future__ import annotations

import csv
from pathlib import Path

from annotation import workflow
from annotation.ingest import IngestSummary
from annotation.store import RatingStore
from annotation.visit_manifest import ingest_visits, read_manifest
from melasma.data.synthetic import rater_scores
from melasma.data.synthetic_marks import mark_synthetic
from melasma.errors import UserError
from melasma.settings import Settings

SIMULATED_RATERS = 3
DEMO_COORDINATOR = "demo coordinator"
SETTLE_REASON = "synthetic demo: the raters' mean accepted"


def load_into_store(
    folder: str | Path, store: RatingStore, settings: Settings, *, settle_disputes: bool = True
) -> IngestSummary:
    """Ingest `folder/visits.csv` and rate every new photo as the simulated raters, who take the
    names of the first three configured raters; needs `ratings_per_image` of 3.

    `settle_disputes`: a coordinator (`DEMO_COORDINATOR`) adjudicates every disputed photo at the
    raters' mean, as a clinic would before reading outcomes; otherwise those visits stay
    `needs adjudication` and outcomes leave them out."""
    if settings.ratings_per_image != SIMULATED_RATERS or len(settings.raters) < SIMULATED_RATERS:
        raise UserError(f"the synthetic follow-up set has {SIMULATED_RATERS} raters: configure at least "
                         f"{SIMULATED_RATERS} raters and {SIMULATED_RATERS} ratings per photo")
    folder = Path(folder)
    summary = ingest_visits(store, settings.photos_dir, read_manifest(folder / "visits.csv"),
                            source="visits.csv")
    mark_synthetic(settings.layout, summary.added)
    added = {Path(f.file).name: f.photo_id for f in summary.files if f.outcome == "added"}
    with (folder / "labels.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            photo_id = added.get(Path(row["image"]).name)
            if photo_id is None:
                continue
            for k, rater in enumerate(settings.raters[:SIMULATED_RATERS], start=1):
                workflow.submit(store, settings, rater, photo_id, rater_scores(row, k))
    if settle_disputes:
        for case in workflow.adjudication_queue(store, settings):
            workflow.adjudicate(store, settings, DEMO_COORDINATOR, case.image.id, case.label_masi,
                                SETTLE_REASON)
    return summary
