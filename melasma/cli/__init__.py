"""Command-line interface: one module per sub-command, each with `add_arguments` and `run`.

A sub-command module defines::

    HELP = "one line shown in `python -m melasma --help`"
    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...   # the exit status
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

#: sub-command name -> module under melasma.cli
COMMANDS: dict[str, str] = {
    "synth": "synth",
    "train": "train",
    "evaluate": "evaluate",
    "predict": "predict",
    "explain": "explain",
    "explain-report": "explain_report",
    "serve": "serve",
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(prog="python -m melasma", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"melasma.cli.{module_name}")
        command_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` and run the chosen sub-command; user errors print one line, no traceback."""
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
