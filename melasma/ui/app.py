"""The app shell: the four tabs in one ``gr.Blocks``, first-start demo data, and launching.

``build_app`` composes the tabs (Annotate -> Train -> Predict); ``serve`` is the one code path
that ``python app.py``, ``python -m melasma serve`` and the live-server tests all launch through.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import fastapi
import gradio as gr
from starlette.middleware import Middleware

from melasma.access import GUEST, visitor_only
from melasma.data.synthetic import generate
from melasma.errors import UserError
from melasma.inference import default_checkpoint, warm_up_in_background
from melasma.jobs import JobRunner
from melasma.layout import DataLayout
from melasma.settings import Settings
from melasma.ui.annotate import build_annotate_tab
from melasma.ui.components import wrap_every_handler
from melasma.ui.examples import real_examples, synthetic_examples
from melasma.ui.landing import Landing
from melasma.ui.lanes import RATING_LANE, separate_lanes
from melasma.ui.patients import build_patients_tab
from melasma.ui.predict import build_predict_tab
from melasma.ui.theme import CSS, build_theme
from melasma.ui.train import build_train_tab
from melasma.ui.uploads import UploadBudget

log = logging.getLogger(__name__)

TITLE = "Melasma Severity Studio"
#: Size of the synthetic demo set written on first start (small: it must not delay start-up).
DEMO_IMAGES = 60
DEMO_SIZE = 256
#: Gradio's cache clean-up: every 30 min, delete cached files (uploads, results) older than 1 h.
DELETE_CACHE = (1800, 3600)
#: Most events waiting per concurrency group (Predict, Train, ...), and for ratings.
LANE_SIZE = 64
RATING_LANE_SIZE = 512

HEADER = f"""
# {TITLE}
Grade melasma (MASI) from facial photos: **Annotate** photos with three blinded raters,
**Train** the study's CNNs on the consensus labels, **Predict** a severity and see why (LRP, Grad-CAM).
"""
FOOTER = (
    "Research software, not a medical device: predictions are not a diagnosis. "
    "Each checkpoint's measured worth on real photos is shown beside its predictions."
)


def ensure_demo_data(settings: Settings) -> Path:
    """Generate the synthetic demo set into ``settings.demo_dir`` unless its labels.csv exists."""
    labels = settings.demo_dir / "labels.csv"
    if labels.is_file():
        return labels

    log.info("first start: writing %d synthetic demo images to %s", DEMO_IMAGES, settings.demo_dir)
    return generate(settings.demo_dir, n=DEMO_IMAGES, seed=0, size=DEMO_SIZE)


def oauth_enabled(settings: Settings) -> bool:
    """Whether raters sign in with Hugging Face: ``MELASMA_OAUTH=1`` on a Space (``hf_oauth: true``)."""
    if not settings.oauth:
        return False
    if not settings.space_id:
        raise UserError("MELASMA_OAUTH=1 works only on a Hugging Face Space with hf_oauth: true")
    return True


def hf_username(request: fastapi.Request) -> str:
    """``launch(auth_dependency=...)`` under OAuth: the signed-in Hugging Face user, else GUEST
    (also when the session's ``expires_at`` is past or not a number, or the session is malformed; a
    session without ``expires_at`` is kept, as Gradio keeps it)."""
    if "session" not in request.scope:
        return GUEST
    info = request.session.get("oauth_info")
    if not isinstance(info, dict):
        return GUEST
    expires_at = info.get("expires_at")
    if expires_at is not None and (isinstance(expires_at, bool) or not isinstance(expires_at, int | float)
                                   or expires_at <= time.time()):
        return GUEST
    userinfo = info.get("userinfo")
    name = userinfo.get("preferred_username") if isinstance(userinfo, dict) else None
    return name if isinstance(name, str) and name and name != GUEST else GUEST


def build_app(settings: Settings, *, oauth: bool | None = None) -> gr.Blocks:
    """The whole app: header, the Annotate / Train / Predict tabs, footer. Writes demo data once."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    ensure_demo_data(settings)
    oauth = oauth_enabled(settings) if oauth is None else oauth
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=DELETE_CACHE) as demo:
        with gr.Row(equal_height=True):
            gr.Markdown(HEADER, elem_classes="melasma-header")
            if oauth:
                gr.LoginButton(scale=0, min_width=220)
        # on a phone the tab bar wraps onto a second line: no tab hides behind a "..." menu
        with gr.Tabs(overflow_behavior="wrap") as top_tabs:
            with gr.Tab("Annotate", id="annotate"):
                annotate = build_annotate_tab(settings)
            with gr.Tab("Train", id="train"):
                train = build_train_tab(settings, export_path=annotate.export_path)
            with gr.Tab("Predict", id="predict"):
                predict = build_predict_tab(settings)
            with gr.Tab("Patients", id="patients") as patients_tab:
                patients = build_patients_tab(settings, patients_tab)
        gr.Markdown(FOOTER, elem_classes="melasma-footer")
        demo.load(annotate.welcome, None, [annotate.banner, *annotate.tabs.values()],
                  api_visibility="private", show_progress="hidden")
        demo.load(patients.visibility, None, patients.tab, api_visibility="private", show_progress="hidden")
        demo.load(Landing(settings), None, top_tabs, api_visibility="private", show_progress="hidden")
        # A finished training run's checkpoints become selectable in Predict without a reload.
        train.finished_run.change(
            predict.refresh_choices, None, predict.checkpoint, api_visibility="private",
            show_progress="hidden",
        )
    wrap_every_handler(demo)  # chained steps and lambdas too: no answer without a message
    return demo


