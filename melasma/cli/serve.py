"""`python -m melasma serve`: start the web app (the same as `python app.py`)."""

from __future__ import annotations

import argparse
import os

from melasma.settings import Settings

HELP = "start the web app (Annotate, Train, Predict tabs)"

#: flag -> the environment variable it overrides
FLAG_ENV = {"data_dir": "MELASMA_DATA_DIR", "raters": "MELASMA_RATERS", "auth": "MELASMA_AUTH"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (default: GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--data-dir", help="data folder (default: MELASMA_DATA_DIR or ./data)")
    parser.add_argument("--raters", help="comma-separated rater names (default: MELASMA_RATERS)")
    parser.add_argument("--auth", help="user:password,... sign-in (default: MELASMA_AUTH)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")


def settings_from_args(args: argparse.Namespace, env: dict[str, str] | None = None) -> Settings:
    """Settings from the environment with the flags that were given laid over it."""
    merged = dict(os.environ if env is None else env)
    for attr, variable in FLAG_ENV.items():
        value = getattr(args, attr, None)
        if value is not None:
            merged[variable] = value
    return Settings.from_env(merged)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)  # bad settings fail fast, before torch and Gradio load
    if args.port is not None and not 0 < args.port < 65536:
        raise ValueError(f"--port must be 1-65535, got {args.port}")
    from melasma.ui.app import serve

    serve(settings, host=args.host, port=args.port, share=args.share)
    return 0
