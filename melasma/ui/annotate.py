"""The Annotate tab: rate photos blind (raters), add photos, follow every photo, read agreement,
adjudicate and export (coordinators). Every handler checks the user's role (``melasma.access``).

API (gradio_client): ``/ingest`` (files, patient id, visit date) -> summary; ``/next_image``
(rater) -> (image id, photo, status); ``/submit_rating`` (rater, image id, 12 scores) -> (entry,
next image id, next photo, status); ``/agreement`` -> (numbers, scatter plot); ``/export`` ->
(the two CSV files, manifest path); ``/photos`` -> per-photo table; ``/adjudicate`` (image id,
MASI, reason) and ``/request_rerate`` (image id, rater, reason) -> message. Scores are area,
darkness, homogeneity for forehead, patient's right cheek, patient's left cheek and chin, in that
order. When sign-in is configured the rater is the signed-in user; in the local mode the rater name
must be one of the configured raters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from PIL import Image

from annotation import workflow
from annotation.agreement import agreement_report, machine_agreement, machine_table, rating_table
from annotation.export import class_counts, clear_count, training_warnings
from annotation.export import export as write_export
from annotation.ingest import ingest
from annotation.plots import machine_scatter, rater_scatter
from annotation.store import SCORE_FIELDS, AnnotationError, RatingStore
from annotation.workflow import RatingPolicy, Submission, Workflow
from melasma.access import Role, anonymous, local_mode, require, require_rater, role_of, visitor_only
from melasma.data.synthetic_marks import store_mix, synthetic_note
from melasma.layout import photo_path
from melasma.lesions.machine_rater import machine_scores
from melasma.masi import AREA_BANDS, INTENSITY_LABELS, REGION_WEIGHTS, REGIONS, masi, mmasi, shown_class
from melasma.regions import FaceNotFound, draw_regions, find_regions
from melasma.settings import Settings
from melasma.ui import annotate_text as text
from melasma.ui.components import PhotoStage, Shown, delete_uploads, user_errors
from melasma.ui.lanes import RATING_LANE

INTRO = """
Rate each photo with the **MASI** form: for every facial region the **area** involved (0-6, with
its % band), the **darkness** and the **homogeneity** of the pigment (0-4). Regions are named from
the patient's side: the patient's right cheek is on your left, as in the photo. Raters are blind to
each other; once a photo has all its ratings it is closed, and only a coordinator can change the
outcome (adjudicate or ask for a re-rating).
"""
RATER_HELP = "The raters of this study, as the coordinator set them up. Pick your own name."
AREA_CHOICES = [(f"{score} · {band}", score) for score, band in AREA_BANDS.items()]
INTENSITY_CHOICES = [(f"{score} · {label}", score) for score, label in INTENSITY_LABELS.items()]
LOCAL_COORDINATOR = "local coordinator"
#: The rating photo's height: the screen's, less the controls above it in its sticky column (440 px at most).
PHOTO_HEIGHT = "min(440px, calc(100vh - 260px))"
#: The ingest summary's fields per file, as the result table names them.
INGEST_HEADERS = {"file": "file", "outcome": "outcome", "reason": "reason", "photo_id": "photo id"}
COORDINATOR_TABS = ("annotate-ingest", "annotate-photos", "annotate-agreement", "annotate-adjudicate",
                    "annotate-export")


def _split(values: tuple[Any, ...]) -> tuple[list[Any], list[str]]:
    """(12 scores, regions marked not visible) from the form's 12 radios then 4 checkboxes."""
    n = len(SCORE_FIELDS)
    return list(values[:n]), [region for region, flag in zip(REGIONS, values[n:]) if flag]


def live_scores(*values: Any) -> str:
    """The entry's MASI and mMASI as the form is filled in (Markdown); area 0 counts D and H as 0,
    a region not visible counts 0."""
    scores, hidden = _split(values)
    filled = text.fill_zero_areas(text.fill_hidden(scores, hidden))
    missing = sum(value is None for value in filled)
    if missing:
        return f"MASI - · mMASI - ({missing} of {len(filled)} scores still to choose)"
    entry = workflow.scores_from_values(filled)
    value = masi(entry)
    return f"**MASI {value:.1f}** ({shown_class(value)}) · **mMASI {mmasi(entry):.1f}**"


def _username(request: gr.Request | None) -> str | None:
    return getattr(request, "username", None) if request is not None else None


