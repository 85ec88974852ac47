"""RatingPolicy: the annotation rules without the app's Settings; the Workflow object binds a store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from annotation.ingest import ingest
from annotation.store import RatingStore, UnknownRaterError
from annotation.workflow import RatingPolicy, Workflow, consensus_rows
from melasma.settings import Settings
from tests.test_annotation_store import uniform, write_pngs


def test_policy_refuses_bad_rules() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        RatingPolicy(("a", "b"), k=1)
    with pytest.raises(ValueError, match="unique"):
        RatingPolicy(("a", "a"))
    with pytest.raises(ValueError, match="cut-offs"):
        RatingPolicy(("a", "b"), cutoffs=(30.0, 20.0))
    with pytest.raises(UnknownRaterError, match="configured raters: a, b"):
        RatingPolicy(("a", "b"), k=2).check_rater("c")


def test_settings_carry_their_policy() -> None:
    settings = Settings.from_env({"MELASMA_RATERS": "x,y", "MELASMA_RATINGS_PER_IMAGE": "2",
                                  "MELASMA_SPREAD_THRESHOLD": "5"})
    assert RatingPolicy.from_settings(settings) == RatingPolicy(("x", "y"), k=2, spread_threshold=5.0)


def test_workflow_follows_its_policy_not_settings(tmp_path: Path) -> None:
    """k, the spread threshold and the cut-offs all come from the policy given."""
    store = RatingStore(tmp_path / "ratings.sqlite")
    photo, = ingest(store, tmp_path / "photos", write_pngs(tmp_path / "in", 1)).added
    flow = Workflow(store, RatingPolicy(("ann", "bob"), k=2, spread_threshold=100.0, cutoffs=(10.0, 20.0)))
    flow.submit("ann", photo, uniform(2, 1, 1))  # MASI 4
    assert flow.consensus_rows() == [] and flow.next_image("bob").id == photo
    flow.submit("bob", photo, uniform(3, 1, 1))  # MASI 6: same bin under (10, 20)
    row, = flow.consensus_rows()
    assert row.status == "agreed" and row.consensus.severity == "mild"
    assert flow.progress() == {"ann": {"rated": 1, "remaining": 0}, "bob": {"rated": 1, "remaining": 0}}
    stricter = RatingPolicy(("ann", "bob"), k=2, spread_threshold=1.0, cutoffs=(5.0, 20.0))
    row, = consensus_rows(store, stricter)
    assert row.status == "disputed" and len(row.reasons) == 2  # bins mild/moderate and spread 2 > 1
    assert Workflow(store, stricter).adjudication_queue()[0].image.id == photo


def test_annotation_does_not_import_the_app_settings() -> None:
    probe = "import sys, annotation.workflow, annotation.store; print('melasma.settings' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.stdout.strip() == "False", done.stderr[-2000:]
