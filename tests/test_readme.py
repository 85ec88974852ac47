"""The README is a front door: short, and it shows every command with an example."""

from __future__ import annotations

import re
from pathlib import Path

from melasma.cli import COMMANDS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_it_fits_on_two_screens() -> None:
    assert len(README.splitlines()) <= 150


def test_every_command_has_a_row_with_an_example() -> None:
    for command in COMMANDS:
        row = next((line for line in README.splitlines() if line.startswith(f"| `{command}` |")), None)
        assert row is not None, command
        assert re.findall(r"`([^`]+)`", row)[-1].startswith(f"python -m melasma {command}"), command


def test_every_linked_page_exists() -> None:
    root = Path(__file__).resolve().parents[1]
    for target in re.findall(r"\]\(((?:docs/|ARCHITECTURE)[^)#]+)", README):
        assert (root / target).is_file(), target