@dataclass(frozen=True)
class RateScreen:
    """The rating screen: the photo beside the MASI form (12 score radios in `SCORE_FIELDS` order, 4
    "not visible" boxes in `REGIONS` order) and the rater's photos still open for revision."""

    rater: gr.Dropdown
    next_button: gr.Button
    status: gr.Markdown
    outlines: gr.Checkbox
    image: gr.Image
    image_id: gr.Textbox
    scores: list[gr.Radio]
    hidden: list[gr.Checkbox]
    live: gr.Markdown
    submit: gr.Button
    result: gr.Markdown
    own: gr.Gallery
    own_ids: gr.State

    @property
    def form(self) -> list[gr.Radio | gr.Checkbox]:
        """The 12 score radios, then the 4 "not visible" boxes."""
        return [*self.scores, *self.hidden]

    @property
    def photo(self) -> list[gr.components.Component]:
        """What a new photo sets: its id, the picture, the status line and the form."""
        return [self.image_id, self.image, self.status, *self.form]

    def blank_form(self) -> Shown:
        """No score chosen, every region visible."""
        return {**{radio: None for radio in self.scores}, **{box: False for box in self.hidden}}


@dataclass(frozen=True)
class IngestScreen:
    """Add photos: the uploads, their patient and visit, and the outcome per file."""

    files: gr.File
    patient: gr.Textbox
    visit: gr.Textbox
    add: gr.Button
    table: gr.Dataframe
    summary: gr.JSON


@dataclass(frozen=True)
class PhotosScreen:
    """Every photo in one table."""

    refresh: gr.Button
    table: gr.Dataframe


@dataclass(frozen=True)
class AgreementScreen:
    """The raters' agreement, and the image-derived MASI as a machine rater."""

    refresh: gr.Button
    summary: gr.Markdown
    plot: gr.Plot
    numbers: gr.JSON
    machine_button: gr.Button
    machine_summary: gr.Markdown
    machine_plot: gr.Plot
    machine_numbers: gr.JSON


@dataclass(frozen=True)
class AdjudicateScreen:
    """One closed photo: every rater's scores, the coordinator's decision and the log."""

    case: gr.Dropdown
    refresh: gr.Button
    photo: gr.Image
    summary: gr.Markdown
    scores: gr.Dataframe
    verdict: gr.Number
    verdict_reason: gr.Textbox
    decide: gr.Button
    rerater: gr.Dropdown
    rerate_reason: gr.Textbox
    rerate: gr.Button
    decided: gr.Markdown
    log: gr.Dataframe


@dataclass(frozen=True)
class ExportScreen:
    """Class counts, the export and the manifest handed to the Train tab."""

    counts: gr.Markdown
    check: gr.Button
    export: gr.Button
    downloads: gr.File
    path: gr.Textbox


@dataclass(frozen=True)
class ApiControls:
    """Hidden twins of the rating buttons: the `/next_image` and `/submit_rating` endpoints."""

    next_image: gr.Button
    submit: gr.Button
    entry: gr.JSON
    extra: gr.Textbox
    not_visible: gr.CheckboxGroup


