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

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from melasma.access import AccessDenied, Role, require, role_of, train_role
from melasma.jobs import FINAL_STATES, JobNotFoundError, JobRunner
from melasma.jobs.datapath import training_data
from melasma.jobs.memory import require_memory_on_submit
from melasma.models.factory import PRETRAINED_SOURCES
from melasma.models.registry import ARCHITECTURES
from melasma.settings import Settings
from melasma.training import TrainConfig
from melasma.training.config import parse_cutoffs
from melasma.ui.train_view import curves_figure, data_summary, plain_markdown, results_note, results_table

SOURCES = {"demo": "Demo set", "export": "Annotate export", "path": "Path"}
DEFAULT_ARCHS = ("resnet18", "mobilenetv2_100")
REFRESH_S = 1.0
#: The form starts at TrainConfig's defaults (the study's protocol).
DEFAULTS = {spec.name: spec.default for spec in fields(TrainConfig)}

INTRO = """
Train the study's CNNs on a labelled set (a `labels.csv` manifest or class folders) inside the app's
data folder. **Start** queues a background job: one job trains at a time, others wait in order, and
the job keeps running if you close or reload this page. **Cancel** stops after the current batch and
keeps the architectures already finished. Choosing a past job fills the form with its settings.
Finished checkpoints appear in the Predict tab.
"""


@dataclass
class TrainTab:
    """The tab's components; `finished_run` holds the run folder of the last job that ended with
    checkpoints (the app shell wires its ``.change`` to refresh the Predict tab)."""

    runner: JobRunner
    data: gr.Textbox
    archs: gr.CheckboxGroup
    start: gr.Button
    cancel: gr.Button
    job: gr.Dropdown
    state: gr.Textbox
    results: gr.DataFrame
    finished_run: gr.Textbox
    timer: gr.Timer


def parse_archs(archs: list[str] | None, extra: str | None) -> list[str]:
    """Ticked architectures plus comma-separated timm names (TrainConfig checks each one)."""
    return list(archs or []) + [name.strip() for name in (extra or "").split(",") if name.strip()]


def _number(value: float | None, name: str, *, integer: bool = True) -> Any:
    if value is None:
        raise ValueError(f"{name} is required")
    if integer and float(value) != int(value):
        raise ValueError(f"{name} must be a whole number, got {value}")
    return int(value) if integer else float(value)


def make_config(
    data: str, archs: list[str], epochs: float, batch_size: float, image_size: float, lr: float,
    patience: float, seed: float, device: str, pretrained: str, cutoffs: str, *, data_dir: Path,
) -> TrainConfig:
    """A TrainConfig from the form's values; ValueError for a missing or invalid one. The data set and
    a weights file must lie inside `data_dir` (DataPathError, one message whatever the path names)."""
    if not (data or "").strip():
        raise ValueError("choose a data set: the demo set, the Annotate export or a path")
    weights = (pretrained or "auto").strip()
    if weights not in PRETRAINED_SOURCES:
        weights = str(training_data(weights, data_dir))
    return TrainConfig(
        data=training_data(data, data_dir),
        archs=tuple(archs),
        epochs=_number(epochs, "epochs"),
        batch_size=_number(batch_size, "batch size"),
        image_size=_number(image_size, "image size"),
        lr=_number(lr, "learning rate", integer=False),
        patience=_number(patience, "patience"),
        seed=_number(seed, "seed"),
        device=(device or "auto").strip(),
        pretrained=weights,
        cutoffs=(cutoffs or "").strip() or DEFAULTS["cutoffs"],
    )


def _headline(status: dict[str, Any]) -> str:
    """State, progress and position of a job; its error as plain text (never rendered as Markdown)."""
    state = status["state"]
    parts = [f"**{status['job_id']}**: {state}", f"{status['progress']:.0%}"]
    if status.get("submitted_by"):
        parts.append(f"started by {plain_markdown(status['submitted_by'])}")
    if state == "running" and status["arch"]:
        parts.append(f"{status['arch']} epoch {status['epoch'] or 0}/{status['epochs']}")
    if status["cancel_requested"] and state == "running":
        parts.append("cancelling after this batch")
    text = " · ".join(parts)
    if status["error"]:
        text += f"\n\n**Error:** {plain_markdown(status['error'])}"
    return text


def _figures(status: dict[str, Any]) -> list[tuple[Image.Image, str]]:
    run_dir = Path(status["run_dir"])
    items = []
    for path in status["figures"]:
        with Image.open(path) as image:
            items.append((image.convert("RGB"), str(Path(path).relative_to(run_dir))))
    return items


def _job_choices(runner: JobRunner) -> list[tuple[str, str]]:
    return [(f"{job['job_id']} · {', '.join(job['archs'])}", job["job_id"]) for job in runner.list_jobs()]


def _user(request: gr.Request | None) -> str | None:
    return getattr(request, "username", None) if request is not None else None


