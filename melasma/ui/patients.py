"""The Patients tab (coordinators only; blinded raters never see it): the patient list with search,
a patient's timeline, two visits side by side aligned with per-region numbers, and exports.

API (gradio_client): ``/patients`` (search text) -> table of patients; ``/timeline`` (patient id)
-> (the patient's visits and outcome as JSON, timeline PNG). Every handler checks the coordinator
role on the server (``melasma.access``), as the Annotate tab's coordinator screens do.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from PIL import Image

from annotation.store import RatingStore
from melasma.access import Role, require, role_of
from melasma.followup import FollowupError, Patient, cohort_responders, load_patients, outcome, patient_timeline
from melasma.followup.align import align_pair
from melasma.followup.export import file_stem, visit_frame, write_long_csv, write_patient_record
from melasma.followup.figures import save_figure, timeline_figure
from melasma.followup.model import checkpoint_scores, image_derived_masi
from melasma.followup.outcomes import Outcome
from melasma.followup.visits import Visit
from melasma.inference import get_predictor, list_checkpoints
from melasma.layout import photo_path
from melasma.masi import REGIONS
from melasma.settings import Settings
from melasma.ui.components import PhotoStage, Shown, user_errors

#: The tab's own concurrency group: figures and alignment must not queue behind (or ahead of) ratings.
FOLLOWUP_LANE = "followup"
PATIENT_COLUMNS: tuple[str, ...] = ("patient", "visits", "scored", "baseline MASI", "latest MASI", "change %",
                                    "MASI-50", "MASI-75", "treatment", "note")
COMPARE_COLUMNS: tuple[str, ...] = ("region", "before", "after", "difference")
COHORT_COLUMNS: tuple[str, ...] = ("weeks after baseline", "patients", "MASI-50", "MASI-50 95 % CI", "MASI-75",
                                   "MASI-75 95 % CI")
VISIT_TABLE: tuple[str, ...] = ("visit_date", "days_from_baseline", "status", "masi", "masi_low", "masi_high",
                                "change", "percent_change", "masi50", "masi75", "treatment", "notes")
#: How the visit table names its columns on screen (the CSV exports keep the field names).
VISIT_HEADERS: dict[str, str] = {
    "visit_date": "visit date", "days_from_baseline": "days from baseline", "status": "status", "masi": "MASI",
    "masi_low": "MASI low", "masi_high": "MASI high", "change": "change", "percent_change": "change %",
    "masi50": "MASI-50", "masi75": "MASI-75", "treatment": "treatment", "notes": "notes"}
INTRO = """
Each patient's course from the rated photos: a visit is one patient on one date; its MASI is the
raters' consensus (the adjudicated MASI where a coordinator decided). Only visits whose photos are
closed and undisputed count for change from baseline and MASI-50 / MASI-75 (a reduction of at least
50 % / 75 % from the first such visit).
"""


def _username(request: gr.Request | None) -> str | None:
    return getattr(request, "username", None) if request is not None else None


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _summary_row(patient: Patient) -> dict[str, object]:
    row: dict[str, object] = {"patient": patient.patient_id, "visits": len(patient.visits),
                              "scored": len(patient.scored_visits), "treatment": patient.treatment or ""}
    try:
        result = outcome(patient)
    except FollowupError as error:
        return {**row, "note": str(error).split(": ", 1)[-1]}
    return {**row, "baseline MASI": _round(result.baseline.masi), "latest MASI": _round(result.latest.masi),
            "change %": _round(result.latest.percent, 0),
            "MASI-50": result.masi50.isoformat() if result.masi50 else "not reached",
            "MASI-75": result.masi75.isoformat() if result.masi75 else "not reached", "note": ""}


def _visit_json(visit: Visit) -> dict[str, object]:
    return {"visit_date": visit.visit_date.isoformat(), "status": visit.status, "photos": len(visit.image_ids),
            "masi": visit.masi, "mmasi": visit.mmasi, "masi_low": visit.masi_low, "masi_high": visit.masi_high,
            "regions": visit.regions, "treatment": visit.treatment, "notes": visit.notes,
            "model_severity": visit.model.severity if visit.model else None,
            "model_masi": visit.model.masi if visit.model else None, "image_masi": visit.image_masi}


def checkpoint_choices(settings: Settings) -> list[tuple[str, str]]:
    """(label, key) of the checkpoints on disk for the model line, "none" first."""
    return [("none", ""), *[(key, key) for key in list_checkpoints(settings.runs_dir)]]


@dataclass(frozen=True)
class PatientsTab:
    """The tab's state, components and handlers; `tab` is shown only to coordinators (the app shell
    wires `visibility`)."""

    settings: Settings
    store: RatingStore
    tab: gr.Tab
    search: gr.Textbox
    refresh: gr.Button
    table: gr.Dataframe
    cohort_table: gr.Dataframe
    patient: gr.Textbox
    checkpoint: gr.Dropdown
    measure: gr.Checkbox
    show: gr.Button
    figure: gr.Image
    visits: gr.Dataframe
    summary: gr.JSON
    timeline_api: gr.Button
    before_day: gr.Dropdown
    after_day: gr.Dropdown
    compare_button: gr.Button
    before_photo: gr.Image
    after_photo: gr.Image
    compare_note: gr.Markdown
    compare_table: gr.Dataframe
    cohort_export: gr.Button
    patient_export: gr.Button
    downloads: gr.File
    stage: PhotoStage = field(default_factory=PhotoStage)

    @property
    def opened(self) -> list[gr.components.Component]:
        """What `choose` shows for a patient."""
        return [self.figure, self.visits, self.before_day, self.after_day]

    @property
    def compared(self) -> list[gr.components.Component]:
        """What `compare` shows for two visits."""
        return [self.before_photo, self.after_photo, self.compare_table, self.compare_note]

    def coordinator(self, request: gr.Request | None) -> None:
        require(Role.COORDINATOR, _username(request), self.settings)

    def visibility(self, request: gr.Request) -> gr.Tab:
        """UI: the tab only for coordinators."""
        return gr.Tab(visible=role_of(_username(request), self.settings) is Role.COORDINATOR)

    def _patients(self, patient_id: str | None = None, checkpoint: str | None = None,
                  measure: bool = False) -> dict[str, Patient]:
        """Every patient; with a checkpoint key or `measure`, the machine's numbers for `patient_id`'s photos."""
        patients = load_patients(self.store, self.settings)
        patient = patients.get(patient_id or "")
        if patient is None or not (checkpoint or measure):
            return patients
        ids = [i for visit in patient.visits for i in visit.image_ids]
        model = None
        if checkpoint:
            found = list_checkpoints(self.settings.runs_dir)
            if checkpoint not in found:
                raise FollowupError(f"unknown checkpoint {checkpoint!r}; choose one of {', '.join(found)}")
            model = checkpoint_scores(get_predictor(found[checkpoint]), self.settings.photos_dir, ids)
        measured = image_derived_masi(self.settings.photos_dir, ids) if measure else None
        return load_patients(self.store, self.settings, model, measured)

    def checkpoints(self) -> gr.Dropdown:
        """UI: the checkpoint dropdown refreshed (e.g. after a training run), none chosen."""
        return gr.Dropdown(choices=checkpoint_choices(self.settings))

    def _staged_timeline(self, patient: Patient, result: Outcome) -> str:
        """The timeline PNG as a copy Gradio may serve."""
        with tempfile.TemporaryDirectory() as folder:
            path = save_figure(timeline_figure(patient, result), Path(folder) / f"{file_stem(patient.patient_id)}_timeline.png")
            return self.stage(path)

    # API -------------------------------------------------------------------------------------
    def patients(self, query: str | None, request: gr.Request) -> pd.DataFrame:
        """API/UI: one row per patient whose id or treatment contains `query` (any case)."""
        self.coordinator(request)
        needle = (query or "").strip().lower()
        rows = [_summary_row(p) for p in self._patients().values()
                if needle in p.patient_id.lower() or needle in (p.treatment or "").lower()]
        return pd.DataFrame(rows, columns=list(PATIENT_COLUMNS)).astype(object).fillna("")

    def cohort(self, request: gr.Request) -> pd.DataFrame:
        """UI: responders per visit window (weeks after baseline) with Wilson 95 % intervals."""
        self.coordinator(request)
        outcomes = []
        for patient in self._patients().values():
            try:
                outcomes.append(outcome(patient))
            except FollowupError:
                continue
        rows = []
        for window in cohort_responders(outcomes):
            if not window.patients:
                continue
            row: dict[str, object] = {"weeks after baseline": f"{window.start_week:g}-{window.end_week:g}",
                                      "patients": window.patients}
            for name, (low, high) in window.intervals.items():
                row[name] = f"{window.responders[name]} ({window.share(name) or 0:.0%})"
                row[f"{name} 95 % CI"] = f"{low:.0%}-{high:.0%}"
            rows.append(row)
        return pd.DataFrame(rows, columns=list(COHORT_COLUMNS))

    def timeline(self, patient_id: str | None, checkpoint: str | None, measure: bool | None,
                 request: gr.Request) -> tuple[dict[str, object], str]:
        """API/UI: the patient's visits and outcome (JSON) and the timeline figure (PNG); a checkpoint
        key adds the model's severity / MASI per visit, `measure` the image-derived MASI."""
        self.coordinator(request)
        patient_id = (patient_id or "").strip()
        patient = patient_timeline(self._patients(patient_id, checkpoint, bool(measure)), patient_id)
        result = outcome(patient)
        figure = self._staged_timeline(patient, result)
        summary: dict[str, object] = {
            "patient_id": patient.patient_id, "treatment": patient.treatment,
            "treatment_start": patient.treatment_start.isoformat() if patient.treatment_start else None,
            "baseline": result.baseline.visit_date.isoformat(), "baseline_masi": result.baseline.masi,
            "latest_masi": result.latest.masi, "change": result.latest.change, "percent": result.latest.percent,
            "masi50": result.masi50.isoformat() if result.masi50 else None,
            "masi75": result.masi75.isoformat() if result.masi75 else None,
            "visits": [_visit_json(v) for v in patient.visits],
        }
        return summary, figure

    # UI --------------------------------------------------------------------------------------
    def choose(self, patient_id: str | None, checkpoint: str | None, measure: bool | None,
               request: gr.Request) -> Shown:
        """UI: timeline, visit table and the two visit pickers (first and last scored visit)."""
        summary, figure = self.timeline(patient_id, checkpoint, measure, request)
        patient = self._patients()[str(summary["patient_id"])]
        dates = [v.visit_date.isoformat() for v in patient.visits]
        scored = [v.visit_date.isoformat() for v in patient.scored_visits]
        table = visit_frame(patient)[list(VISIT_TABLE)].round(2)
        shown = table.astype(object).where(table.notna(), "").replace({True: "yes", False: "no"})
        return {self.figure: figure, self.visits: shown.rename(columns=VISIT_HEADERS),
                self.before_day: gr.Dropdown(choices=dates, value=scored[0]),
                self.after_day: gr.Dropdown(choices=dates, value=scored[-1])}

    def select_row(self, table: pd.DataFrame, evt: gr.SelectData) -> str:
        """UI: the patient id of the clicked row of the patient list."""
        return str(table.iloc[evt.index[0]]["patient"])

    def compare(self, patient_id: str | None, before_day: str | None, after_day: str | None,
                request: gr.Request) -> Shown:
        """UI: the two visits' first photos aligned side by side, with per-region shares and differences."""
        self.coordinator(request)
        patient = patient_timeline(self._patients(), (patient_id or "").strip())
        visits = {v.visit_date.isoformat(): v for v in patient.visits}
        if before_day not in visits or after_day not in visits:
            raise FollowupError("choose two visit dates of this patient")
        before, after = visits[str(before_day)], visits[str(after_day)]
        if before.visit_date == after.visit_date:
            raise FollowupError("choose two different visits")
        if before.masi is None or after.masi is None:
            raise FollowupError("both visits need a consensus (open visits have no numbers yet)")
        with Image.open(photo_path(self.settings.photos_dir, before.image_ids[0])) as one, \
                Image.open(photo_path(self.settings.photos_dir, after.image_ids[0])) as two:
            pair = align_pair(one, two)
        with tempfile.TemporaryDirectory() as folder:
            paths = []
            for name, image in (("before", pair.before), ("after", pair.after)):
                target = Path(folder) / f"{file_stem(patient.patient_id)}_{name}.jpg"
                image.save(target, quality=90)
                paths.append(self.stage(target))
        rows = [{"region": r.replace("_", " "), "before": round(before.regions[r], 2),
                 "after": round(after.regions[r], 2), "difference": round(after.regions[r] - before.regions[r], 2)}
                for r in REGIONS]
        rows.append({"region": "MASI", "before": round(before.masi, 2), "after": round(after.masi, 2),
                     "difference": round(after.masi - before.masi, 2)})
        note = (f"{before_day} vs {after_day} ({(after.visit_date - before.visit_date).days} days); aligned by "
                f"{pair.method}" + (f" ({pair.note})" if pair.note else ""))
        return {self.before_photo: paths[0], self.after_photo: paths[1],
                self.compare_table: pd.DataFrame(rows, columns=list(COMPARE_COLUMNS)), self.compare_note: note}

    def export_cohort(self, request: gr.Request) -> str:
        """UI: the long CSV (one row per patient x visit x region), written under exports/."""
        self.coordinator(request)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = write_long_csv(self._patients().values(), self.settings.exports_dir / f"followup_{stamp}.csv")
        return self.stage(path)

    def export_patient(self, patient_id: str | None, request: gr.Request) -> list[str]:
        """UI: the patient's clinic record, timeline PNG and visits CSV."""
        self.coordinator(request)
        patient = patient_timeline(self._patients(), (patient_id or "").strip())
        folder = self.settings.exports_dir / f"followup_{file_stem(patient.patient_id)}_{date.today().isoformat()}"
        record = write_patient_record(patient, outcome(patient), folder)
        return [self.stage(record.figure), self.stage(record.table)]