@dataclass(frozen=True)
class AnnotateTab:
    """The tab's state, its screens' components and its handlers; `tabs` holds the sub-tabs by id (the
    app shell wires `welcome` to show each role its own)."""

    settings: Settings
    store: RatingStore
    banner: gr.Markdown
    tabs: dict[str, gr.Tab]
    rate_screen: RateScreen
    ingest_screen: IngestScreen
    photos_screen: PhotosScreen
    agreement_screen: AgreementScreen
    adjudicate_screen: AdjudicateScreen
    export_screen: ExportScreen
    api: ApiControls
    stage: PhotoStage = field(default_factory=PhotoStage)

    @property
    def photos_dir(self) -> Path:
        """Where the stored photos are."""
        return self.settings.photos_dir

    @property
    def export_path(self) -> gr.Textbox:
        """The latest exported manifest (the Train tab takes it)."""
        return self.export_screen.path

    @property
    def workflow(self) -> Workflow:
        """The rating workflow of this store under the settings' rating policy."""
        return Workflow(self.store, RatingPolicy.from_settings(self.settings))

    # identity -------------------------------------------------------------------------------
    def rater_for(self, chosen: str | None, request: gr.Request | None) -> str:
        """The rater this user rates as (their login when signed in; the chosen name locally)."""
        return require_rater(_username(request), chosen, self.settings)

    def coordinator(self, request: gr.Request | None) -> str:
        """The coordinator's name for the audit log, or AccessDenied."""
        username = _username(request)
        require(Role.COORDINATOR, username, self.settings)
        return username or LOCAL_COORDINATOR

    def welcome(self, request: gr.Request) -> Shown:
        """The banner naming the user's role, and only the sub-tabs that role may use."""
        username = _username(request)
        role = role_of(username, self.settings)
        if local_mode(self.settings):
            banner = ("**Local single-user mode:** nobody signs in, so you are the coordinator and may "
                      "rate as any rater of this study (pick the name under *Rate*).")
        elif visitor_only(self.settings):
            banner = text.VISITOR_ONLY_BANNER
        elif role is Role.VISITOR and anonymous(username):
            banner = "Not signed in: you may use **Predict**. Raters and coordinators sign in first."
        else:
            banner = f"Signed in as **{username}** · role: **{role}**."
        shown: Shown = {
            self.banner: banner,
            self.tabs["annotate-rate"]: gr.Tab(visible=username in self.settings.raters or local_mode(self.settings)),
        }
        shown.update({self.tabs[key]: gr.Tab(visible=role is Role.COORDINATOR) for key in COORDINATOR_TABS})
        return shown

    # photos for the screen ------------------------------------------------------------------
    def view(self, image_id: str, outlines: bool = False) -> str:
        """A copy of the stored photo that Gradio may serve (stored photos are never served),
        with the four regions outlined when asked and a face is found."""
        source = photo_path(self.photos_dir, image_id)
        if outlines:
            with Image.open(source) as photo:
                rgb = photo.convert("RGB")
            try:
                drawn = draw_regions(rgb, find_regions(rgb))
            except FaceNotFound:
                return self.stage(source)
            target = Path(self.stage(source))
            drawn.save(target, format="JPEG", quality=90)
            return str(target)
        return self.stage(source)

    def redraw(self, image_id: str | None, outlines: bool, request: gr.Request) -> Any:
        """UI: the current photo again, with or without the region outlines."""
        if not image_id:
            return gr.skip()
        require(Role.RATER, _username(request), self.settings)
        return self.view(image_id, outlines)

    # coordinator: ingest -------------------------------------------------------------------
    def add_photos(
        self, files: list[str] | None, patient_id: str | None, visit_date: str | None,
        request: gr.Request,
    ) -> dict[str, object]:
        """Ingest uploaded photos and zips; the summary has one outcome per file. The raw uploads
        (with their GPS and camera metadata) are deleted once the clean copies are stored."""
        self.coordinator(request)
        if not files:
            raise AnnotationError("add at least one photo or zip of photos")
        try:
            summary = ingest(
                self.store, self.photos_dir, files, patient_id=patient_id, visit_date=visit_date,
                max_bytes=self.settings.max_upload_mb * 1024 * 1024,
                max_batch_pixels=self.settings.max_upload_megapixels * 1_000_000,
            )
        finally:
            delete_uploads(files)
        return summary.as_dict()

    # rater: next / submit / revise ----------------------------------------------------------
    def next_for(self, rater: str, outlines: bool = False) -> tuple[str, str | None, str]:
        """(image id, photo, status) of the rater's next photo; ("", None, status) when done."""
        record = self.workflow.next_image(rater)
        done = len(self.store.rated_by(rater))
        if record is None:
            return "", None, f"**{rater}**: no photos left to rate ({done} rated). Thank you!"
        again = record.id in self.store.rerate_requests(rater)
        note = " · a coordinator asked you to rate this photo again" if again else ""
        return record.id, self.view(record.id, outlines), f"**{rater}**: {done} rated so far{note}"

    def next_image(self, rater: str | None, request: gr.Request) -> tuple[str, str | None, str]:
        """API: the next photo this rater has not rated."""
        return self.next_for(self.rater_for(rater, request))

    def submit(
        self, name: str, image_id: str | None, values: list[int | None], hidden: list[str]
    ) -> Submission:
        """Store (or revise, while the photo is open) the rater's 12 scores; `hidden` regions are
        "not visible in this photo"."""
        if not image_id:
            raise AnnotationError("no photo selected: press Next photo first")
        filled = text.fill_zero_areas(text.fill_hidden(values, hidden))
        return self.workflow.submit(name, image_id, workflow.scores_from_values(filled), hidden=hidden)

    def submit_rating(
        self, request: gr.Request, rater: str | None, image_id: str | None, *values: Any
    ) -> tuple[dict[str, object], str, str | None, str]:
        """API: 12 scores, then `extra` (must stay empty: a 13th score lands there and is refused),
        then `not_visible` (regions not visible in the photo, default none)."""
        name = self.rater_for(rater, request)
        *scores, extra, hidden = values
        if extra not in (None, ""):
            raise AnnotationError(f"expected {len(SCORE_FIELDS)} scores, got more")
        hidden = list(hidden or [])
        missing = text.missing_message(text.fill_zero_areas(text.fill_hidden(scores, hidden)))
        if missing:
            raise AnnotationError(f"expected {len(SCORE_FIELDS)} scores: {missing}")
        result = self.submit(name, image_id, scores, hidden)
        entry = {"image_id": result.image_id, "rater": result.rater, "masi": result.masi,
                 "mmasi": result.mmasi, "revision": result.revision}
        return (entry, *self.next_for(name))

    def own_open(self, name: str) -> tuple[list[tuple[str, str]], list[str]]:
        """Thumbnails (with rating dates) of the rater's photos that are still open, newest first."""
        counts = self.store.rating_counts()
        ids = [i for i in reversed(self.store.rated_by(name))
               if counts.get(i, 0) < self.settings.ratings_per_image][:24]
        gallery = []
        for image_id in ids:
            rating = self.store.get_rating(image_id, name)
            when = rating.updated_at[:16].replace("T", " ") if rating else ""
            gallery.append((self.stage.thumbnail(photo_path(self.photos_dir, image_id)), f"rated {when} UTC"))
        return gallery, ids

    # UI events: one event loads the photo AND resets the form (no second event races a click)
    def _next_photo(self, name: str, outlines: bool) -> Shown:
        """The rater's next photo with a blank form, and their photos still open for revision."""
        screen = self.rate_screen
        image_id, photo, status = self.next_for(name, outlines)
        gallery, ids = self.own_open(name)
        return {screen.image_id: image_id, screen.image: photo, screen.status: status, **screen.blank_form(),
                screen.own: gallery, screen.own_ids: ids}

    def show_next(self, rater: str | None, outlines: bool, request: gr.Request) -> Shown:
        """UI: next photo, a blank form, the revise list."""
        return {**self._next_photo(self.rater_for(rater, request), outlines), self.rate_screen.result: ""}

    def ui_submit(
        self, request: gr.Request, rater: str | None, image_id: str | None, outlines: bool,
        *values: int | None,
    ) -> Shown:
        """UI: store the scores and show the next photo; a refusal (a score missing, ...) keeps the form."""
        scores, hidden = _split(values)
        missing = text.missing_message(text.fill_zero_areas(text.fill_hidden(scores, hidden)))
        if missing:
            raise AnnotationError(missing)
        name = self.rater_for(rater, request)
        result = self.submit(name, image_id, scores, hidden)
        shown = self._next_photo(name, outlines)
        sentence = text.result_sentence(result, next_ready=bool(shown[self.rate_screen.image_id]))
        return {**shown, self.rate_screen.result: sentence}

    def load_own(
        self, rater: str | None, ids: list[str], outlines: bool, evt: gr.SelectData, request: gr.Request
    ) -> Shown:
        """UI: reopen one of the rater's still-open photos. Signed in, the form shows their own
        scores; in the local mode (no proof of who is at the keyboard) the form starts blank."""
        screen = self.rate_screen
        name = self.rater_for(rater, request)
        image_id = ids[evt.index]
        rating = self.workflow.own_rating(name, image_id)
        if rating is None:
            raise AnnotationError("you have not rated this photo")
        if local_mode(self.settings):
            form = screen.blank_form()
            note = "rate it again; your new scores replace the earlier ones"
        else:
            form = {radio: rating.scores[region][item] for radio, (region, item) in zip(screen.scores, SCORE_FIELDS)}
            form.update({box: region in rating.hidden for box, region in zip(screen.hidden, REGIONS)})
            note = f"your scores (revision {rating.revision}) are in the form"
        return {screen.image_id: image_id, screen.image: self.view(image_id, outlines),
                screen.status: f"**{name}**: revising a photo you rated · {note}", **form}

    # coordinator: photos, agreement, adjudication, export -------------------------------------
    def photos(self, request: gr.Request) -> pd.DataFrame:
        """API/UI: one row per photo: thumbnail, patient, visit, ratings, consensus, bin, spread, status."""
        self.coordinator(request)
        rows = {row.image.id: row for row in self.workflow.consensus_rows()}
        images = self.store.images()
        thumbs = {i.id: f"/gradio_api/file={self.stage.thumbnail(photo_path(self.photos_dir, i.id), 96)}"
                  for i in images[-200:]}
        return text.photo_table(images, self.store.rating_counts(), rows,
                                self.settings.ratings_per_image, thumbs)

    def agreement(self, request: gr.Request) -> tuple[dict[str, Any], Any]:
        """Dashboard numbers (fully rated photos only) and the rater-vs-rater scatter plot."""
        self.coordinator(request)
        report = agreement_report(self.store, self.settings).to_json()
        report["synthetic_photos"] = store_mix(self.settings.layout, (i.id for i in self.store.images())).synthetic
        rows = self.workflow.consensus_rows()
        figure = None
        if rows:
            table, names = rating_table(rows, self.settings.ratings_per_image)
            figure = rater_scatter(table, names)
        return report, figure

    def machine_agreement(self, request: gr.Request) -> tuple[dict[str, Any], Any, str]:
        """The image-derived MASI as a non-human rater: its agreement with the consensus (coordinators only;
        raters never see it). New photos are analysed once and cached beside the photos."""
        self.coordinator(request)
        rows = self.workflow.consensus_rows()
        scores = machine_scores([row.image.id for row in rows], self.photos_dir,
                                self.settings.cache_dir / "machine_masi.json")
        result = machine_agreement(rows, {key: score.masi for key, score in scores.items()})
        table = machine_table(rows, {key: score.masi for key, score in scores.items()})
        figure = machine_scatter(table) if len(table) else None
        return result.to_json(), figure, text.machine_markdown(result)

    def closed_choices(self, request: gr.Request, keep: str | None = None) -> gr.Dropdown:
        """Closed photos for the Adjudicate screen, disputed ones first (`keep` stays selected)."""
        self.coordinator(request)
        order = {"disputed": 0, "re-rating": 1, "adjudicated": 2, "agreed": 3}
        rows = sorted(self.workflow.consensus_rows(), key=lambda r: order[r.status])
        choices = [((f"{row.status} · MASI {row.label_masi:.1f} · {row.image.patient_id or 'no patient id'}"
                     f" · {row.image.id}"), row.image.id) for row in rows]
        return gr.Dropdown(choices=choices, value=keep if keep in {value for _, value in choices} else None)

    def relabel_case(self, image_id: str | None, request: gr.Request) -> gr.Dropdown:
        """After a decision: the list again, the decided photo still chosen under its new status."""
        return self.closed_choices(request, keep=image_id)

    def open_case(self, image_id: str | None, request: gr.Request) -> Shown:
        """The disputed photo, every rater's scores, the consensus and the decisions so far."""
        self.coordinator(request)
        if not image_id:
            raise AnnotationError("choose a photo first")
        row = self.workflow.closed_row(image_id)
        summary = (f"Consensus MASI **{row.consensus.masi:.1f}** ({shown_class(row.consensus.masi)}), spread "
                   f"{row.consensus.spread:.1f} · status **{row.status}**"
                   + (f" · adjudicated MASI **{row.adjudicated:.1f}**" if row.adjudicated is not None else "")
                   + ("\n\n" + "; ".join(row.reasons) if row.reasons else ""))
        screen = self.adjudicate_screen
        return {screen.photo: self.view(image_id), screen.summary: summary,
                screen.scores: text.scores_table(row.ratings),
                screen.rerater: gr.Dropdown(choices=[r.rater for r in row.ratings], value=None),
                screen.log: text.decisions_table(self.store.adjudications(image_id)),
                screen.verdict: round(row.label_masi, 1)}

    def adjudicate(self, image_id: str | None, value: float | None, reason: str | None,
                   request: gr.Request) -> str:
        """API/UI: record the coordinator's MASI for a closed photo (logged with the reason)."""
        who = self.coordinator(request)
        if not image_id:
            raise AnnotationError("choose a closed photo first")
        if value is None:
            raise AnnotationError("enter the adjudicated MASI (0-48)")
        masi = float(value)
        decision = self.workflow.adjudicate(who, image_id or "", masi, reason or "")
        return (f"Recorded: {who} set MASI {masi:.1f} ({shown_class(masi)}) "
                f"for this photo (was {decision.old_masi:.1f}).")

    def request_rerate(self, image_id: str | None, rater: str | None, reason: str | None,
                       request: gr.Request) -> str:
        """API/UI: ask one rater to rate a closed photo again (it comes first in their queue)."""
        who = self.coordinator(request)
        if not image_id:
            raise AnnotationError("choose a closed photo first")
        if not rater:
            raise AnnotationError("choose the rater to ask")
        self.workflow.request_rerate(who, image_id or "", rater, reason or "")
        return f"Recorded: {who} asked {rater} to rate this photo again; it is first in their queue."

    def decisions(self, image_id: str | None, request: gr.Request) -> pd.DataFrame:
        """The adjudication log of one photo."""
        self.coordinator(request)
        return text.decisions_table(self.store.adjudications(image_id) if image_id else [])

    def export_preview(self, request: gr.Request) -> str:
        """Class counts of what an export would write, with a warning when it could not train."""
        self.coordinator(request)
        rows = self.workflow.consensus_rows()
        counts = class_counts(rows)
        note = synthetic_note(self.settings.layout, (row.image.id for row in rows if row.trainable))
        counted = text.class_counts_markdown(counts, training_warnings(counts), clear_count(rows))
        return "\n\n".join(filter(None, [note, counted]))

    def export(self, request: gr.Request) -> tuple[list[str], str]:
        """Write an export folder; returns the two CSV files and the manifest for the Train tab."""
        self.coordinator(request)
        result = write_export(self.store, self.settings, self.photos_dir)
        files = [self.stage(result.manifest), self.stage(result.ratings)]
        return files, str(result.manifest)