def build_train_tab(settings: Settings, *, export_path: gr.components.Component | None = None) -> TrainTab:
    """Lay out the Train tab inside the caller's open gr.Blocks / gr.Tab and wire its events.
    The job runner's thread starts on the first page load or submit (never at build time)."""
    runner = JobRunner.shared(settings.data_dir)
    limits = settings.training
    demo_labels = str(settings.demo_dir / "labels.csv")
    sources = [SOURCES["demo"]] + ([SOURCES["export"]] if export_path is not None else []) + [SOURCES["path"]]

    gr.Markdown(INTRO)
    with gr.Row():
        with gr.Column(scale=1):
            source = gr.Radio(sources, value=SOURCES["demo"], label="Data set")
            data = gr.Textbox(demo_labels, label="Manifest (labels.csv) or class folder",
                              info="a path inside the data folder", interactive=False)
            data_info = gr.Markdown()
            archs = gr.CheckboxGroup(
                choices=[(spec.display_name, name) for name, spec in ARCHITECTURES.items()],
                value=list(DEFAULT_ARCHS), label="Architectures (all six = the study)",
            )
            extra = gr.Textbox(label="Other timm models (comma-separated)", placeholder="efficientnet_b0")
            with gr.Row():
                epochs = gr.Number(DEFAULTS["epochs"], label="Epochs", precision=0, minimum=1)
                batch_size = gr.Number(DEFAULTS["batch_size"], label="Batch size", precision=0, minimum=2)
                image_size = gr.Number(DEFAULTS["image_size"], label="Image size (px)", precision=0, minimum=8)
            with gr.Row():
                lr = gr.Number(DEFAULTS["lr"], label="Learning rate", minimum=0)
                patience = gr.Number(DEFAULTS["patience"], label="Early-stopping patience", precision=0, minimum=1)
                seed = gr.Number(DEFAULTS["seed"], label="Seed", precision=0)
            with gr.Row():
                device = gr.Dropdown(["auto", "cpu", "cuda", "mps"], value=DEFAULTS["device"], label="Device")
                pretrained = gr.Dropdown(
                    list(PRETRAINED_SOURCES), value=DEFAULTS["pretrained"], allow_custom_value=True,
                    label="ImageNet weights", info="auto: download if reachable · off · or a file in the data folder",
                )
                cutoffs = gr.Textbox(",".join(f"{value:g}" for value in DEFAULTS["cutoffs"]),
                                     label="MASI cut-offs", info="where moderate and severe begin")
            gr.Markdown(f"This server trains images up to {limits.max_image_size} px, {limits.max_epochs} epochs, "
                        f"batches of {limits.max_batch_size} and {limits.max_archs} architectures per job; "
                        f"{limits.max_jobs_per_user} waiting jobs per person.")
            with gr.Row():
                start = gr.Button("Start", variant="primary")
                cancel = gr.Button("Cancel", variant="stop")
        with gr.Column(scale=2):
            with gr.Row():
                job = gr.Dropdown(_job_choices(runner), label="Job", allow_custom_value=True, scale=3)
                state = gr.Textbox(label="State", interactive=False, scale=1)
            headline = gr.Markdown()
            curves = gr.Plot(label="Learning curves", format="png", elem_id="train-curves")
            log_box = gr.Textbox(label="Log", lines=10, max_lines=10, autoscroll=True, interactive=False)
    results = gr.DataFrame(label="Results (test set)", interactive=False, visible=False, wrap=True)
    notes = gr.Markdown()
    figures = gr.Gallery(label="Figures", columns=3, height="auto", object_fit="contain", visible=False)
    finished_run = gr.Textbox(visible=False)
    timer = gr.Timer(REFRESH_S, active=False)

    def pick_source(choice: str, exported: Any) -> gr.Textbox:
        if choice == SOURCES["demo"]:
            return gr.Textbox(value=demo_labels, interactive=False)
        if choice == SOURCES["export"]:
            return gr.Textbox(value=str(exported or ""), interactive=False)
        return gr.Textbox(interactive=True)

    def describe_data(path: str, cut: str) -> str:
        """Class counts and cut-offs of the chosen data set (only inside the data folder)."""
        if not (path or "").strip():
            return ""
        try:
            return data_summary(training_data(path, settings.data_dir),
                                parse_cutoffs((cut or "").strip() or DEFAULTS["cutoffs"]))
        except ValueError as error:
            return plain_markdown(str(error))

    def start_training(
        data: str, archs: list[str], extra_archs: str, epochs: float, batch_size: float,
        image_size: float, lr: float, patience: float, seed: float, device: str, pretrained: str,
        cut: str, request: gr.Request,
    ) -> str:
        """Queue a training job; returns its id."""
        user = _user(request)
        try:
            require(train_role(settings), user, settings)
            config = make_config(data, parse_archs(archs, extra_archs), epochs, batch_size, image_size, lr,
                                 patience, seed, device, pretrained, cut, data_dir=settings.data_dir)
            limits.check(config)
            require_memory_on_submit(config)
            return runner.submit(config, user=user, limits=limits)
        except (ValueError, AccessDenied) as error:
            raise gr.Error(str(error)) from error

    def training_status(job_id: str) -> dict:
        """State, progress, log tail, history rows and summary rows of a training job."""
        try:
            return runner.status(job_id)
        except JobNotFoundError as error:
            raise gr.Error(str(error)) from error

    def cancel_training(job_id: str | None, request: gr.Request) -> str:
        """Cancel a training job (its owner or a coordinator); returns its state now."""
        if not job_id:
            raise gr.Error("no job selected")
        user = _user(request)
        try:
            owner = runner.store.get(job_id)["submitted_by"]
        except JobNotFoundError as error:
            raise gr.Error(str(error)) from error
        if role_of(user, settings) is not Role.COORDINATOR and (user is None or user != owner):
            raise gr.Error("only the person who started this job or a coordinator can cancel it")
        return runner.cancel(job_id)

    def show(job_id: str | None) -> tuple[Any, ...]:
        """Everything shown for one job, drawn from the job store (or nothing when there is none)."""
        runner.start()  # after launch: the first page load or tick starts the queue's thread
        nothing = (gr.DataFrame(visible=False), "", gr.Gallery(visible=False), gr.skip(), gr.Timer(active=False))
        if not job_id:
            return ("", "No training job yet.", None, "") + nothing
        try:
            status = runner.status(job_id)
        except JobNotFoundError as error:
            return ("", plain_markdown(str(error)), None, "") + nothing
        ended = status["state"] in FINAL_STATES
        table = results_table(status["summary"])
        pictures = _figures(status) if ended else []
        return (
            status["state"],
            _headline(status),
            curves_figure(status["history"], status["archs"]),
            "\n".join(status["log"]),
            gr.DataFrame(table, visible=table is not None),
            results_note(status["summary"]),
            gr.Gallery(pictures, visible=bool(pictures)),
            status["run_dir"] if ended and status["summary"] else gr.skip(),
            gr.Timer(active=not ended),
        )

    def fill_form(job_id: str | None) -> tuple[Any, ...]:
        """The form set to a past job's settings (unchanged when the job is unknown)."""
        try:
            config = runner.store.get(job_id)["config"] if job_id else None
        except JobNotFoundError:
            config = None
        if config is None:
            return tuple(gr.skip() for _ in form)
        known = [name for name in config.get("archs", []) if name in ARCHITECTURES]
        others = [name for name in config.get("archs", []) if name not in ARCHITECTURES]
        demo = str(Path(demo_labels).resolve()) == config.get("data")
        return (
            SOURCES["demo"] if demo else SOURCES["path"],
            gr.Textbox(value=config.get("data"), interactive=not demo),
            known, ", ".join(others), config.get("epochs"), config.get("batch_size"), config.get("image_size"),
            config.get("lr"), config.get("patience"), config.get("seed"), config.get("device"),
            config.get("pretrained"), ",".join(f"{value:g}" for value in config.get("cutoffs", DEFAULTS["cutoffs"])),
        )

    def select(job_id: str | None = None) -> gr.Dropdown:
        """The job list now, showing `job_id` (default: the latest job)."""
        choices = _job_choices(runner)
        return gr.Dropdown(choices=choices, value=job_id or (choices[0][1] if choices else None))

    form = [source, data, archs, extra, epochs, batch_size, image_size, lr, patience, seed, device, pretrained,
            cutoffs]
    view = [state, headline, curves, log_box, results, notes, figures, finished_run, timer]
    quiet = {"api_visibility": "private", "show_progress": "hidden", "concurrency_limit": None}

    if export_path is not None:
        source.change(pick_source, [source, export_path], data, **quiet)
        export_path.change(pick_source, [source, export_path], data, **quiet)
    else:
        source.change(lambda choice: pick_source(choice, None), source, data, **quiet)
    gr.on([data.change, cutoffs.submit], describe_data, [data, cutoffs], data_info, **quiet)
    start.click(
        start_training,
        [data, archs, extra, epochs, batch_size, image_size, lr, patience, seed, device, pretrained, cutoffs],
        job, api_name="start_training", concurrency_limit=None,
    ).success(select, job, job, **quiet).then(show, job, view, **quiet)
    cancel.click(cancel_training, job, state, api_name="cancel_training", concurrency_limit=None
                 ).success(show, job, view, **quiet)
    gr.api(training_status, api_name="training_status", concurrency_limit=None)
    job.input(show, job, view, **quiet).then(fill_form, job, form, **quiet)
    timer.tick(show, job, view, **quiet)
    gr.on(None, select, None, job, **quiet).then(show, job, view, **quiet).then(
        describe_data, [data, cutoffs], data_info, **quiet)
    return TrainTab(runner=runner, data=data, archs=archs, start=start, cancel=cancel, job=job,
                    state=state, results=results, finished_run=finished_run, timer=timer)
