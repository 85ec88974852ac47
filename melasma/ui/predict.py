"""The Predict tab: a photo in, a severity with class probabilities and three heatmaps out.

API (gradio_client): ``/predict`` (image, checkpoint) -> (label, latency ms) and ``/explain``
(image, checkpoint, method) -> the photo beside the heatmap overlay, with a legend. Checkpoints are
chosen by label (``demo`` or ``RUN/<arch>``), never by a path the client sends; each is loaded once
and shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from PIL import Image

from melasma.inference import DISPLAY_MAX, METHODS, Predictor, get_predictor, list_checkpoints
from melasma.settings import Settings
from melasma.ui.components import PhotoInput

METHOD_LABELS: dict[str, str] = {
    "lrp": "LRP (signed relevance)",
    "gradcam": "Grad-CAM",
    "gxi": "Gradient x input",
}
#: Example photos offered from the synthetic demo set.
EXAMPLES = 4
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")

INTRO = """
Drop a facial photo (or take one with the webcam) to get a melasma severity with class
probabilities, and three heatmaps of what drove it: **LRP** (red supports the predicted class,
blue speaks against it), **Grad-CAM** and **gradient x input**. Research software, not a
diagnosis; the demo weights have seen only synthetic faces.
"""


def _example_photos(demo_dir: Path) -> list[list[str]]:
    images = demo_dir / "images"
    if not images.is_dir():
        return []
    photos = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return [[str(p)] for p in photos[:EXAMPLES]]


def _require_photo(image: str | None) -> str:
    if not image:
        raise gr.Error("Upload a photo, take one with the webcam, or pick an example first.")
    return image


def _user_error(error: ValueError, image: str) -> gr.Error:
    """A clear message (e.g. the data layer's) naming the upload's file, not its server path."""
    return gr.Error(str(error).replace(image, Path(image).name))


@dataclass
class PredictTab:
    """The tab's components and its actions (public so the app shell and Train tab can wire them)."""

    runs_dir: Path
    image: gr.Image
    checkpoint: gr.Dropdown
    severity: gr.Label
    latency: gr.JSON
    heatmaps: dict[str, gr.Image]
    method: gr.Radio
    detail: gr.Image

    def choices(self) -> dict[str, Path]:
        """Checkpoint label -> directory: the demo weights, then every trained RUN/<arch>."""
        return list_checkpoints(self.runs_dir)

    def refresh_choices(self) -> gr.Dropdown:
        """A dropdown update listing every checkpoint now on disk (e.g. after a training run);
        the current selection stays."""
        return gr.Dropdown(choices=list(self.choices()))

    def predictor(self, checkpoint: str | None) -> Predictor:
        """The shared Predictor for a checkpoint label; gr.Error for an unknown or broken one."""
        directory = self.choices().get(checkpoint or "")
        if directory is None:
            raise gr.Error(f"Unknown checkpoint {checkpoint!r}: press the refresh button and choose one.")
        try:
            return get_predictor(directory)
        except ValueError as error:
            raise gr.Error(f"Cannot load checkpoint {checkpoint}: {error}") from None

    def predict(self, image: str | None, checkpoint: str | None) -> tuple[dict[str, float], dict[str, float]]:
        """Class probabilities (for gr.Label) and the latency of each step in milliseconds."""
        image = _require_photo(image)
        predictor = self.predictor(checkpoint)
        try:
            result = predictor.predict(image)
        except ValueError as error:
            raise _user_error(error, image) from None
        return result.probabilities, result.latency_ms

    def explain(self, image: str | None, checkpoint: str | None, method: str) -> Image.Image:
        """One method's heatmap: the photo beside its overlay, with a colour-bar legend."""
        image = _require_photo(image)
        if method not in METHODS:
            raise gr.Error(f"Method must be one of {', '.join(METHODS)}, got {method!r}.")
        predictor = self.predictor(checkpoint)
        try:
            return predictor.explain(image, method).figure()
        except ValueError as error:
            raise _user_error(error, image) from None

    def explain_all(
        self,
        image: str | None,
        checkpoint: str | None,
        probabilities: dict[str, float] | None,
        latency: dict[str, float] | None,
    ) -> tuple[Image.Image, ...]:
        """The three heatmaps for the predicted class, and the latency table extended with them."""
        image = _require_photo(image)
        predictor = self.predictor(checkpoint)
        try:
            photo = predictor.decode(image, draft=DISPLAY_MAX)
        except ValueError as error:
            raise _user_error(error, image) from None
        target = max(probabilities, key=probabilities.get) if probabilities else None
        timings = dict(latency or {})
        overlays, drawing = [], 0.0
        for method in METHODS:
            explanation = predictor.explain(photo, method, target=target)
            timings[method] = explanation.latency_ms[method]
            drawing += explanation.latency_ms["overlay"]
            overlays.append(explanation.overlay)
        timings["overlay"] = round(drawing, 2)
        timings["total"] = round(timings.get("total", 0.0) + drawing + sum(timings[m] for m in METHODS), 2)
        return (*overlays, timings)


def build_predict_tab(settings: Settings) -> PredictTab:
    """Lay out the Predict tab inside the caller's open gr.Blocks / gr.Tab and wire its events."""
    runs_dir = settings.runs_dir
    labels = list(list_checkpoints(runs_dir))
    gr.Markdown(INTRO)
    with gr.Row():
        with gr.Column(scale=1):
            image = PhotoInput(
                label="Facial photo", type="filepath", sources=["upload", "webcam"], height=360,
            )
            with gr.Row():
                # Custom values: an API client may name a run trained after this session began;
                # `predictor()` accepts only checkpoints on disk.
                checkpoint = gr.Dropdown(
                    choices=labels, value=labels[0] if labels else None, label="Checkpoint", scale=4,
                    allow_custom_value=True,
                )
                refresh = gr.Button("Refresh", scale=1, min_width=80)
            run = gr.Button("Predict", variant="primary")
            examples = _example_photos(settings.demo_dir)
            if examples:
                gr.Examples(examples=examples, inputs=[image], label="Synthetic examples")
        with gr.Column(scale=1):
            severity = gr.Label(label="Severity", num_top_classes=3)
            latency = gr.JSON(label="Latency per step (ms)")
    with gr.Row():
        heatmaps = {m: gr.Image(label=METHOD_LABELS[m], type="pil", format="png", interactive=False)
                    for m in METHODS}
    with gr.Accordion("One method, larger", open=False):
        method = gr.Radio(
            choices=[(METHOD_LABELS[m], m) for m in METHODS], value="lrp", label="Method",
        )
        show = gr.Button("Show")
        detail = gr.Image(label="Photo and heatmap with legend", type="pil", format="png", interactive=False)
    tab = PredictTab(runs_dir, image, checkpoint, severity, latency, heatmaps, method, detail)

    refresh.click(tab.refresh_choices, None, checkpoint, api_visibility="private")
    predicted = gr.on(
        [run.click, image.upload], tab.predict, [image, checkpoint], [severity, latency],
        api_name="predict",
    )
    predicted.success(
        tab.explain_all, [image, checkpoint, severity, latency], [*heatmaps.values(), latency],
        api_visibility="private",
    )
    gr.on([show.click, method.change], tab.explain, [image, checkpoint, method], detail, api_name="explain")
    return tab