def _region_scores(region: str) -> tuple[list[gr.Radio], gr.Checkbox]:
    """One region's area, darkness and homogeneity inputs under its name and weight, and its
    "not visible in this photo" box."""
    label = text.REGION_LABELS[region].capitalize()
    with gr.Group():
        with gr.Row(equal_height=True):
            gr.Markdown(f"**{label}** (weight {REGION_WEIGHTS[region]:g})", elem_classes="melasma-region")
            hidden = gr.Checkbox(False, label="not visible", elem_id=f"annotate-{region}-hidden",
                                 elem_classes="melasma-hidden", min_width=90, scale=0)
        radios = [gr.Radio(AREA_CHOICES if item == "area" else INTENSITY_CHOICES, value=None,
                           label=f"{label}: {item}", elem_id=f"annotate-{region}-{item}",
                           elem_classes="melasma-score")
                  for item in ("area", "darkness", "homogeneity")]
    return radios, hidden


def _rate_screen(settings: Settings) -> RateScreen:
    """The photo (as tall as the screen allows: the whole face beside the form) and the MASI form,
    mirrored to the photo: the patient's right cheek on the viewer's left, the chin below."""
    with gr.Row():
        with gr.Column(scale=4, elem_classes="melasma-sticky"):
            with gr.Row(equal_height=True):
                rater = gr.Dropdown(list(settings.raters), value=None, label="Rater", visible=local_mode(settings),
                                    info=RATER_HELP, scale=3)
                next_button = gr.Button("Next photo", scale=1, min_width=100)
            status = gr.Markdown("Choose your rater name and press **Next photo**.")
            outlines = gr.Checkbox(False, label="Show region outlines (found automatically; "
                                   "the patient's right is on your left)", elem_id="annotate-outlines")
            image = gr.Image(type="filepath", label="Photo (corner button: full size)",
                             interactive=False, height=PHOTO_HEIGHT, buttons=["fullscreen", "download"],
                             elem_id="annotate-photo")
            image_id = gr.Textbox(label="Photo id", interactive=False, visible=False)
        with gr.Column(scale=8, elem_classes="melasma-form"):
            radios: dict[str, list[gr.Radio]] = {}
            boxes: dict[str, gr.Checkbox] = {}
            with gr.Row(equal_height=False):
                for region in ("right_malar", "forehead", "left_malar"):
                    with gr.Column(min_width=200):
                        radios[region], boxes[region] = _region_scores(region)
            with gr.Row(equal_height=False):
                with gr.Column(min_width=200):
                    live = gr.Markdown(live_scores(*[None] * len(SCORE_FIELDS)))
                    submit = gr.Button("Submit rating", variant="primary", elem_id="annotate-submit")
                with gr.Column(min_width=200):
                    radios["chin"], boxes["chin"] = _region_scores("chin")
                with gr.Column(min_width=200):
                    result = gr.Markdown(elem_id="annotate-result")
            with gr.Accordion("Revise one of my ratings (photos still open)", open=False):
                own = gr.Gallery(label="Photos you rated that still wait for other raters",
                                 columns=6, height=180, allow_preview=False)
                own_ids = gr.State([])
    return RateScreen(rater=rater, next_button=next_button, status=status, outlines=outlines, image=image,
                      image_id=image_id, scores=[radio for region, _ in SCORE_FIELDS[::3] for radio in radios[region]],
                      hidden=[boxes[region] for region in REGIONS], live=live, submit=submit, result=result,
                      own=own, own_ids=own_ids)


