"""Gradio components the tabs share.

Gradio writes a `.pyi` stub beside any module that defines a component (ignored by git).
"""

from __future__ import annotations

import gradio as gr
from gradio.data_classes import ImageData


class PhotoInput(gr.Image):
    """A gr.Image whose uploads reach the handler as an unopened file path, so the data layer
    decodes them (EXIF, every mode, pixel cap) and names the file in a clear error. gr.Image's own
    preprocessing opens every upload, fully decodes non-RGB ones and fails with a generic error."""

    is_template = True  # rendered by the frontend's Image component

    def preprocess(self, payload: ImageData | None) -> str | None:
        if payload is not None and payload.path and not (payload.url or "").startswith("data:"):
            return str(payload.path)
        return super().preprocess(payload)
