"""The Train tab: pick a data set, architectures and hyper-parameters; Start queues a background job.

Jobs live on the server (`melasma.jobs.JobRunner`, persisted in ``DATA/jobs.sqlite``) and each trains
in its own worker process, so a page reload, a second browser or a restarted app shows the same runs
and a job that runs out of memory cannot take the app down. A ``gr.Timer`` redraws the whole view from
the job store while a job is queued or running and stops once it has ended.

Who may do what: training needs a coordinator (any visitor when ``visitors_can_train`` is set);
only a job's owner or a coordinator may cancel it. Requests are checked against the server's
`TrainingLimits` and a memory estimate before anything is queued; the data must lie in the data
folder. API (gradio_client): ``/start_training`` (data, archs, ...) -> job id, ``/training_status``
(job id) -> dict, ``/cancel_training`` (job id) -> state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from melasma.access import AccessDenied, Role, require, require_job_owner, role_of, train_role
from melasma.data.clear import without_clear
from melasma.data.manifest import load_dataset
from melasma.errors import UserError
from melasma.jobs import JobNotFoundError, JobRunner, JobStatus
from melasma.jobs.datapath import training_data
from melasma.jobs.limits import TrainingLimits
from melasma.jobs.memory import require_memory_on_submit
from melasma.models.factory import PRETRAINED_SOURCES
from melasma.models.registry import ARCHITECTURES
from melasma.settings import Settings
from melasma.training import TrainConfig
from melasma.training.config import parse_cutoffs
from melasma.ui.components import user_errors
from melasma.ui.train_view import curves_figure, data_summary, plain_markdown, results_note, results_table

SOURCES = {"demo": "Demo set", "export": "Annotate export", "path": "Path"}
DEFAULT_ARCHS = ("resnet18", "mobilenetv2_100")
REFRESH_S = 1.0
#: The form starts at TrainConfig's defaults (the study's protocol).
DEFAULTS: dict[str, Any] = {spec.name: spec.default for spec in fields(TrainConfig) if spec.default is not MISSING}
#: The TrainConfig fields the form sets (besides data and archs), in `/start_training`'s parameter
#: order, with the words a refusal uses for each.
FORM_FIELDS: dict[str, str] = {
    "epochs": "epochs", "batch_size": "batch size", "image_size": "image size", "lr": "learning rate",
    "patience": "patience", "seed": "seed", "device": "device", "pretrained": "ImageNet weights",
    "cutoffs": "MASI cut-offs",
}
#: The start of Start's refusal of a data set the training could not read.
UNUSABLE = "This data set cannot be used:"
WHOLE_NUMBERS = frozenset({"epochs", "batch_size", "image_size", "patience", "seed"})

INTRO = """
Train the study's CNNs on a labelled set (a `labels.csv` manifest or class folders) inside the app's
data folder. **Start** queues a background job: one job trains at a time, others wait in order, and
the job keeps running if you close or reload this page. **Cancel** stops after the current batch and
keeps the architectures already finished. Choosing a past job fills the form with its settings.
Finished checkpoints appear in the Predict tab.
"""


def parse_archs(archs: list[str] | None, extra: str | None) -> list[str]:
    """Ticked architectures plus comma-separated timm names (TrainConfig checks each one)."""
    return list(archs or []) + [name.strip() for name in (extra or "").split(",") if name.strip()]


def _number(value: float | None, name: str, *, integer: bool = True) -> int | float:
    if value is None:
        raise UserError(f"{name} is required")
    if integer and float(value) != int(value):
        raise UserError(f"{name} must be a whole number, got {value}")
    return int(value) if integer else float(value)


def config_value(name: str, shown: Any, data_dir: Path) -> Any:
    """The TrainConfig value of form field `name` from what the form shows; UserError for a missing or
    invalid one. A weights file must lie inside `data_dir` (DataPathError)."""
    label = FORM_FIELDS[name]
    if name in WHOLE_NUMBERS or name == "lr":
        return _number(shown, label, integer=name != "lr")
    text = str(shown or "").strip()
    if name == "cutoffs":
        return parse_cutoffs(text) if text else DEFAULTS["cutoffs"]
    if name == "pretrained" and text not in ("", *PRETRAINED_SOURCES):
        return str(training_data(text, data_dir))
    return text or DEFAULTS[name]


def shown_value(name: str, value: Any) -> Any:
    """What the form shows for a TrainConfig value (the inverse of `config_value`)."""
    return ",".join(f"{float(part):g}" for part in value) if name == "cutoffs" else value


def make_config(data: str, archs: list[str], values: Mapping[str, Any], *, data_dir: Path) -> TrainConfig:
    """A TrainConfig from the form: the data set, the architectures and the `FORM_FIELDS` values keyed
    by TrainConfig field name; UserError for a missing or invalid one. The data set and a weights file
    must lie inside `data_dir` (DataPathError, one message whatever the path names)."""
    if not (data or "").strip():
        raise UserError("choose a data set: the demo set, the Annotate export or a path")
    return TrainConfig(data=training_data(data, data_dir), archs=tuple(archs),
                       **{name: config_value(name, values.get(name), data_dir) for name in FORM_FIELDS})


def require_usable_data(config: TrainConfig) -> None:
    """Refuse (UserError, with the reason) a data set the training could not read, before anything is
    queued: a missing manifest, missing photos, an empty class."""
    try:
        load_dataset(config.data, seed=config.seed, cutoffs=config.cutoffs,
                     allow_patient_overlap=config.allow_patient_overlap)
    except (UserError, OSError) as error:
        raise UserError(f"{UNUSABLE} {error}") from error


def _headline(status: JobStatus) -> str:
    """State, progress and position of a job; its error as plain text (never rendered as Markdown)."""
    state = status.state
    parts = [f"**{status.job_id}**: {state}", f"{status.progress:.0%}"]
    if status.submitted_by:
        parts.append(f"started by {plain_markdown(status.submitted_by)}")
    if state == "running" and status.arch:
        parts.append(f"{status.arch} epoch {status.epoch or 0}/{status.epochs}")
    if status.cancel_requested and state == "running":
        parts.append("cancelling after this batch")
    text = " · ".join(parts)
    if status.error:
        text += f"\n\n**Error:** {plain_markdown(status.error)}"
    return text


def _figures(status: JobStatus) -> list[tuple[Image.Image, str]]:
    run_dir = Path(status.run_dir)
    items = []
    for path in status.figures:
        with Image.open(path) as image:
            items.append((image.convert("RGB"), str(Path(path).relative_to(run_dir))))
    return items


def job_choices(runner: JobRunner) -> list[tuple[str, str]]:
    """(label, job id) of the stored jobs, newest first."""
    return [(f"{job['job_id']} · {', '.join(job['archs'])}", job["job_id"]) for job in runner.list_jobs()]


def _user(request: gr.Request | None) -> str | None:
    return getattr(request, "username", None) if request is not None else None


@dataclass(frozen=True)
class TrainTab:
    """The tab's state, components and handlers. `config_fields` maps each `FORM_FIELDS` TrainConfig field to
    its component (one mapping builds the config and fills the form); `finished_run` holds the run
    folder of the last job that ended with checkpoints (the app shell wires its ``.change`` to refresh
    the Predict tab)."""

    settings: Settings
    runner: JobRunner
    source: gr.Radio
    data: gr.Textbox
    data_info: gr.Markdown
    include_clear: gr.Checkbox
    archs: gr.CheckboxGroup
    extra: gr.Textbox
    config_fields: dict[str, gr.components.Component]
    start: gr.Button
    cancel: gr.Button
    job: gr.Dropdown
    state: gr.Textbox
    headline: gr.Markdown
    curves: gr.Plot
    log: gr.Textbox
    results: gr.DataFrame
    notes: gr.Markdown
    figures: gr.Gallery
    finished_run: gr.Textbox
    timer: gr.Timer

    @property
    def demo_labels(self) -> str:
        """The demo set's manifest (the form's first data set), relative to the data folder: the page's
        config must not show the data folder's absolute path."""
        return str((self.settings.demo_dir / "labels.csv").relative_to(self.settings.data_dir))

    @property
    def form(self) -> list[gr.components.Component]:
        """What `fill_form` sets: the data set, the architectures and every `config_fields` component."""
        return [self.source, self.data, self.archs, self.extra, *self.config_fields.values()]

    @property
    def view(self) -> list[gr.components.Component]:
        """What `show` draws."""
        return [self.state, self.headline, self.curves, self.log, self.results, self.notes, self.figures,
                self.finished_run, self.timer]

    # API ------------------------------------------------------------------------------------
    def start_training(
        self, data: str, archs: list[str], extra_archs: str, epochs: float, batch_size: float,
        image_size: float, lr: float, patience: float, seed: float, device: str, pretrained: str,
        cut: str, request: gr.Request, include_clear: bool = True,
    ) -> str:
        """Queue a training job; returns its id. `include_clear` False trains on a copy of an export
        manifest without the photos rated clear (MASI 0, its `clear` column)."""
        user = _user(request)
        require(train_role(self.settings), user, self.settings)
        user = require_job_owner(user, self.settings)
        values = dict(zip(FORM_FIELDS, (epochs, batch_size, image_size, lr, patience, seed, device, pretrained,
                                        cut), strict=True))
        config = make_config(data, parse_archs(archs, extra_archs), values, data_dir=self.settings.data_dir)
        if not include_clear:
            config.data = without_clear(config.data)
        limits = TrainingLimits.from_settings(self.settings)
        limits.check(config)
        require_usable_data(config)
        require_memory_on_submit(config)
        return self.runner.submit(config, user=user, limits=limits)

    def training_status(self, job_id: str) -> dict[str, Any]:
        """State, progress, log tail, history rows and summary rows of a training job."""
        return self.runner.status(job_id).to_json()

    def cancel_training(self, job_id: str | None, request: gr.Request) -> str:
        """Cancel a training job (its owner or a coordinator); returns its state now."""
        if not job_id:
            raise UserError("no job selected")
        user = require_job_owner(_user(request), self.settings)
        owner = self.runner.store.get(job_id).submitted_by
        if role_of(user, self.settings) is not Role.COORDINATOR and (user is None or user != owner):
            raise AccessDenied("only the person who started this job or a coordinator can cancel it")
        return self.runner.cancel(job_id)

    # UI -------------------------------------------------------------------------------------
    def pick_source(self, choice: str, exported: str | None = None) -> gr.Textbox:
        """The data-set box for a source: the demo set and the export are fixed, a path is typed."""
        if choice == SOURCES["demo"]:
            return gr.Textbox(value=self.demo_labels, interactive=False)
        if choice == SOURCES["export"]:
            return gr.Textbox(value=str(exported or ""), interactive=False)
        return gr.Textbox(interactive=True)

    def take_export(self, exported: str | None) -> tuple[Any, Any]:
        """After "Export and send to Train": the Annotate export chosen, its manifest in the box."""
        if not (exported or "").strip():
            return gr.skip(), gr.skip()
        return SOURCES["export"], gr.Textbox(value=str(exported), interactive=False)

    def describe_data(self, path: str, cutoffs: str) -> str:
        """Class counts and cut-offs of the chosen data set (only inside the data folder)."""
        if not (path or "").strip():
            return ""
        try:
            return data_summary(training_data(path, self.settings.data_dir),
                                config_value("cutoffs", cutoffs, self.settings.data_dir))
        except UserError as error:
            return plain_markdown(str(error))

    def select(self, job_id: str | None = None) -> gr.Dropdown:
        """The job list now, showing `job_id` (default: the latest job)."""
        choices = job_choices(self.runner)
        return gr.Dropdown(choices=choices, value=job_id or (choices[0][1] if choices else None))

    def show(self, job_id: str | None) -> dict[gr.components.Component, Any]:
        """Everything shown for one job, drawn from the job store (or nothing when there is none)."""
        self.runner.start()  # after launch: the first page load or tick starts the queue's thread
        try:
            status = self.runner.status(job_id) if job_id else None
        except JobNotFoundError as error:
            return self._nothing(plain_markdown(str(error)))
        if status is None:
            return self._nothing("No training job yet.")
        table = results_table(status.summary)
        pictures = _figures(status) if status.ended else []
        shown: dict[gr.components.Component, Any] = {
            self.state: status.state,
            self.headline: _headline(status),
            self.curves: curves_figure(status.history, status.archs),
            self.log: "\n".join(status.log),
            self.results: gr.DataFrame(table, visible=table is not None),
            self.notes: results_note(status.summary),
            self.figures: gr.Gallery(pictures, visible=bool(pictures)),
            self.timer: gr.Timer(active=not status.ended),
        }
        if status.ended and status.summary:
            shown[self.finished_run] = status.run_dir
        return shown

    def _nothing(self, headline: str) -> dict[gr.components.Component, Any]:
        return {self.state: "", self.headline: headline, self.curves: None, self.log: "",
                self.results: gr.DataFrame(visible=False), self.notes: "", self.figures: gr.Gallery(visible=False),
                self.timer: gr.Timer(active=False)}

    def fill_form(self, job_id: str | None) -> dict[gr.components.Component, Any]:
        """The form set to a past job's settings (unchanged when the job is unknown)."""
        try:
            config = self.runner.store.get(job_id).config if job_id else None
        except JobNotFoundError:
            config = None
        if config is None:
            return {component: gr.skip() for component in self.form}
        archs = list(config.get("archs", []))
        demo = str((self.settings.demo_dir / "labels.csv").resolve()) == config.get("data")
        filled: dict[gr.components.Component, Any] = {
            self.source: SOURCES["demo"] if demo else SOURCES["path"],
            self.data: gr.Textbox(value=config.get("data"), interactive=not demo),
            self.archs: [name for name in archs if name in ARCHITECTURES],
            self.extra: ", ".join(name for name in archs if name not in ARCHITECTURES),
        }
        filled.update({component: shown_value(name, config[name])
                       for name, component in self.config_fields.items() if name in config})
        return filled


