"""The shipped demo checkpoint loads, and its model card's metrics are what `evaluate` prints for it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from melasma.cli import main
from melasma.inference import default_checkpoint
from melasma.masi import SEVERITIES
from melasma.models import load_checkpoint

pytestmark = pytest.mark.slow

CARD = Path(__file__).resolve().parents[1] / "melasma" / "weights" / "README.md"
#: The card's data command, as arguments of `melasma.data.synthetic.generate`.
SYNTH_COMMAND = re.compile(r"python -m melasma synth --out (\S+) --n (\d+) --size (\d+) --seed (\d+)")
#: A metric row: "| Accuracy | 0.843 | 0.745-0.922 |" in the card, "Accuracy   0.843   0.745-0.922" printed.
CARD_ROW = re.compile(r"^\| ([A-Za-z][A-Za-z0-9 ]*?) \| (-?\d\.\d{3}) \| (-?\d\.\d{3})-(-?\d\.\d{3}) \|$", re.MULTILINE)
PRINTED_ROW = re.compile(r"^([A-Za-z][A-Za-z0-9 ]*?)\s+(-?\d\.\d{3})\s+(-?\d\.\d{3})-(-?\d\.\d{3})$", re.MULTILINE)


def card_metrics() -> dict[str, tuple[str, str, str]]:
    return {name: values for name, *values in CARD_ROW.findall(CARD.read_text())}


def test_demo_checkpoint_loads_and_is_small() -> None:
    directory = default_checkpoint()
    model, meta = load_checkpoint(directory)
    assert meta["classes"] == list(SEVERITIES)
    assert meta["arch"] in CARD.read_text()
    assert (directory / "model.safetensors").stat().st_size < 25 * 1024 * 1024
    assert sum(p.numel() for p in model.parameters()) > 0
    assert "not for clinical use" in CARD.read_text()


def test_card_metrics_match_metrics_json() -> None:
    card = card_metrics()
    assert {"Accuracy", "F1", "AUC macro", "QW kappa"} <= set(card), card
    stored = json.loads((default_checkpoint() / "metrics.json").read_text())
    keys = {"Accuracy": "accuracy", "F1": "f1_weighted", "AUC macro": "auc_macro", "QW kappa": "kappa_quadratic"}
    for title, key in keys.items():
        assert card[title][0] == f"{stored['metrics'][key]:.3f}", title


def test_evaluate_reproduces_the_card(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from melasma.data.synthetic import generate

    found = SYNTH_COMMAND.search(CARD.read_text())
    assert found, "the card must state the synth command"
    _, n, size, seed = found.groups()
    labels = generate(tmp_path / "demo_data", n=int(n), size=int(size), seed=int(seed))
    status = main(["evaluate", "--weights", str(default_checkpoint()), "--data", str(labels),
                   "--device", "cpu", "--cache-dir", str(tmp_path / "cache")])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "differs from the one the checkpoint was trained on" not in printed
    evaluated = {name: values for name, *values in PRINTED_ROW.findall(printed)}
    card = card_metrics()
    assert card, "the card has no metric rows"
    for name, values in card.items():
        assert evaluated.get(name) == values, f"{name}: card {values}, evaluate {evaluated.get(name)}"
