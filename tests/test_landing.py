"""A visitor lands on Predict (on a phone the tab bar folds it behind "..."); others keep the first tab."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from melasma.settings import Settings
from melasma.ui.landing import PREDICT_TAB, Landing


def test_a_visitor_lands_on_predict(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, auth=(("boss", "pw"), ("ann", "pw"), ("eve", "pw")), coordinators=("boss",),
                        raters=("ann", "bob"))
    landing = Landing(settings)
    chosen = landing(gr.Request(username="eve"))
    assert isinstance(chosen, gr.Tabs) and chosen.selected == PREDICT_TAB
    for user in ("boss", "ann"):
        assert not isinstance(landing(gr.Request(username=user)), gr.Tabs)
    assert not isinstance(Landing(Settings(data_dir=tmp_path))(gr.Request(username=None)), gr.Tabs)  # local mode