def _ingest_screen() -> IngestScreen:
    files = gr.File(file_count="multiple", file_types=["image", ".zip"], type="filepath",
                    label="Photos or zip archives (stored copies carry no metadata; uploads are deleted)",
                    elem_id="annotate-files")
    with gr.Row():
        patient = gr.Textbox(label="Patient id (optional)", max_length=64)
        visit = gr.Textbox(label="Visit date (optional)", placeholder="YYYY-MM-DD")
    add = gr.Button("Add photos", variant="primary")
    table = gr.Dataframe(headers=list(INGEST_HEADERS.values()), label="Result per file",
                         interactive=False, wrap=True, elem_id="annotate-ingest-result")
    return IngestScreen(files=files, patient=patient, visit=visit, add=add, table=table, summary=gr.JSON(visible=False))


def _photos_screen() -> PhotosScreen:
    refresh = gr.Button("Refresh")
    table = gr.Dataframe(headers=list(text.PHOTO_COLUMNS), datatype=text.PHOTO_DATATYPES, interactive=False,
                         wrap=True, label="Every photo", elem_id="annotate-photo-table")
    return PhotosScreen(refresh=refresh, table=table)


def _agreement_screen() -> AgreementScreen:
    refresh = gr.Button("Refresh agreement")
    summary = gr.Markdown()
    plot = gr.Plot(label="Rater vs rater MASI")
    with gr.Accordion("All numbers (JSON)", open=False):
        numbers = gr.JSON(label="Agreement numbers")
    machine_button = gr.Button("Compare with the image-derived MASI (machine rater)")
    machine_summary = gr.Markdown()
    machine_plot = gr.Plot(label="Machine vs consensus MASI")
    with gr.Accordion("Machine rater numbers (JSON)", open=False):
        machine_numbers = gr.JSON(label="Machine vs consensus")
    return AgreementScreen(refresh=refresh, summary=summary, plot=plot, numbers=numbers,
                           machine_button=machine_button, machine_summary=machine_summary,
                           machine_plot=machine_plot, machine_numbers=machine_numbers)