def private_files(settings: Settings) -> list[Path]:
    """What in the data folder the web server refuses to serve even if a handler returned it: the
    SQLite stores and journals, the stored photos, the exports, the runs (logs, checkpoints,
    metrics) and the caches (decoded images, machine MASI). Handlers hand out copies to those
    allowed; the allow-list is `served_files`."""
    layout = DataLayout(settings.data_dir.resolve())
    return [*layout.databases, layout.photos_dir, layout.exports_dir, layout.runs_dir, layout.cache_dir]


def example_files(settings: Settings) -> list[str]:
    """The example photos the Predict tab offers: the real ones (``--examples``), then the synthetic
    demo photos it shows (exact files, not their folders)."""
    found = [real_examples(settings.examples_dir), synthetic_examples(settings.demo_dir)]
    return [str(path.resolve()) for examples in found if examples for path in examples.photos]


def served_files(settings: Settings) -> list[str]:
    """The allow-list of files the web server serves by URL besides Gradio's own upload and cache
    folders: the example photos the pages show, nothing else of the data folder."""
    return example_files(settings)


def launch_options(settings: Settings, *, oauth: bool | None = None) -> dict[str, Any]:
    """The ``launch()`` keyword arguments every entry point shares (auth, upload cap, theme)."""
    oauth = oauth_enabled(settings) if oauth is None else oauth
    if oauth and settings.auth:
        raise UserError("choose one sign-in: MELASMA_AUTH (passwords) or MELASMA_OAUTH (Hugging Face)")
    options: dict[str, Any] = {
        "max_file_size": settings.max_upload_mb * 1024 * 1024,
        "theme": build_theme(),
        "css": CSS,
        # An allow-list: only the example photos the pages show (those files, not their folders).
        # Handlers hand out copies of private files (PhotoStage) in Gradio's upload folder; the
        # databases, photos, exports, runs and caches are also blocked outright.
        "allowed_paths": served_files(settings),
        "blocked_paths": [str(path) for path in private_files(settings)],
        # Per-client and server-wide upload budgets per hour, checked from Content-Length before storing.
        "app_kwargs": {"middleware": [Middleware(UploadBudget, per_client_mb=settings.upload_budget_mb_per_user,
                                                 total_mb=settings.upload_budget_mb)]},
    }
    if settings.auth:
        options["auth"] = [tuple(pair) for pair in settings.auth]
        options["auth_message"] = "Sign in with your name and password."
    if oauth:
        options["auth_dependency"] = hf_username
    return options


def bound_settings(settings: Settings, *, host: str | None, share: bool) -> Settings:
    """The settings with the address the app will listen on and whether a share link is opened:
    the roles depend on who can reach the app."""
    return dataclasses.replace(settings, server_name=settings.server_name if host is None else host,
                               public_link=settings.public_link or share)


def serve(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    share: bool = False,
    **launch_kwargs: Any,
) -> gr.Blocks:
    """Build, queue and launch the app. Host/port go to Gradio only when given, so that
    GRADIO_SERVER_NAME / GRADIO_SERVER_PORT keep working; on a Space the host is 0.0.0.0.
    Without sign-in, the app is local (one coordinator) only on a loopback address; on a Space, any
    other address or a share link it is visitor-only unless MELASMA_LOCAL_MODE=1 (``melasma.access``)."""
    if host is None and settings.space_id and not settings.server_name:
        host = "0.0.0.0"
    settings = bound_settings(settings, host=host, share=share)
    if visitor_only(settings):
        log.warning("visitor-only mode: reachable from other machines without sign-in, so everyone may use "
                    "Predict only; set MELASMA_AUTH or MELASMA_OAUTH (or MELASMA_LOCAL_MODE=1) to annotate")
    demo = build_app(settings)  # first: it writes the demo photos that launch_options allows
    options = launch_options(settings)
    demo.queue(default_concurrency_limit=2)
    separate_lanes(demo, LANE_SIZE, {RATING_LANE: RATING_LANE_SIZE})
    if host is not None:
        options["server_name"] = host
    if port is not None:
        options["server_port"] = port
    block = not launch_kwargs.pop("prevent_thread_lock", False)
    demo.launch(share=share, prevent_thread_lock=True, **options, **launch_kwargs)
    # Background threads start only once the server is up, never during imports (ZeroGPU's `spaces`
    # import hook could deadlock a thread importing torch while the main thread imports).
    warm_up = warm_up_in_background(default_checkpoint())
    atexit.register(warm_up.join)  # exiting while that thread is inside torch would abort the process
    JobRunner.shared(settings.data_dir).start()  # queued jobs of a restarted app run without a page visit
    if block:
        demo.block_thread()
    return demo
