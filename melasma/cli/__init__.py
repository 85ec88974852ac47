"""Command-line interface: one module per sub-command, each with `add_arguments` and `run`.

A sub-command module defines::

    HELP = "one line shown in `python -m melasma COMMAND --help`"
    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...   # the exit status

Flags are typed with the validators of `melasma.cli.arguments`. Every failure ends with one line
`error: <message>` on stderr (a data set's list of problems follows it, indented) and no traceback:
exit status 2 for usage and bad values (argparse errors, melasma.errors.UserError: our own error types
derive from it), 1 for run-time failures (OSError, torch's RuntimeError, MemoryError, ImportError of a
package that is not installed). `--debug` (before the command) or MELASMA_DEBUG=1 shows the traceback.
Any other error (a ValueError or KeyError from a bug in numpy, torch, pandas or here) is not a refusal:
it ends with its traceback, exit status 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

from melasma.errors import UserError

#: sub-command name -> (module under melasma.cli, one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("synth", "generate the labelled synthetic demo data set"),
    "ingest": ("ingest", "add photos or zips to the data folder for rating"),
    "rate": ("rate", "store one rater's MASI scores for a photo (or show the next photo)"),
    "agreement": ("agreement", "rater agreement statistics as JSON (and a scatter plot)"),
    "export": ("export", "export the consensus training manifest and the ratings table"),
    "train": ("train", "train one or more CNNs with the study's protocol"),
    "jobs": ("jobs", "the training queue shared with the Train tab: submit, list, status, cancel, work"),
    "evaluate": ("evaluate", "evaluate a checkpoint on a data set's test split"),
    "predict": ("predict", "predict the severity of photos (one JSON line each)"),
    "explain": ("explain", "write an LRP / Grad-CAM / gradient x input overlay for a photo"),
    "explain-report": ("explain_report", "relevance, localisation and faithfulness report"),
    "lesions": ("lesions", "train the lesion model on photos with lesion outlines"),
    "regions": ("regions", "find and measure the four MASI face regions of photos (JSON lines, overlays)"),
    "serve": ("serve", "start the Gradio app"),
    "db": ("db", "rater-store database tools: migrate an SQLite store to PostgreSQL"),
    "visits-ingest": ("visits_ingest", "add visit photos from a CSV manifest or a <patient>_<date> folder"),
    "timeline": ("timeline", "a patient's course over visits: change from baseline, MASI-50/75, figures"),
}


#: Failures that are the user's input (exit 2) or the run's circumstances (exit 1).
USAGE_ERRORS: tuple[type[BaseException], ...] = (UserError,)
RUNTIME_ERRORS: tuple[type[BaseException], ...] = (OSError, RuntimeError, MemoryError, ImportError)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors end with a plain `error: <message>` line (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {message}\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; only the chosen sub-command's module is imported."""
    parser = Parser(
        prog="melasma" if os.path.basename(sys.argv[0]) == "melasma" else "python -m melasma",  # console script
        description="Melasma Severity Studio: MASI grading, CNN training and explained prediction.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (also MELASMA_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, summary) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=summary, description=summary)
        if name == command:
            module = importlib.import_module(f"melasma.cli.{module_name}")
            command_parser.description = module.HELP
            module.add_arguments(command_parser)
            command_parser.set_defaults(_run=module.run)
    return parser


#: Most problem lines of a listing error (e.g. a data set's "3 problem(s):" and its "  - ..." items) shown.
MAX_LISTED_PROBLEMS = 20


def _message(error: BaseException) -> str:
    """The error's first line, plus its indented list of problems if it has one (never a traceback)."""
    text = str(error).strip()
    if isinstance(error, OSError) and error.filename and error.strerror:
        text = f"{error.filename}: {error.strerror}"
    lines = text.splitlines() or [type(error).__name__]
    first = lines[0] if len(lines[0]) <= 500 else lines[0][:497] + "..."
    listed = [line for line in lines[1:] if line.startswith("  - ")]
    if len(listed) > MAX_LISTED_PROBLEMS:
        listed = listed[:MAX_LISTED_PROBLEMS] + [f"  ... and {len(listed) - MAX_LISTED_PROBLEMS} more"]
    return "\n".join([first, *listed])


def dispatch(run: Callable[[argparse.Namespace], int | None], args: argparse.Namespace, *, debug: bool = False) -> int:
    """Run a sub-command's `run(args)` and return its exit status: a refusal (`USAGE_ERRORS`, 2) or a
    run-time failure (`RUNTIME_ERRORS`, 1) prints one `error:` line (plus any listed problems) and, with
    `debug`, the traceback; any other error (a bug) propagates with its traceback."""
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (*USAGE_ERRORS, *RUNTIME_ERRORS) as error:
        if debug:
            traceback.print_exc()
        print(f"error: {_message(error)}", file=sys.stderr)
        return 2 if isinstance(error, USAGE_ERRORS) else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` and run the chosen sub-command (see `dispatch`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((word for word in argv if not word.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    return dispatch(args._run, args, debug=args.debug or os.environ.get("MELASMA_DEBUG") == "1")
