"""docs/benchmarks.md is generated from the benchmarks' records, and says what they say."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_page_is_what_the_records_give() -> None:
    result = subprocess.run([sys.executable, "tools/benchmarks_doc.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_record_names_its_command_machine_and_date() -> None:
    records = sorted((ROOT / "docs" / "measurements").glob("*.json"))
    assert records
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    for path in records:
        record = json.loads(path.read_text())
        assert record["command"].startswith("python benchmarks/") and record["machine"] and record["date"]
        assert record["command"] in page
