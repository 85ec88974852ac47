"""The Annotate tab: add photos, blinded MASI rating by k raters, agreement dashboard, export.

API (gradio_client): ``/ingest`` (files, patient id, visit date) -> summary; ``/next_image``
(rater) -> (image id, photo, status); ``/submit_rating`` (rater, image id, 12 scores) -> (entry,
next image id, next photo, status); ``/agreement`` -> (numbers, scatter plot); ``/export`` ->
(the two CSV paths, manifest path). Scores are area, darkness, homogeneity for forehead, right
malar, left malar and chin, in that order. When sign-in is configured the rater is the signed-in
user; otherwise the rater name must be one of the configured raters.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import gradio as gr

from annotation import workflow
from annotation.agreement import agreement_report, rating_table
from annotation.export import export as write_export
from annotation.ingest import ingest, photo_path
from annotation.plots import rater_scatter
from annotation.store import SCORE_FIELDS, AnnotationError, RatingStore
from melasma.masi import AREA_BANDS, INTENSITY_LABELS, REGION_WEIGHTS, REGIONS, masi, mmasi, severity
from melasma.settings import Settings

INTRO = """
Rate each photo with the **MASI** form: for every facial region the **area** involved (0-6, with
its % band), the **darkness** and the **homogeneity** of the pigment (0-4). Raters are blind to
each other: no one sees another rater's scores for a photo before submitting their own. When a
photo has all its ratings, the consensus (mean MASI) and the agreement statistics appear under
*Agreement*; *Export* hands the consensus labels to the **Train** tab.
"""
REGION_LABELS: dict[str, str] = {
    "forehead": "Forehead", "right_malar": "Right malar", "left_malar": "Left malar", "chin": "Chin",
}
AREA_CHOICES = [(f"{score} · {band}", score) for score, band in AREA_BANDS.items()]
INTENSITY_CHOICES = [(f"{score} · {label}", score) for score, label in INTENSITY_LABELS.items()]

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Turn the one-line ValueErrors of the annotation layer into gr.Error pop-ups."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ValueError as error:
            raise gr.Error(str(error), print_exception=False) from None

    return wrapper  # type: ignore[return-value]


def live_scores(*values: int | None) -> str:
    """The entry's MASI and mMASI as the form is filled in (Markdown)."""
    missing = sum(value is None for value in values)
    if missing:
        return f"MASI - · mMASI - ({missing} of {len(values)} scores still to choose)"
    scores = workflow.scores_from_values(values)
    value = masi(scores)
    return f"**MASI {value:.1f}** ({severity(value)}) · **mMASI {mmasi(scores):.1f}**"


def _report_markdown(report: dict[str, Any]) -> str:
    lines = [f"**{report['complete']} of {report['images']} photos fully rated** "
             f"({report['ratings_per_image']} ratings each)."]
    if "masi_icc" in report:
        def fmt(entry: dict[str, float | None]) -> str:
            if entry["icc"] is None:
                return "n/a (no variance)"
            return f"{entry['icc']:.3f} (95% CI {entry['ci_low']:.3f} to {entry['ci_high']:.3f})"

        lines += ["", "| statistic | value |", "|---|---|",
                  f"| MASI ICC(2,1), single rater | {fmt(report['masi_icc']['2,1'])} |",
                  f"| MASI ICC(2,k), mean of raters | {fmt(report['masi_icc']['2,k'])} |"]
        lines += [f"| {REGION_LABELS[r]} ICC(2,1) of A x (D + H) | {fmt(e)} |"
                  for r, e in report["region_icc"].items()]
        bins = report["bins"]
        lines += [f"| severity bins: mean quadratic-weighted kappa | {bins['weighted_kappa']} |",
                  f"| severity bins: Krippendorff's alpha (ordinal) | {bins['krippendorff_alpha']} |"]
    else:
        lines.append(report["note"])
    lines += ["", "| rater | rated | still open |", "|---|---|---|"]
    lines += [f"| {name} | {p['rated']} | {p['remaining']} |" for name, p in report["progress"].items()]
    queue = report["adjudication_queue"]
    lines += ["", f"**Adjudication queue: {len(queue)} photo(s)**"]
    lines += [f"- `{item['image_id']}` MASI {item['masi']:.1f}: {'; '.join(item['reasons'])}"
              for item in queue]
    return "\n".join(lines)


