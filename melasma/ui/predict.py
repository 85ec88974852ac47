"""The Predict tab: a photo in; the severity, all three heatmaps, and the four MASI regions out.

API (gradio_client): ``/predict`` (image, checkpoint) -> (label, latency ms), ``/explain`` (image,
checkpoint, method) -> the photo beside the heatmap overlay, with a legend, and ``/regions``
(image) -> (JSON of the regions and their lesion measures, the photo with the region outlines beside
the same with the lesion model's map tinted).
Checkpoints are chosen by key (``demo`` or ``RUN/<arch>``), shown by date, data set, test accuracy
and architecture, never by a path the client sends; each is loaded once and shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from melasma.data.images import ImageLoadError, load_image, read_header
from melasma.errors import UserError
from melasma.explain import views
from melasma.explain.methods import TABLE
from melasma.face_reading import FaceReading, read_face
from melasma.inference import (
    DISPLAY_MAX,
    METHODS,
    Predictor,
    describe_checkpoint,
    fit_display,
    get_predictor,
    list_checkpoints,
)
from melasma.settings import Settings
from melasma.ui.components import PhotoInput, Shown, user_errors
from melasma.ui.examples import real_examples, synthetic_examples
from melasma.ui.predict_headline import headline

REGION_HEADERS = ["region", "visible", "lesion %", "A (0-6)", "D (0-4)", "H (0-4)",
                  *(f"{TABLE[m].short} % in region" for m in METHODS)]
LATENCY_HEADERS = ["step", "ms"]

INTRO = """
Drop a facial photo (or take one with the webcam) to get a melasma severity with class
probabilities, three heatmaps of what drove it (**LRP**: red supports the predicted class, blue
speaks against it; **Grad-CAM**; **gradient x input**), and the four MASI regions found on the face
with the lesions the lesion model finds in each (slide across the regions picture to compare the
photo with the lesion map). Research software, not a diagnosis.
"""


def _require_photo(image: str | None) -> str:
    if not image:
        raise gr.Error("Upload a photo, take one with the webcam, or pick an example first.")
    return image


def _user_error(error: ValueError, image: str) -> gr.Error:
    """A clear message (e.g. the data layer's) naming the upload's file, not its server path."""
    return gr.Error(str(error).replace(image, Path(image).name))


def _readable(image: str) -> bool:
    """Whether the file's header reads as an allowed image within the caps (no pixels decoded)."""
    try:
        read_header(image)
    except ImageLoadError:
        return False
    return True


def labelled_choices(runs_dir: Path) -> list[tuple[str, str]]:
    """(label, key) pairs for the checkpoint dropdown: date, data set, test accuracy, architecture."""
    return [(("demo weights · " if key == "demo" else "") + describe_checkpoint(path), key)
            for key, path in list_checkpoints(runs_dir).items()]


#: How the latency table names the Explainer's steps (set up once per checkpoint; LRP split in two).
STEP_LABELS: dict[str, str] = {
    "explain: gradient pass": "explain: Grad-CAM + gradient x input (one shared forward and backward)",
    "explain: lrp": "explain: LRP",
    "explain: lrp forward": "  LRP forward (also gives the logits)",
    "explain: lrp relevance": "  LRP relevance pass (cached rules)",
}


def _latency_rows(steps: dict[str, float]) -> list[list[object]]:
    return [[STEP_LABELS.get(name, name), round(float(ms), 1)] for name, ms in steps.items()]


def _masi_text(reading: FaceReading) -> str:
    """The lesion model's reading in one line (the CNN's class is the headline's to show, or not)."""
    if not reading.found:
        return ""
    return (f"**Image-derived MASI {reading.masi:.1f}** (mMASI {reading.mmasi:.1f}), measured from "
            "the lesion model's map per region (see the region table below).")


@dataclass(frozen=True)
class PredictTab:
    """The tab's components and its handlers (the app shell wires `refresh_choices` to the Train tab's
    finished runs). `heatmaps` and `scales` are keyed by method (`METHODS`); `cnn_output` and `latency`
    hold `/predict`'s answer, which `analyse` turns into what the page shows."""

    runs_dir: Path
    image: gr.Image
    checkpoint: gr.Dropdown
    refresh: gr.Button
    run: gr.Button
    cnn_output: gr.Label
    severity: gr.Label
    notice: gr.Markdown
    masi: gr.Markdown
    latency_table: gr.Dataframe
    latency: gr.JSON
    heatmaps: dict[str, gr.Image]
    scales: dict[str, gr.HTML]
    cam_note: gr.Markdown
    regions_overlay: gr.ImageSlider
    region_table: gr.Dataframe
    method: gr.Radio
    show: gr.Button
    detail: gr.Image
    find: gr.Button
    regions_json: gr.JSON

    @property
    def analysis(self) -> list[gr.components.Component]:
        """What `analyse` shows (and `cleared` empties)."""
        return [self.severity, self.notice, self.masi, *self.heatmaps.values(), *self.scales.values(), self.cam_note,
                self.regions_overlay, self.region_table, self.latency_table]

    def choices(self) -> dict[str, Path]:
        """Checkpoint key -> directory: the demo weights, then every trained RUN/<arch>."""
        return list_checkpoints(self.runs_dir)

    def refresh_choices(self) -> gr.Dropdown:
        """A dropdown update listing every checkpoint now on disk (e.g. after a training run);
        the current selection stays."""
        return gr.Dropdown(choices=labelled_choices(self.runs_dir))

    def predictor(self, checkpoint: str | None) -> Predictor:
        """The shared Predictor for a checkpoint key; gr.Error for an unknown or broken one."""
        directory = self.choices().get(checkpoint or "")
        if directory is None:
            raise gr.Error(f"Unknown checkpoint {checkpoint!r}: press the refresh button and choose one.")
        try:
            return get_predictor(directory)
        except UserError as error:
            raise gr.Error(f"Cannot load checkpoint {checkpoint}: {error}") from None

    def predict(self, image: str | None, checkpoint: str | None) -> tuple[dict[str, float], dict[str, float]]:
        """Class probabilities (for gr.Label) and the latency of each step in milliseconds."""
        image = _require_photo(image)
        predictor = self.predictor(checkpoint)
        try:
            result = predictor.predict(image)
        except UserError as error:
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
        except UserError as error:
            raise _user_error(error, image) from None

    def analyse(self, image: str | None, checkpoint: str | None, latency: dict[str, float] | None) -> Shown:
        """Everything the page shows for a photo: the severity headline only where it is earned
        (`predict_headline`: none without a face, a demonstration line under the caution for an
        unchecked or failed checkpoint), the notice, the image-derived MASI, three overlays with their
        colour scales, Grad-CAM's note, the regions overlay and table, and the latency table."""
        image = _require_photo(image)
        predictor = self.predictor(checkpoint)
        try:
            explanations = predictor.explain_all(predictor.decode(image, draft=DISPLAY_MAX))
        except UserError as error:
            raise _user_error(error, image) from None
        reading = read_face(explanations.photo, explanations.maps)
        steps = {f"predict: {k}": v for k, v in (latency or {}).items() if k != "total"}
        steps.update({f"explain: {k}": v for k, v in explanations.latency_ms.items() if k != "total"})
        steps["regions + lesion map"] = reading.latency_ms
        steps["total"] = (latency or {}).get("total", 0.0) + explanations.latency_ms["total"] + reading.latency_ms
        top = headline(explanations.probabilities, face_found=reading.found, face_notice=reading.notice,
                       check=predictor.real_photo_check)
        shown: Shown = {
            self.severity: gr.Label(value=explanations.probabilities if top.show_label else None,
                                    visible=top.show_label),
            self.notice: top.notice, self.masi: _masi_text(reading), self.cam_note: explanations.cam_note,
            self.regions_overlay: (reading.outlines, reading.overlay), self.region_table: reading.table(METHODS),
            self.latency_table: _latency_rows(steps),
        }
        for method in METHODS:
            shown[self.heatmaps[method]] = views.overlay(explanations.photo, explanations.maps[method], method)
            shown[self.scales[method]] = views.colour_scale_html(explanations.maps[method], method)
        return shown

    def cleared(self, image: str | None) -> Shown:
        """After a refusal: nothing of the photo before (severity, notice, MASI, heatmaps and their
        scales, regions, latency); a file that is not a readable image leaves the input too, rather than
        staying there as a broken picture."""
        shown: Shown = {self.severity: gr.Label(value=None, visible=False)}
        shown.update({component: None for component in self.analysis if component is not self.severity})
        if image and not _readable(image):
            shown[self.image] = None
        return shown

    def emptied(self, image: str | None) -> Shown:
        """When the photo input empties (its clear button, or an upload the server refused before any
        handler ran: the upload budget): nothing of the photo before stays."""
        return self.cleared(None) if image is None else {component: gr.skip() for component in self.analysis}

    def regions(self, image: str | None) -> tuple[dict[str, object], tuple[Image.Image, Image.Image]]:
        """The four MASI regions of a photo and their lesion measures (JSON), and the outlines
        without and with the lesion map."""
        image = _require_photo(image)
        try:
            photo = fit_display(load_image(image, draft=(DISPLAY_MAX, DISPLAY_MAX)))
        except UserError as error:
            raise _user_error(error, image) from None
        reading = read_face(photo)
        return reading.details, (reading.outlines, reading.overlay)


def build_predict_tab(settings: Settings) -> PredictTab:
    """Lay out the Predict tab inside the caller's open gr.Blocks / gr.Tab and wire its events."""
    runs_dir = settings.runs_dir
    gr.Markdown(INTRO)
    with gr.Row():
        with gr.Column(scale=1):
            image = PhotoInput(
                label="Facial photo", type="filepath", sources=["upload", "webcam"], height=360, elem_id="predict-photo",
            )
            with gr.Row():
                # Custom values: an API client may name a run trained after this session began;
                # `predictor()` accepts only checkpoints on disk.
                labelled = labelled_choices(runs_dir)
                checkpoint = gr.Dropdown(
                    choices=labelled, value=labelled[0][1] if labelled else None, label="Checkpoint", scale=4,
                    allow_custom_value=True,
                )
                refresh = gr.Button("Refresh", scale=1, min_width=80)
            run = gr.Button("Predict", variant="primary")
            for examples in (real_examples(settings.examples_dir), synthetic_examples(settings.demo_dir)):
                if examples is not None:
                    gr.Examples(examples=[[str(p)] for p in examples.photos], inputs=[image], label=examples.label)
        with gr.Column(scale=1):
            # /predict's answer (class probabilities) lands here; `analyse` decides what the page headlines
            cnn_output = gr.Label(visible=False, num_top_classes=3)
            severity = gr.Label(label="Severity (CNN)", num_top_classes=3, visible=False, elem_id="predict-severity")
            notice = gr.Markdown()
            masi = gr.Markdown()
            latency_table = gr.Dataframe(headers=LATENCY_HEADERS, label="Latency (ms)", interactive=False,
                                         max_height=260, wrap=True, column_widths=["78%", "22%"],
                                         elem_id="predict-latency")
            latency = gr.JSON(label="Latency per step (ms)", visible=False)
    heatmaps, scales = {}, {}
    with gr.Row():
        for m in METHODS:
            with gr.Column(min_width=200):
                heatmaps[m] = gr.Image(label=TABLE[m].label, type="pil", format="png", interactive=False)
                scales[m] = gr.HTML()
    cam_note = gr.Markdown()
    with gr.Row():
        # JPEG: a photo-like overlay, and it keeps the page's PNG images to the three heatmaps. The
        # slider shows the outlines alone on one side and the lesion map tinted red on the other.
        regions_overlay = gr.ImageSlider(label="MASI regions | lesion map (tinted red): slide to compare",
                                         type="pil", format="jpeg", interactive=False, scale=1)
        region_table = gr.Dataframe(headers=REGION_HEADERS, label="Per region", interactive=False, scale=2,
                                    wrap=True, elem_id="predict-regions")
    with gr.Accordion("One method, larger", open=False):
        method = gr.Radio(
            choices=[(TABLE[m].label, m) for m in METHODS], value="lrp", label="Method",
        )
        show = gr.Button("Show")
        detail = gr.Image(label="Photo and heatmap with legend", type="pil", format="png", interactive=False)
    with gr.Accordion("Face regions as JSON", open=False):
        find = gr.Button("Find regions")
        regions_json = gr.JSON(label="Regions and lesion measures")
    tab = PredictTab(runs_dir=runs_dir, image=image, checkpoint=checkpoint, refresh=refresh, run=run,
                     cnn_output=cnn_output, severity=severity, notice=notice, masi=masi, latency_table=latency_table,
                     latency=latency, heatmaps=heatmaps, scales=scales, cam_note=cam_note,
                     regions_overlay=regions_overlay, region_table=region_table, method=method, show=show,
                     detail=detail, find=find, regions_json=regions_json)
    wire(tab)
    return tab


def wire(tab: PredictTab) -> None:
    """Connect the tab's events: `/predict` on a click or an upload, then the page's analysis (or, after
    a refusal, nothing of the photo before); `/explain` and `/regions`. Refusals are pop-ups."""
    quiet: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden"}
    tab.refresh.click(tab.refresh_choices, None, tab.checkpoint, api_visibility="private")
    predicted = gr.on(
        [tab.run.click, tab.image.upload], user_errors(tab.predict), [tab.image, tab.checkpoint],
        [tab.cnn_output, tab.latency], api_name="predict",
    )
    predicted.failure(tab.cleared, [tab.image], [*tab.analysis, tab.image], **quiet)
    tab.image.change(tab.emptied, [tab.image], tab.analysis, **quiet)
    predicted.success(user_errors(tab.analyse), [tab.image, tab.checkpoint, tab.latency], tab.analysis,
                      api_visibility="private")
    gr.on([tab.show.click, tab.method.change], user_errors(tab.explain), [tab.image, tab.checkpoint, tab.method],
          tab.detail, api_name="explain")
    tab.find.click(user_errors(tab.regions), [tab.image], [tab.regions_json, tab.regions_overlay], api_name="regions")