def build_patients_tab(settings: Settings, container: gr.Tab) -> PatientsTab:
    """Lay out the Patients tab inside the caller's open gr.Tab `container` and wire its events
    (the patient list loads when the tab is selected)."""
    gr.Markdown(INTRO)
    with gr.Row(equal_height=True):
        search = gr.Textbox(label="Search patients (id or treatment)", scale=3, elem_id="patients-search")
        refresh = gr.Button("Refresh", scale=1)
    table = gr.Dataframe(headers=list(PATIENT_COLUMNS), interactive=False, wrap=True,
                         label="Patients (click a row to open)", elem_id="patients-table", elem_classes="melasma-one-line-headers")
    with gr.Accordion("Cohort: responders per visit window", open=False):
        cohort = gr.Dataframe(headers=list(COHORT_COLUMNS), interactive=False, elem_id="patients-cohort",
                              label="Each patient counted once per window, at their last complete visit in it")
    with gr.Row(equal_height=True):
        patient = gr.Textbox(label="Patient id", scale=3, elem_id="patients-id")
        checkpoint = gr.Dropdown(checkpoint_choices(settings), value="", label="Model line (optional checkpoint)",
                                 allow_custom_value=True, scale=2)  # the handler checks the key
        measure = gr.Checkbox(False, label="Image-derived MASI (face regions)", scale=1)
        show = gr.Button("Show timeline", variant="primary", scale=1, elem_id="patients-show")
    figure = gr.Image(type="filepath", label="Timeline", interactive=False, elem_id="patients-timeline",
                      buttons=["download", "fullscreen"])
    visits = gr.Dataframe(headers=list(VISIT_HEADERS.values()), interactive=False, wrap=True, label="Visits",
                          elem_id="patients-visits", elem_classes="melasma-one-line-headers")
    summary = gr.JSON(visible=False)
    timeline_api = gr.Button(visible=False)
    with gr.Column(elem_id="patients-compare-section"):
        gr.Markdown("### Before / after")
        with gr.Row(equal_height=True):
            before_day = gr.Dropdown([], label="Before (visit date)", allow_custom_value=True)
            after_day = gr.Dropdown([], label="After (visit date)", allow_custom_value=True)
            compare = gr.Button("Compare", elem_id="patients-compare")
        with gr.Row():
            before_photo = gr.Image(type="filepath", label="Before", interactive=False, height=360,
                                    elem_id="patients-before")
            after_photo = gr.Image(type="filepath", label="After", interactive=False, height=360,
                                   elem_id="patients-after")
        compare_note = gr.Markdown(elem_id="patients-compare-note")
        compare_table = gr.Dataframe(headers=list(COMPARE_COLUMNS), interactive=False,
                                     label="Region share of the MASI (weight x area x (darkness + homogeneity))",
                                     elem_id="patients-compare-table")
    gr.Markdown("### Export")
    with gr.Row():
        cohort_export = gr.Button("Export all patients (long CSV)")
        patient_export = gr.Button("Export this patient (PNG + CSV)")
    downloads = gr.File(label="Files", file_count="multiple", interactive=False, elem_id="patients-files")
    tab = PatientsTab(
        settings=settings, store=RatingStore.for_settings(settings), tab=container, search=search, refresh=refresh,
        table=table, cohort_table=cohort, patient=patient, checkpoint=checkpoint, measure=measure, show=show,
        figure=figure, visits=visits, summary=summary, timeline_api=timeline_api, before_day=before_day,
        after_day=after_day, compare_button=compare, before_photo=before_photo, after_photo=after_photo,
        compare_note=compare_note, compare_table=compare_table, cohort_export=cohort_export,
        patient_export=patient_export, downloads=downloads)
    wire(tab)
    return tab


