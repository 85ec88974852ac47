"""The Train tab: pick a data set, architectures and hyper-parameters; Start queues a background job.

Jobs live on the server (`melasma.jobs.JobRunner`, persisted in ``DATA/jobs.sqlite``), so a page
reload, a second browser or a restarted app shows the same runs. A ``gr.Timer`` refreshes the
curves and log while a job is queued or running and stops once it has ended.
API (gradio_client): ``/start_training`` (data, archs, ...) -> job id, ``/training_status`` (job id)
-> dict, ``/cancel_training`` (job id) -> state.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from PIL import Image

from melasma.jobs import FINAL_STATES, JobNotFoundError, JobRunner
from melasma.masi import SEVERITIES
from melasma.models.registry import ARCHITECTURES
from melasma.settings import Settings
from melasma.training import TrainConfig
from melasma.training.report import TABLE_COLUMNS

SOURCES = {"demo": "Demo set", "export": "Annotate export", "path": "Path"}
DEFAULT_ARCHS = ("resnet18", "mobilenetv2_100")
REFRESH_S = 1.0
#: The form starts at TrainConfig's defaults (the study's protocol).
DEFAULTS = {spec.name: spec.default for spec in fields(TrainConfig)}
CURVE_COLUMNS = ("epoch", "value", "series")

INTRO = """
Train the study's CNNs on a labelled set (a `labels.csv` manifest or class folders). **Start**
queues a background job: one job trains at a time, others wait in order, and the job keeps running
if you close or reload this page. **Cancel** stops after the current batch and keeps the
architectures already finished. Finished checkpoints appear in the Predict tab.
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
    patience: float, seed: float, device: str, pretrained: str,
) -> TrainConfig:
    """A TrainConfig from the form's values; ValueError for a missing or invalid one."""
    if not (data or "").strip():
        raise ValueError("choose a data set: the demo set, the Annotate export or a path")
    return TrainConfig(
        data=Path(data.strip()).expanduser(),
        archs=tuple(archs),
        epochs=_number(epochs, "epochs"),
        batch_size=_number(batch_size, "batch size"),
        image_size=_number(image_size, "image size"),
        lr=_number(lr, "learning rate", integer=False),
        patience=_number(patience, "patience"),
        seed=_number(seed, "seed"),
        device=(device or "auto").strip(),
        pretrained=(pretrained or "auto").strip(),
    )


def _curves(history: list[dict[str, Any]], word: str) -> pd.DataFrame:
    """History rows -> long table (epoch, value, series) of the metrics whose name contains `word`."""
    rows = [
        {"epoch": row["epoch"], "value": value, "series": f"{row.get('arch')} {key.replace('_', ' ')}"}
        for row in history
        for key, value in row.items()
        if word in key and isinstance(value, (int, float)) and not isinstance(value, bool)
    ]
    table = pd.DataFrame(rows, columns=list(CURVE_COLUMNS))
    # numeric dtypes, also when empty: the plot picks quantitative axes from them
    return table.astype({"epoch": "int64", "value": "float64", "series": "str"})


def results_table(summary: list[dict[str, Any]]) -> pd.DataFrame | None:
    """The summary rows as Table 1 point estimates (3 decimals) plus epochs and training time."""
    if not summary:
        return None
    columns = {"arch": "Model", **TABLE_COLUMNS, **{f"auc_{name}": f"AUC {name}" for name in SEVERITIES},
               "epochs_run": "Epochs", "train_seconds": "Train s"}
    table = pd.DataFrame(summary)
    table = table[[column for column in columns if column in table]].rename(columns=columns)
    return table.round(3)


def _headline(status: dict[str, Any]) -> str:
    state = status["state"]
    parts = [f"**{status['job_id']}**: {state}", f"{status['progress']:.0%}"]
    if state == "running" and status["arch"]:
        parts.append(f"{status['arch']} epoch {status['epoch'] or 0}/{status['epochs']}")
    if status["cancel_requested"] and state == "running":
        parts.append("cancelling after this batch")
    text = " · ".join(parts)
    if status["error"]:
        text += f"\n\n**Error:** {status['error']}"
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


