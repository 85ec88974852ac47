"""Small Annotate fixes, through the tab's real handlers in the local mode: Record with no photo says
what to do (once, in words), the adjudicated MASI starts at the photo's MASI, and after a decision the
dropdown shows the photo's new status."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest

from annotation.store import AnnotationError
from live_app import rated_store
from melasma.settings import Settings
from melasma.ui.annotate import build_annotate_tab


def test_adjudication_screen(tmp_path: Path, synth_dir: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    rated_store(synth_dir, settings, n=1)
    with gr.Blocks():
        tab = build_annotate_tab(settings)
    local = gr.Request(username=None)
    for record in (lambda: tab.adjudicate(None, 5.0, "why", local), lambda: tab.adjudicate("", 5.0, "why", local),
                   lambda: tab.request_rerate(None, "rater1", "why", local)):
        with pytest.raises(AnnotationError, match="^choose a closed photo first$"):
            record()

    ((_, image_id),) = tab.closed_choices(local).choices
    verdict = tab.open_case(image_id, local)[tab.adjudicate_screen.verdict]
    row = tab.workflow.closed_row(image_id)
    assert verdict == round(row.label_masi, 1) and verdict > 0  # not 0: the photo's own MASI to start from

    tab.adjudicate(image_id, 30.0, "reviewed", local)
    relabelled = tab.relabel_case(image_id, local)
    assert relabelled.value == image_id
    assert [name for name, _ in relabelled.choices] == [f"adjudicated · MASI 30.0 · P0 · {image_id}"]
