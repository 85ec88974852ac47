"""`--help` is instant: train, jobs, explain and explain-report print their usage without importing torch
(it took 19-23 s when the sub-command modules imported it first)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import contextlib, io, sys
from melasma.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        main(sys.argv[1:] + ["--help"])
    except SystemExit:
        pass
assert "usage:" in out.getvalue(), out.getvalue()
print(sorted(name for name in ("torch", "timm", "gradio") if name in sys.modules))
"""


@pytest.mark.parametrize("command", [["train"], ["jobs"], ["jobs", "submit"], ["explain"], ["explain-report"]])
def test_help_imports_no_torch(command: list[str]) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, *command], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
