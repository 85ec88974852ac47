"""One refusal type (issue 28): the project's refusals are UserErrors and the CLI shows only them (and
run-time failures) as one `error:` line; a ValueError from a bug keeps its traceback."""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from melasma.cli import dispatch
from melasma.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def test_no_error_class_derives_from_valueerror_but_through_usererror() -> None:
    """A new refusal type that skipped UserError would show as a bug's traceback in the CLI and the app."""
    direct = []
    for path in [*ROOT.glob("melasma/**/*.py"), *ROOT.glob("annotation/**/*.py"), ROOT / "app.py"]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef) and any(getattr(base, "id", "") == "ValueError" for base in node.bases):
                direct.append(f"{path.relative_to(ROOT)}:{node.name}")
    assert direct == ["melasma/errors.py:UserError"]


def test_the_refusal_types_are_user_errors_and_still_value_errors() -> None:
    from annotation.store import ImageClosedError
    from melasma.data.splits import DatasetError
    from melasma.jobs.limits import LimitError
    from melasma.models.checkpoint import CheckpointError

    for kind in (ImageClosedError, DatasetError, LimitError, CheckpointError):
        assert issubclass(kind, UserError) and issubclass(kind, ValueError)


def _refuse(error: Exception) -> Callable[[argparse.Namespace], int]:
    """A sub-command's `run` that fails with `error`."""
    def run(args: argparse.Namespace) -> int:
        raise error
    return run


def test_a_refusal_is_one_error_line_with_exit_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert dispatch(_refuse(UserError("--scores must be 12 comma-separated integers")), argparse.Namespace()) == 2
    assert capsys.readouterr().err == "error: --scores must be 12 comma-separated integers\n"


def test_a_run_time_failure_is_one_error_line_with_exit_status_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert dispatch(_refuse(FileNotFoundError(2, "No such file or directory", "labels.csv")),
                    argparse.Namespace()) == 1
    assert capsys.readouterr().err == "error: labels.csv: No such file or directory\n"


@pytest.mark.parametrize("bug", [ValueError("operands could not be broadcast together with shapes (3,) (4,)"),
                                 KeyError("masi")])
def test_a_bug_propagates_with_its_traceback(bug: Exception, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(type(bug)) as raised:
        dispatch(_refuse(bug), argparse.Namespace())
    assert raised.value is bug and "error:" not in capsys.readouterr().err


def test_a_bug_in_the_command_line_ends_with_a_traceback_and_exit_status_1() -> None:
    """What a person running `python -m melasma` sees for a ValueError that is not a UserError."""
    script = ("import argparse, sys\nfrom melasma.cli import dispatch\nfrom melasma.errors import UserError\n"
              "def run(args):\n    raise (UserError if args.refusal else ValueError)('shapes (3,) and (4,) not aligned')\n"
              "sys.exit(dispatch(run, argparse.Namespace(refusal=sys.argv[1] == 'refusal')))\n")
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    bug, refusal = (subprocess.run([sys.executable, "-c", script, which], capture_output=True, text=True,
                                   cwd=ROOT, env=environment, check=False) for which in ("bug", "refusal"))
    assert bug.returncode == 1 and "Traceback (most recent call last)" in bug.stderr
    assert bug.stderr.strip().splitlines()[-1] == "ValueError: shapes (3,) and (4,) not aligned"
    assert refusal.returncode == 2 and refusal.stderr == "error: shapes (3,) and (4,) not aligned\n"
