"""`python -m melasma serve`: start the web app (the same as `python app.py`)."""

from __future__ import annotations

import argparse
import os

from melasma.cli.arguments import check_port_free, port
from melasma.cli.settings_flags import settings_from_args
from melasma.errors import UserError

HELP = "start the web app (Annotate, Train, Predict, Patients tabs)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (default: GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--port", type=port, help="port (default: GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--data-dir", help="data folder (default: MELASMA_DATA_DIR or ./data)")
    parser.add_argument("--raters", help="comma-separated rater names (default: MELASMA_RATERS)")
    parser.add_argument("--auth", help="user:password,... sign-in (default: MELASMA_AUTH)")
    parser.add_argument("--database-url", help="rater store: postgresql://... (default: MELASMA_DATABASE_URL)")
    parser.add_argument("--examples", help="folder of real photos the Predict tab offers first, credited from "
                        "an ATTRIBUTION.md beside them (default: MELASMA_EXAMPLES_DIR)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument("--local-mode", action="store_const", const="1",
                        help="without sign-in, make everyone who reaches the app the coordinator even when it "
                        "listens beyond 127.0.0.1 (default: MELASMA_LOCAL_MODE; only behind your own access control)")


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)  # bad settings fail fast, before torch and Gradio load
    number = args.port
    if number is None and os.environ.get("GRADIO_SERVER_PORT"):
        try:
            number = port(os.environ["GRADIO_SERVER_PORT"])
        except argparse.ArgumentTypeError as error:
            raise UserError(f"GRADIO_SERVER_PORT: {error}") from None
    if number is not None:  # a busy port is refused here, before any thread or model starts
        check_port_free(args.host or os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1", number)
    # deferred: imports gradio and torch; --help stays instant
    from melasma.ui.app import serve

    serve(settings, host=args.host, port=args.port, share=args.share)
    return 0