def _adjudicate_screen() -> AdjudicateScreen:
    with gr.Row(equal_height=True):
        case = gr.Dropdown([], value=None, label="Closed photo (disputed first)", scale=4, allow_custom_value=True)
        refresh = gr.Button("Refresh", scale=1, elem_id="annotate-adjudicate-refresh")
    with gr.Row():
        with gr.Column(scale=2):
            photo = gr.Image(type="filepath", label="Photo", interactive=False, height=360, buttons=["fullscreen"])
        with gr.Column(scale=3):
            summary = gr.Markdown()
            scores = gr.Dataframe(label="Each rater's scores", interactive=False,
                                  headers=["rater", *text.REGION_LABELS.values(), "MASI", "revision"])
            with gr.Row(equal_height=True):
                verdict = gr.Number(label="Adjudicated MASI", minimum=0, maximum=48, value=None)
                verdict_reason = gr.Textbox(label="Reason (kept in the log)", max_length=500, scale=2)
                decide = gr.Button("Record adjudicated MASI", variant="primary")
            with gr.Row(equal_height=True):
                rerater = gr.Dropdown([], value=None, label="Rater to ask again", allow_custom_value=True)
                rerate_reason = gr.Textbox(label="Reason (kept in the log)", max_length=500, scale=2)
                rerate = gr.Button("Ask for a re-rating")
            decided = gr.Markdown()
    log = gr.Dataframe(label="Decisions on this photo (who, when, before, after, why)", interactive=False,
                       headers=list(text.DECISION_COLUMNS), elem_id="annotate-decisions")
    return AdjudicateScreen(case=case, refresh=refresh, photo=photo, summary=summary, scores=scores, verdict=verdict,
                            verdict_reason=verdict_reason, decide=decide, rerater=rerater,
                            rerate_reason=rerate_reason, rerate=rerate, decided=decided, log=log)


