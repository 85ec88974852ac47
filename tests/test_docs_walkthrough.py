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
