"""MASI 0 is "clear (no melasma recorded)" wherever a class is shown, never "mild"; small wording
fixes of the Annotate screens (decision log rounding, the last submit)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from annotation.store import Adjudication
from annotation.workflow import Submission
from melasma.data.clear import without_clear
from melasma.masi import CLEAR, shown_class
from melasma.ui.annotate import live_scores
from melasma.ui.annotate_text import class_counts_markdown, decisions_table, result_sentence


def test_masi_zero_is_clear_and_everything_else_keeps_its_bin() -> None:
    assert shown_class(0.0) == CLEAR == "clear (no melasma recorded)"
    assert shown_class(0.1) == "mild" and shown_class(20) == "moderate" and shown_class(40) == "severe"
    with pytest.raises(ValueError):
        shown_class(-1)


def test_annotate_shows_a_face_without_melasma_as_clear() -> None:
    assert f"**MASI 0.0** ({CLEAR})" in live_scores(*[0] * 12, *[False] * 4)
    zero = Submission(image_id="a", rater="rater1", masi=0.0, mmasi=0.0, revision=1)
    assert f"MASI 0.0 ({CLEAR})" in result_sentence(zero)
    assert "(mild)" in result_sentence(Submission(image_id="a", rater="rater1", masi=3.0, mmasi=2.0, revision=1))
    assert "clear" in class_counts_markdown({"mild": 3, "moderate": 0, "severe": 0}, [], clear=2)
    assert "clear" not in class_counts_markdown({"mild": 3, "moderate": 0, "severe": 0}, [])


def test_the_last_submit_does_not_promise_a_next_photo() -> None:
    done = Submission(image_id="a", rater="rater1", masi=3.0, mmasi=2.0, revision=1)
    assert result_sentence(done, next_ready=False).endswith("No photos are left for you to rate.")
    assert "next photo is ready" not in result_sentence(done, next_ready=False)


def test_decision_log_rounds_masi_to_one_decimal() -> None:
    decision = Adjudication(id=1, image_id="a", coordinator="c", decided_at="2026-01-01T00:00:00", action="adjudicate",
                            rater=None, old_masi=18.4666666667, new_masi=20.0, reason="r")
    row = decisions_table([decision]).iloc[0]
    assert row["MASI before"] == 18.5 and row["MASI after"] == 20.0


def test_without_clear_leaves_other_manifests_alone(tmp_path: Path) -> None:
    plain = tmp_path / "labels.csv"
    pd.DataFrame({"image": ["a.jpg"], "masi": [3.0]}).to_csv(plain, index=False)
    assert without_clear(plain) == plain and without_clear(tmp_path) == tmp_path