def _export_screen() -> ExportScreen:
    gr.Markdown("Exports closed photos: a training manifest (label = adjudicated MASI when there "
                "is one, else the raters' mean; `status` and `adjudicated` columns) and every rating.")
    counts = gr.Markdown(elem_id="annotate-counts")
    with gr.Row():
        check = gr.Button("Check class counts")
        export = gr.Button("Export and send to Train", variant="primary")
    downloads = gr.File(label="CSV files", file_count="multiple", interactive=False)
    path = gr.Textbox(label="Manifest handed to the Train tab", interactive=False)
    return ExportScreen(counts=counts, check=check, export=export, downloads=downloads, path=path)


def _api_controls() -> ApiControls:
    return ApiControls(
        next_image=gr.Button(visible=False), submit=gr.Button(visible=False), entry=gr.JSON(visible=False),
        extra=gr.Textbox("", visible=False, label="extra (leave empty: the API takes exactly 12 scores)"),
        not_visible=gr.CheckboxGroup(list(REGIONS), value=[], visible=False,
                                     label="not_visible (regions not visible in the photo)"))


def build_annotate_tab(settings: Settings) -> AnnotateTab:
    """Lay out the Annotate tab inside the caller's open gr.Blocks / gr.Tab and wire its events."""
    banner = gr.Markdown(elem_id="annotate-banner")
    with gr.Accordion("How rating works", open=False):
        gr.Markdown(INTRO)
    tabs: dict[str, gr.Tab] = {}
    with gr.Tabs(overflow_behavior="wrap"):
        with gr.Tab("Rate", id="annotate-rate") as tabs["annotate-rate"]:
            rate = _rate_screen(settings)
        with gr.Tab("Add photos", id="annotate-ingest") as tabs["annotate-ingest"]:
            ingest_screen = _ingest_screen()
        with gr.Tab("Photos", id="annotate-photos") as tabs["annotate-photos"]:
            photos = _photos_screen()
        with gr.Tab("Agreement", id="annotate-agreement") as tabs["annotate-agreement"]:
            agreement = _agreement_screen()
        with gr.Tab("Adjudicate", id="annotate-adjudicate") as tabs["annotate-adjudicate"]:
            adjudicate = _adjudicate_screen()
        with gr.Tab("Export", id="annotate-export") as tabs["annotate-export"]:
            export = _export_screen()
        with gr.Tab("API", id="annotate-api", visible=False):
            api = _api_controls()
    tab = AnnotateTab(settings=settings, store=RatingStore.for_settings(settings), banner=banner, tabs=tabs,
                      rate_screen=rate, ingest_screen=ingest_screen, photos_screen=photos,
                      agreement_screen=agreement, adjudicate_screen=adjudicate, export_screen=export, api=api)
    wire(tab)
    return tab