def wire(tab: PatientsTab) -> None:
    """Connect the tab's events (`/patients` and `/timeline` for API clients); refusals are pop-ups."""
    quiet: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden"}
    lane: dict[str, Any] = {"concurrency_id": FOLLOWUP_LANE, "concurrency_limit": 2}
    gr.on([tab.refresh.click, tab.search.submit], user_errors(tab.patients), tab.search, tab.table,
          api_name="patients", **lane).success(tab.cohort, None, tab.cohort_table, **quiet, **lane)
    tab.tab.select(user_errors(tab.patients), tab.search, tab.table, **quiet, **lane).success(
        tab.cohort, None, tab.cohort_table, **quiet, **lane).then(tab.checkpoints, None, tab.checkpoint, **quiet)
    inputs = [tab.patient, tab.checkpoint, tab.measure]
    tab.table.select(tab.select_row, tab.table, tab.patient, **quiet).success(
        user_errors(tab.choose), inputs, tab.opened, **quiet, **lane)
    gr.on([tab.show.click, tab.patient.submit], user_errors(tab.choose), inputs, tab.opened, **quiet, **lane)
    tab.timeline_api.click(user_errors(tab.timeline), inputs, [tab.summary, tab.figure], api_name="timeline", **lane)
    tab.compare_button.click(user_errors(tab.compare), [tab.patient, tab.before_day, tab.after_day], tab.compared,
                             **quiet, **lane)
    tab.cohort_export.click(user_errors(tab.export_cohort), None, tab.downloads, **quiet, **lane)
    tab.patient_export.click(user_errors(tab.export_patient), tab.patient, tab.downloads, **quiet, **lane)