def _form_fields(limits_note: str) -> dict[str, gr.components.Component]:
    """The hyper-parameter inputs, keyed by TrainConfig field, at TrainConfig's defaults."""
    shown = {name: shown_value(name, DEFAULTS[name]) for name in FORM_FIELDS}
    with gr.Row():
        epochs = gr.Number(shown["epochs"], label="Epochs", precision=0, minimum=1)
        batch_size = gr.Number(shown["batch_size"], label="Batch size", precision=0, minimum=2)
        image_size = gr.Number(shown["image_size"], label="Image size (px)", precision=0, minimum=8)
    with gr.Row():
        lr = gr.Number(shown["lr"], label="Learning rate", minimum=0)
        patience = gr.Number(shown["patience"], label="Early-stopping patience", precision=0, minimum=1)
        seed = gr.Number(shown["seed"], label="Seed", precision=0)
    with gr.Row():
        device = gr.Dropdown(["auto", "cpu", "cuda", "mps"], value=shown["device"], label="Device")
        pretrained = gr.Dropdown(
            list(PRETRAINED_SOURCES), value=shown["pretrained"], allow_custom_value=True,
            label="ImageNet weights", info="auto: download if reachable · off · or a file in the data folder",
        )
        cutoffs = gr.Textbox(shown["cutoffs"], label="MASI cut-offs", info="where moderate and severe begin")
    gr.Markdown(limits_note)
    return {"epochs": epochs, "batch_size": batch_size, "image_size": image_size, "lr": lr, "patience": patience,
            "seed": seed, "device": device, "pretrained": pretrained, "cutoffs": cutoffs}