def _ingest_table(summary: dict[str, Any]) -> pd.DataFrame:
    """The ingest summary's outcome per file, under the screen's headers."""
    return pd.DataFrame(summary["files"], columns=list(INGEST_HEADERS)).rename(columns=INGEST_HEADERS)


def _zero_intensities(area: int | None) -> tuple[Any, Any]:
    """Area 0 (no lesion): darkness and homogeneity 0 without a click."""
    return (0, 0) if area == 0 else (gr.skip(), gr.skip())


def wire(tab: AnnotateTab) -> None:
    """Connect the tab's events: the UI events and their API twins (same handlers, API-shaped outputs).
    Every refusal is a pop-up (`user_errors`)."""
    quiet: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden"}
    lane: dict[str, Any] = {"concurrency_id": RATING_LANE, "concurrency_limit": 16}
    rate, api = tab.rate_screen, tab.api
    # rating
    gr.on([c.change for c in rate.form], live_scores, rate.form, rate.live, trigger_mode="always_last", **quiet, **lane)
    for area, darkness, homogeneity in zip(rate.scores[0::3], rate.scores[1::3], rate.scores[2::3]):
        area.input(_zero_intensities, area, [darkness, homogeneity], **quiet, **lane)
    next_outputs = [*rate.photo, rate.result, rate.own, rate.own_ids]
    gr.on([rate.next_button.click, rate.rater.change], user_errors(tab.show_next), [rate.rater, rate.outlines],
          next_outputs, **quiet, **lane)
    rate.submit.click(user_errors(tab.ui_submit), [rate.rater, rate.image_id, rate.outlines, *rate.form],
                      next_outputs, **quiet, **lane)
    rate.own.select(user_errors(tab.load_own), [rate.rater, rate.own_ids, rate.outlines], rate.photo, **quiet, **lane)
    rate.outlines.change(user_errors(tab.redraw), [rate.image_id, rate.outlines], rate.image, **quiet, **lane)
    api.next_image.click(user_errors(tab.next_image), rate.rater, [rate.image_id, rate.image, rate.status],
                         api_name="next_image", **lane)
    api.submit.click(user_errors(tab.submit_rating), [rate.rater, rate.image_id, *rate.scores, api.extra,
                                                      api.not_visible],
                     [api.entry, rate.image_id, rate.image, rate.status], api_name="submit_rating", **lane)
    # coordinator
    adding = tab.ingest_screen
    adding.add.click(user_errors(tab.add_photos), [adding.files, adding.patient, adding.visit], adding.summary,
                     api_name="ingest", **lane
                     ).success(_ingest_table, adding.summary, adding.table, **quiet
                     ).then(lambda: None, None, adding.files, **quiet)
    photos = tab.photos_screen
    photos.refresh.click(user_errors(tab.photos), None, photos.table, api_name="photos")
    tab.tabs["annotate-photos"].select(user_errors(tab.photos), None, photos.table, **quiet)
    agreement = tab.agreement_screen
    agreement.refresh.click(user_errors(tab.agreement), None, [agreement.numbers, agreement.plot],
                            api_name="agreement").success(text.report_markdown, agreement.numbers, agreement.summary,
                                                          **quiet)
    agreement.machine_button.click(user_errors(tab.machine_agreement), None,
                                   [agreement.machine_numbers, agreement.machine_plot, agreement.machine_summary],
                                   api_name="machine_agreement")
    case = tab.adjudicate_screen
    gr.on([case.refresh.click, tab.tabs["annotate-adjudicate"].select], user_errors(tab.closed_choices), None,
          case.case, **quiet)
    case.case.input(user_errors(tab.open_case), case.case,
                    [case.photo, case.summary, case.scores, case.rerater, case.log, case.verdict], **quiet)
    case.decide.click(user_errors(tab.adjudicate), [case.case, case.verdict, case.verdict_reason], case.decided,
                      api_name="adjudicate").success(tab.decisions, case.case, case.log, **quiet).then(
        user_errors(tab.relabel_case), case.case, case.case, **quiet)
    case.rerate.click(user_errors(tab.request_rerate), [case.case, case.rerater, case.rerate_reason], case.decided,
                      api_name="request_rerate").success(tab.decisions, case.case, case.log, **quiet)
    export = tab.export_screen
    tab.tabs["annotate-export"].select(user_errors(tab.export_preview), None, export.counts, **quiet)
    export.check.click(user_errors(tab.export_preview), None, export.counts, **quiet)
    export.export.click(user_errors(tab.export), None, [export.downloads, export.path], api_name="export"
                        ).success(tab.export_preview, None, export.counts, **quiet)