@dataclass
class AnnotateTab:
    """The tab's state and components; `export_path` holds the latest exported manifest."""

    settings: Settings
    store: RatingStore
    photos_dir: Path
    rater: gr.Dropdown
    image_id: gr.Textbox
    image: gr.Image
    scores: list[gr.Radio]
    export_path: gr.Textbox

    # identity -------------------------------------------------------------------------------
    def resolve_rater(self, chosen: str | None, request: gr.Request | None) -> str:
        """The signed-in user when sign-in is on, else the chosen name; must be a configured rater."""
        username = getattr(request, "username", None) if request is not None else None
        if username is not None:
            if chosen and chosen != username:
                raise AnnotationError(f"signed in as {username!r}; cannot act as rater {chosen!r}")
            chosen = username
        elif self.settings.auth:
            raise AnnotationError("sign in first: rating needs a signed-in rater")
        return workflow.check_rater(chosen, self.settings)

    # actions --------------------------------------------------------------------------------
    def add_photos(
        self, files: list[str] | None, patient_id: str | None, visit_date: str | None
    ) -> dict[str, object]:
        """Ingest uploaded photos and zips; the summary lists new, duplicate and refused files."""
        if not files:
            raise AnnotationError("add at least one photo or zip of photos")
        summary = ingest(
            self.store, self.photos_dir, files, patient_id=patient_id, visit_date=visit_date,
            max_bytes=self.settings.max_upload_mb * 1024 * 1024,
        )
        return summary.as_dict()

    def next_for(self, rater: str) -> tuple[str, str | None, str]:
        """(image id, photo path, status) of the rater's next photo; ("", None, status) when done."""
        record = workflow.next_image(self.store, self.settings, rater)
        done = len(self.store.rated_by(rater))
        if record is None:
            return "", None, f"**{rater}**: no photos left to rate ({done} rated). Thank you!"
        path = str(photo_path(self.photos_dir, record.id))
        return record.id, path, f"**{rater}**: photo `{record.id}` · {done} rated so far"

    def next_image(self, rater: str | None, request: gr.Request) -> tuple[str, str | None, str]:
        """The next photo this rater has not rated."""
        return self.next_for(self.resolve_rater(rater, request))

    def submit_rating(
        self, request: gr.Request, rater: str | None, image_id: str | None, *values: int | None
    ) -> tuple[dict[str, object], str, str | None, str]:
        """Store (or revise) the rater's 12 scores; returns the entry and the next photo."""
        name = self.resolve_rater(rater, request)
        if not image_id:
            raise AnnotationError("no photo selected: press Next photo first")
        result = workflow.submit(
            self.store, self.settings, name, image_id, workflow.scores_from_values(values)
        )
        entry = {"image_id": result.image_id, "rater": result.rater, "masi": result.masi,
                 "mmasi": result.mmasi, "revision": result.revision}
        return (entry, *self.next_for(name))

    def load_own(
        self, rater: str | None, image_id: str | None, request: gr.Request
    ) -> tuple[Any, ...]:
        """Open one of the rater's own rated photos with their scores, to revise them."""
        name = self.resolve_rater(rater, request)
        rating = workflow.own_rating(self.store, self.settings, name, image_id or "")
        if rating is None:
            raise AnnotationError(f"{name} has not rated photo {image_id!r}")
        values = [rating.scores[region][item] for region, item in SCORE_FIELDS]
        status = f"**{name}**: revising your rating of `{image_id}` (revision {rating.revision})"
        return (image_id, str(photo_path(self.photos_dir, rating.image_id)), status, *values)

    def own_choices(self, rater: str | None, request: gr.Request) -> gr.Dropdown:
        """The photos this rater has rated (to pick one to revise)."""
        try:
            name = self.resolve_rater(rater, request)
        except AnnotationError:
            return gr.Dropdown(choices=[], value=None)
        return gr.Dropdown(choices=self.store.rated_by(name), value=None)

    def agreement(self) -> tuple[dict[str, Any], Any]:
        """Dashboard numbers (fully rated photos only) and the rater-vs-rater scatter plot."""
        report = agreement_report(self.store, self.settings)
        rows = workflow.consensus_rows(self.store, self.settings)
        figure = None
        if rows:
            table, names = rating_table(rows, self.settings.ratings_per_image)
            figure = rater_scatter(table, names)
        return report, figure

    def export(self) -> tuple[list[str], str]:
        """Write an export folder; returns the two CSV paths and the manifest for the Train tab."""
        result = write_export(self.store, self.settings, self.photos_dir)
        return [str(result.manifest), str(result.ratings)], str(result.manifest)