def build_train_tab(settings: Settings, *, export_path: gr.Textbox | None = None) -> TrainTab:
    """Lay out the Train tab inside the caller's open gr.Blocks / gr.Tab and wire its events.
    The job runner's thread starts on the first page load or submit (never at build time)."""
    runner = JobRunner.shared(settings.data_dir)
    limits = TrainingLimits.from_settings(settings)
    sources = [SOURCES["demo"]] + ([SOURCES["export"]] if export_path is not None else []) + [SOURCES["path"]]

    gr.Markdown(INTRO)
    with gr.Row():
        with gr.Column(scale=1):
            source = gr.Radio(sources, value=SOURCES["demo"], label="Data set")
            data = gr.Textbox(str((settings.demo_dir / "labels.csv").relative_to(settings.data_dir)), label="Manifest (labels.csv) or class folder",
                              info="a path inside the data folder", interactive=False)
            data_info = gr.Markdown()
            include_clear = gr.Checkbox(
                True, label="Include photos rated clear (MASI 0, no melasma recorded)",
                info="an Annotate export marks them in its clear column; they train as mild")
            archs = gr.CheckboxGroup(
                choices=[(spec.display_name, name) for name, spec in ARCHITECTURES.items()],
                value=list(DEFAULT_ARCHS), label="Architectures (all six = the study)",
            )
            extra = gr.Textbox(label="Other timm models (comma-separated)", placeholder="efficientnet_b0")
            form_fields = _form_fields(
                f"This server trains images up to {limits.max_image_size} px, {limits.max_epochs} epochs, "
                f"batches of {limits.max_batch_size} and {limits.max_archs} architectures per job; "
                f"{limits.max_jobs_per_user} waiting jobs per person.")
            with gr.Row():
                start = gr.Button("Start", variant="primary")
                cancel = gr.Button("Cancel", variant="stop")
        with gr.Column(scale=2):
            with gr.Row():
                job = gr.Dropdown(job_choices(runner), label="Job", allow_custom_value=True, scale=3)
                state = gr.Textbox(label="State", interactive=False, scale=1)
            headline = gr.Markdown()
            curves = gr.Plot(label="Learning curves", format="png", elem_id="train-curves")
            log_box = gr.Textbox(label="Log", lines=10, max_lines=10, autoscroll=True, interactive=False)
    results = gr.DataFrame(label="Results (test set)", interactive=False, visible=False, wrap=True)
    notes = gr.Markdown()
    figures = gr.Gallery(label="Figures", columns=3, height="auto", object_fit="contain", visible=False)
    finished_run = gr.Textbox(visible=False)
    timer = gr.Timer(REFRESH_S, active=False)
    tab = TrainTab(settings=settings, runner=runner, source=source, data=data, data_info=data_info,
                   include_clear=include_clear, archs=archs,
                   extra=extra, config_fields=form_fields, start=start, cancel=cancel, job=job, state=state,
                   headline=headline, curves=curves, log=log_box, results=results, notes=notes, figures=figures,
                   finished_run=finished_run, timer=timer)
    _wire(tab, export_path)
    return tab


