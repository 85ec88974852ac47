"""Predict's headline: a severity only where the checkpoint has earned it (pure function, no server)."""

from __future__ import annotations

from dataclasses import replace

from melasma.real_photo_check import RealPhotoCheck
from melasma.ui.predict_headline import NO_FACE, headline

PROBABILITIES = {"mild": 0.2, "moderate": 0.75, "severe": 0.05}
FAILED = RealPhotoCheck(images=94, melasma_images=47, auc_melasma=0.53, tone_baseline_auc=0.71,
                        nonmelasma_mild_share=0.36, lrp_in_polygon_ratio=1.0, gxi_in_polygon_ratio=0.8,
                        gradcam_in_polygon_ratio=1.1, source="roboflow-melasma", measured="2026-11-27")
PASSED = replace(FAILED, auc_melasma=0.95, tone_baseline_auc=0.7, lrp_in_polygon_ratio=2.5, nonmelasma_mild_share=0.9)


def test_no_face_shows_no_severity_whatever_the_checkpoint() -> None:
    for check in (None, FAILED, PASSED):
        top = headline(PROBABILITIES, face_found=False, face_notice="No face was found in this photo.", check=check)
        assert not top.show_label
        assert top.notice.startswith("### No face found") and top.notice.endswith(NO_FACE)
        assert not any(name in top.notice for name in PROBABILITIES)


def test_an_unchecked_or_failed_checkpoint_shows_the_class_as_a_demonstration_under_the_caution() -> None:
    for check, caution in ((FAILED, "**Not a grade on real photos.**"), (None, "**Not checked on real photos.**")):
        top = headline(PROBABILITIES, face_found=True, face_notice="", check=check)
        assert not top.show_label and top.notice.startswith(caution)
        assert top.notice.index(caution) < top.notice.index("Demonstration of the method, not a grade")
        assert "class is **moderate** (mild 20%, moderate 75%, severe 5%)" in top.notice


def test_a_checked_checkpoint_headlines_its_class() -> None:
    top = headline(PROBABILITIES, face_found=True, face_notice="the chin is out of frame", check=PASSED)
    assert top.show_label and "Checked on real photos" in top.notice
    assert top.notice.startswith("Note: the chin is out of frame") and "Demonstration" not in top.notice
