"""Which top tab a user lands on: a visitor (who may only use Predict) lands on Predict, the one tab
they may use, rather than on Annotate's sign-in banner."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from melasma.access import Role, role_of
from melasma.settings import Settings

PREDICT_TAB = "predict"


@dataclass(frozen=True)
class Landing:
    """The page-load handler choosing the first tab for the signed-in (or not) user."""

    settings: Settings

    def __call__(self, request: gr.Request) -> Any:
        username = getattr(request, "username", None) if request is not None else None
        if role_of(username, self.settings) is Role.VISITOR:
            return gr.Tabs(selected=PREDICT_TAB)
        return gr.skip()
