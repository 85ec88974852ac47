"""Command-line interface: one module per sub-command, each with `add_arguments` and `run`.

A sub-command module defines::

    HELP = "one line shown in `python -m melasma COMMAND --help`"
    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...   # the exit status
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

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
    "serve": ("serve", "start the Gradio app"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; only the chosen sub-command's module is imported."""
    parser = argparse.ArgumentParser(
        prog="python -m melasma",
        description="Melasma Severity Studio: MASI grading, CNN training and explained prediction.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, summary) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=summary, description=summary)
        if name == command:
            module = importlib.import_module(f"melasma.cli.{module_name}")
            command_parser.description = module.HELP
            module.add_arguments(command_parser)
            command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` and run the chosen sub-command; user errors print one line, no traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((word for word in argv if not word.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
