"""What the Annotate tab says: missing scores named at once, Area 0 fills D and H, result sentences."""

from __future__ import annotations

from annotation.workflow import Submission
from melasma.ui.annotate_text import fill_zero_areas, missing_message, result_sentence


def test_missing_scores_are_named_at_once_by_region() -> None:
    values = [2, 2, 1] * 3 + [1, None, 1]
    assert missing_message(values) == "Choose a darkness for the chin."
    values = [2, None, None, None, None, None, 2, 2, 1, 1, 1, 1]
    assert missing_message(values) == (
        "Choose a darkness and a homogeneity for the forehead; an area, a darkness and a homogeneity "
        "for the patient's right cheek.")
    assert missing_message([2, 2, 1] * 4) is None


def test_area_zero_means_no_lesion() -> None:
    assert fill_zero_areas([0, None, None] + [2, 2, 1] * 3) == [0, 0, 0] + [2, 2, 1] * 3
    assert fill_zero_areas([1, None, None] * 4) == [1, None, None] * 4
    assert missing_message(fill_zero_areas([0, None, None] * 4)) is None


def test_result_is_a_sentence() -> None:
    sentence = result_sentence(Submission("a" * 16, "rater1", 6.0, 3.6, 1))
    assert sentence == "Saved your rating of this photo: MASI 6.0 (mild), mMASI 3.6. The next photo is ready."