def build_train_tab(settings: Settings, *, export_path: gr.components.Component | None = None) -> TrainTab:
    """Lay out the Train tab inside the caller's open gr.Blocks / gr.Tab and wire its events."""
    runner = JobRunner.shared(settings.data_dir)
    demo_labels = str(settings.demo_dir / "labels.csv")
    sources = [SOURCES["demo"]] + ([SOURCES["export"]] if export_path is not None else []) + [SOURCES["path"]]

    gr.Markdown(INTRO)
    with gr.Row():
        with gr.Column(scale=1):
            source = gr.Radio(sources, value=SOURCES["demo"], label="Data set")
            data = gr.Textbox(demo_labels, label="Manifest (labels.csv) or class folder",
                              interactive=False)
            archs = gr.CheckboxGroup(
                choices=[(spec.display_name, name) for name, spec in ARCHITECTURES.items()],
                value=list(DEFAULT_ARCHS), label="Architectures (all six = the study)",
            )
            extra = gr.Textbox(label="Other timm models (comma-separated)", placeholder="efficientnet_b0")
            with gr.Row():
                epochs = gr.Number(DEFAULTS["epochs"], label="Epochs", precision=0, minimum=1)
                batch_size = gr.Number(DEFAULTS["batch_size"], label="Batch size", precision=0, minimum=1)
                image_size = gr.Number(DEFAULTS["image_size"], label="Image size (px)", precision=0, minimum=8)
            with gr.Row():
                lr = gr.Number(DEFAULTS["lr"], label="Learning rate", minimum=0)
                patience = gr.Number(DEFAULTS["patience"], label="Early-stopping patience", precision=0, minimum=1)
                seed = gr.Number(DEFAULTS["seed"], label="Seed", precision=0)
            with gr.Row():
                device = gr.Dropdown(["auto", "cpu", "cuda", "mps"], value=DEFAULTS["device"], label="Device")
                pretrained = gr.Dropdown(
                    ["auto", "off"], value=DEFAULTS["pretrained"], allow_custom_value=True,
                    label="ImageNet weights", info="auto: download if reachable · off · or a file path",
                )
            with gr.Row():
                start = gr.Button("Start", variant="primary")
                cancel = gr.Button("Cancel", variant="stop")
        with gr.Column(scale=2):
            with gr.Row():
                job = gr.Dropdown(_job_choices(runner), label="Job", allow_custom_value=True, scale=3)
                state = gr.Textbox(label="State", interactive=False, scale=1)
            headline = gr.Markdown()
            with gr.Row():
                loss_plot = gr.LinePlot(x="epoch", y="value", color="series", title="Loss", height=260)
                acc_plot = gr.LinePlot(x="epoch", y="value", color="series", title="Accuracy",
                                       height=260, y_lim=[0, 1])
            log_box = gr.Textbox(label="Log", lines=10, max_lines=10, autoscroll=True, interactive=False)
    results = gr.DataFrame(label="Results (test set)", interactive=False, visible=False)
    figures = gr.Gallery(label="Figures", columns=3, height="auto", object_fit="contain", visible=False)
    finished_run = gr.Textbox(visible=False)
    timer = gr.Timer(REFRESH_S, active=False)

    def pick_source(choice: str, exported: Any) -> gr.Textbox:
        if choice == SOURCES["demo"]:
            return gr.Textbox(value=demo_labels, interactive=False)
        if choice == SOURCES["export"]:
            return gr.Textbox(value=str(exported or ""), interactive=False)
        return gr.Textbox(interactive=True)

    def start_training(
        data: str, archs: list[str], extra_archs: str, epochs: float, batch_size: float,
        image_size: float, lr: float, patience: float, seed: float, device: str, pretrained: str,
    ) -> str:
        """Queue a training job; returns its id."""
        try:
            config = make_config(data, parse_archs(archs, extra_archs), epochs, batch_size,
                                 image_size, lr, patience, seed, device, pretrained)
        except ValueError as error:
            raise gr.Error(str(error)) from error
        return runner.submit(config)

    def training_status(job_id: str) -> dict:
        """State, progress, log tail, history rows and summary rows of a training job."""
        try:
            return runner.status(job_id)
        except JobNotFoundError as error:
            raise gr.Error(str(error)) from error

    def cancel_training(job_id: str | None) -> str:
        """Cancel a training job; returns its state now."""
        if not job_id:
            raise gr.Error("no job selected")
        try:
            return runner.cancel(job_id)
        except JobNotFoundError as error:
            raise gr.Error(str(error)) from error

    def show(job_id: str | None) -> tuple[Any, ...]:
        """Everything shown for one job (or nothing when there is none yet)."""
        empty = _curves([], "")
        nothing = (gr.DataFrame(visible=False), gr.Gallery(visible=False), gr.skip(), gr.Timer(active=False))
        if not job_id:
            return ("", "No training job yet.", empty, empty, "") + nothing
        try:
            status = runner.status(job_id)
        except JobNotFoundError as error:
            return ("", str(error), empty, empty, "") + nothing
        ended = status["state"] in FINAL_STATES
        table = results_table(status["summary"])
        pictures = _figures(status) if ended else []
        return (
            status["state"],
            _headline(status),
            _curves(status["history"], "loss"),
            _curves(status["history"], "acc"),
            "\n".join(status["log"]),
            gr.DataFrame(table, visible=table is not None),
            gr.Gallery(pictures, visible=bool(pictures)),
            status["run_dir"] if ended and status["summary"] else gr.skip(),
            gr.Timer(active=not ended),
        )

    def select(job_id: str | None = None) -> gr.Dropdown:
        """The job list now, showing `job_id` (default: the latest job)."""
        choices = _job_choices(runner)
        return gr.Dropdown(choices=choices, value=job_id or (choices[0][1] if choices else None))

    view = [state, headline, loss_plot, acc_plot, log_box, results, figures, finished_run, timer]
    quiet = {"api_visibility": "private", "show_progress": "hidden", "concurrency_limit": None}

    if export_path is not None:
        source.change(pick_source, [source, export_path], data, **quiet)
        export_path.change(pick_source, [source, export_path], data, **quiet)
    else:
        source.change(lambda choice: pick_source(choice, None), source, data, **quiet)
    start.click(
        start_training,
        [data, archs, extra, epochs, batch_size, image_size, lr, patience, seed, device, pretrained],
        job, api_name="start_training", concurrency_limit=None,
    ).success(select, job, job, **quiet).then(show, job, view, **quiet)
    cancel.click(cancel_training, job, state, api_name="cancel_training", concurrency_limit=None
                 ).success(show, job, view, **quiet)
    gr.api(training_status, api_name="training_status", concurrency_limit=None)
    job.input(show, job, view, **quiet)
    timer.tick(show, job, view, **quiet)
    gr.on(None, select, None, job, **quiet).then(show, job, view, **quiet)
    return TrainTab(runner=runner, data=data, archs=archs, start=start, cancel=cancel, job=job,
                    state=state, results=results, finished_run=finished_run, timer=timer)