def _score_form() -> list[gr.Radio]:
    """The 12 score inputs, regions in a 2 x 2 grid, returned in `SCORE_FIELDS` order."""
    radios: dict[str, list[gr.Radio]] = {}
    with gr.Row():
        for column in (REGIONS[0::2], REGIONS[1::2]):
            with gr.Column(min_width=280):
                for region in column:
                    with gr.Group():
                        gr.Markdown(f"**{REGION_LABELS[region]}** (weight {REGION_WEIGHTS[region]:g})")
                        radios[region] = [
                            gr.Radio(AREA_CHOICES if item == "area" else INTENSITY_CHOICES, value=None,
                                     label=f"{REGION_LABELS[region]} {item}",
                                     elem_id=f"annotate-{region}-{item}")
                            for item in ("area", "darkness", "homogeneity")
                        ]
    return [radio for region in REGIONS for radio in radios[region]]


def build_annotate_tab(settings: Settings) -> AnnotateTab:
    """Lay out the Annotate tab inside the caller's open gr.Blocks / gr.Tab and wire its events."""
    store = RatingStore(settings.data_dir / "annotations.sqlite")
    gr.Markdown(INTRO)
    signed_in = bool(settings.auth)
    rater = gr.Dropdown(
        list(settings.raters), value=None, label="Rater", visible=not signed_in,
        info="Who is rating (raters are set with MELASMA_RATERS)",
    )
    with gr.Tabs():
        with gr.Tab("Rate", id="annotate-rate"):
            with gr.Row():
                with gr.Column(scale=2):
                    status = gr.Markdown("Choose your rater name and press **Next photo**.", label="Status")
                    image = gr.Image(type="filepath", label="Photo", interactive=False, height=560,
                                     buttons=["fullscreen"])
                    image_id = gr.Textbox(label="Photo id", interactive=False)
                    with gr.Row():
                        next_button = gr.Button("Next photo")
                        own = gr.Dropdown([], value=None, label="Revise one of my ratings")
                with gr.Column(scale=3):
                    scores = _score_form()
                    live = gr.Markdown(live_scores(*[None] * len(SCORE_FIELDS)), label="Live score")
                    submit = gr.Button("Submit rating", variant="primary")
                    entry = gr.JSON(label="Your last submitted entry")
        with gr.Tab("Add photos", id="annotate-ingest"):
            files = gr.File(file_count="multiple", file_types=["image", ".zip"], type="filepath",
                            label="Photos or zip archives (metadata is stripped from stored copies)")
            with gr.Row():
                patient = gr.Textbox(label="Patient id (optional)", max_length=64)
                visit = gr.Textbox(label="Visit date (optional)", placeholder="YYYY-MM-DD")
            add = gr.Button("Add photos", variant="primary")
            added = gr.JSON(label="Result")
        with gr.Tab("Agreement", id="annotate-agreement"):
            refresh = gr.Button("Refresh agreement")
            summary = gr.Markdown()
            plot = gr.Plot(label="Rater vs rater MASI")
            with gr.Accordion("All numbers (JSON)", open=False):
                numbers = gr.JSON(label="Agreement numbers")
        with gr.Tab("Export", id="annotate-export"):
            gr.Markdown("Exports fully rated photos: a training manifest (consensus MASI and "
                        "severity) and every rating in long format.")
            export_button = gr.Button("Export and send to Train", variant="primary")
            downloads = gr.File(label="CSV files", file_count="multiple", interactive=False)
            export_path = gr.Textbox(label="Manifest handed to the Train tab", interactive=False)

    tab = AnnotateTab(settings, store, settings.photos_dir, rater, image_id, image, scores,
                      export_path)
    quiet: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden"}

    def clear_form() -> list[None]:
        return [None] * len(scores)

    gr.on([radio.change for radio in scores], live_scores, scores, live, concurrency_limit=None,
          trigger_mode="always_last", **quiet)
    add.click(user_errors(tab.add_photos), [files, patient, visit], added, api_name="ingest")
    gr.on([next_button.click, rater.change], user_errors(tab.next_image), rater,
          [image_id, image, status], api_name="next_image", concurrency_limit=None
          ).success(clear_form, None, scores, **quiet
          ).then(tab.own_choices, rater, own, **quiet)
    submit.click(user_errors(tab.submit_rating), [rater, image_id, *scores],
                 [entry, image_id, image, status], api_name="submit_rating", concurrency_limit=None
                 ).success(clear_form, None, scores, **quiet
                 ).then(tab.own_choices, rater, own, **quiet)
    own.input(user_errors(tab.load_own), [rater, own], [image_id, image, status, *scores], **quiet)
    refresh.click(user_errors(tab.agreement), None, [numbers, plot], api_name="agreement"
                  ).success(_report_markdown, numbers, summary, **quiet)
    export_button.click(user_errors(tab.export), None, [downloads, export_path], api_name="export")
    return tab