def _wire(tab: TrainTab, export_path: gr.Textbox | None) -> None:
    quiet: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden", "concurrency_limit": None}
    cutoffs = tab.config_fields["cutoffs"]
    assert isinstance(cutoffs, gr.Textbox)  # typed as a Component in the mapping
    if export_path is not None:
        tab.source.input(tab.pick_source, [tab.source, export_path], tab.data, **quiet)
        export_path.change(tab.take_export, export_path, [tab.source, tab.data], **quiet)
    else:
        tab.source.input(tab.pick_source, tab.source, tab.data, **quiet)
    gr.on([tab.data.change, cutoffs.submit], tab.describe_data, [tab.data, cutoffs], tab.data_info, **quiet)
    tab.start.click(
        user_errors(tab.start_training),
        [tab.data, tab.archs, tab.extra, *tab.config_fields.values(), tab.include_clear], tab.job,
        api_name="start_training", concurrency_limit=None,
    ).success(tab.select, tab.job, tab.job, **quiet).then(tab.show, tab.job, tab.view, **quiet)
    tab.cancel.click(user_errors(tab.cancel_training), tab.job, tab.state, api_name="cancel_training",
                     concurrency_limit=None).success(tab.show, tab.job, tab.view, **quiet)
    gr.api(user_errors(tab.training_status), api_name="training_status", concurrency_limit=None)
    tab.job.input(tab.show, tab.job, tab.view, **quiet).then(tab.fill_form, tab.job, tab.form, **quiet)
    tab.timer.tick(tab.show, tab.job, tab.view, **quiet)
    gr.on(None, tab.select, None, tab.job, **quiet).then(tab.show, tab.job, tab.view, **quiet).then(
        tab.describe_data, [tab.data, cutoffs], tab.data_info, **quiet)
