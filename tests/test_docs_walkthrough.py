"""The command-line round trip in docs/cli.md runs as written, in an empty folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- walkthrough: tests/test_docs_walkthrough.py runs the next bash block -->"


def walkthrough_block() -> str:
    """The bash block that follows the marker in docs/cli.md."""
    text = (ROOT / "docs" / "cli.md").read_text()
    match = re.search(re.escape(MARKER) + r"\s*```bash\n(.*?)```", text, re.DOTALL)
    assert match, "docs/cli.md lost its walkthrough block"
    return match.group(1)


def test_the_documented_round_trip_runs_and_writes_what_it_says(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("MELASMA_DATA_DIR", None)
    result = subprocess.run(["bash", "-c", walkthrough_block()], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    written = sorted(path.name for path in tmp_path.iterdir())
    assert written == ["agreement.png", "clinic", "demo", "exports", "lrp.png", "reports", "runs"]
    (export,) = (tmp_path / "exports").iterdir()
    manifest = (export / "manifest.csv").read_text().splitlines()
    assert len(manifest) == 3  # header + the two photos all three raters scored
    assert (tmp_path / "runs/first/resnet18/model.json").is_file()
    assert (tmp_path / "reports/summary.csv").is_file()
    assert '"severity": ' in result.stdout and '"masi": 7.1' in result.stdout


def readme_example(command: str) -> str:
    """The example of `command` in the README's command table (its last code span)."""
    text = (ROOT / "README.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith(f"| `{command}` |"))
    return re.findall(r"`([^`]+)`", row)[-1]


def followup_example() -> str:
    """The command under the README's Patients figure (it spans two lines there)."""
    text = " ".join((ROOT / "README.md").read_text().split())
    match = re.search(r"\(`(python -m melasma synth --visits [^`]+)`", text)
    assert match, "README lost its follow-up example"
    return match.group(1)


def test_the_readme_examples_run_as_written(tmp_path: Path) -> None:
    """From a folder laid out like the repository root (the examples name melasma/weights/demo): the demo
    set, the relevance report of the demo checkpoint on it, and the follow-up set in its own folder."""
    (tmp_path / "melasma").symlink_to(ROOT / "melasma", target_is_directory=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("MELASMA_DATA_DIR", None)
    examples = [readme_example("synth"), readme_example("explain-report"), followup_example()]
    assert "--data-dir followup-data" in examples[2]  # never the app's own data folder
    for example in examples:
        result = subprocess.run(["bash", "-c", example], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert result.returncode == 0, f"{example}\n{result.stderr[-3000:]}"
        assert "Traceback" not in result.stderr and "NaN" not in result.stdout
    assert (tmp_path / "reports" / "explain" / "summary.csv").is_file()
    assert (tmp_path / "followup-data" / "synthetic_photos.txt").is_file() and not (tmp_path / "data" / "photos").exists()
