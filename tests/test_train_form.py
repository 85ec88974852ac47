"""The Train tab's form is one mapping TrainConfig field -> component: it builds the config and fills
the form from a past job, and the two agree (built in a Blocks, not served)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gradio as gr
import pytest

from melasma.jobs.execute import config_to_dict
from melasma.settings import Settings
from melasma.training import TrainConfig
from melasma.ui.train import DEFAULTS, FORM_FIELDS, SOURCES, build_train_tab, config_value, make_config, shown_value


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "labels.csv").write_text("path,masi\n")
    (tmp_path / "weights.safetensors").write_bytes(b"x")
    return tmp_path


def test_form_fields_are_train_config_fields_and_round_trip_the_defaults(data_dir: Path) -> None:
    assert set(FORM_FIELDS) <= {field.name for field in dataclasses.fields(TrainConfig)}
    for name in FORM_FIELDS:
        assert config_value(name, shown_value(name, DEFAULTS[name]), data_dir) == DEFAULTS[name]
    assert shown_value("cutoffs", (16.0, 32.0)) == "16,32"


def test_refusals_name_the_field(data_dir: Path) -> None:
    values = {name: shown_value(name, DEFAULTS[name]) for name in FORM_FIELDS}
    with pytest.raises(ValueError, match="batch size must be a whole number, got 2.5"):
        make_config("demo/labels.csv", ["resnet18"], {**values, "batch_size": 2.5}, data_dir=data_dir)
    with pytest.raises(ValueError, match="learning rate is required"):
        make_config("demo/labels.csv", ["resnet18"], {**values, "lr": None}, data_dir=data_dir)
    with pytest.raises(ValueError, match="cutoffs must satisfy"):
        make_config("demo/labels.csv", ["resnet18"], {**values, "cutoffs": "32,16"}, data_dir=data_dir)
    with pytest.raises(ValueError, match="choose a data set"):
        make_config(" ", ["resnet18"], values, data_dir=data_dir)


def test_a_past_job_fills_the_form_with_what_builds_its_config_again(data_dir: Path) -> None:
    config = TrainConfig(data=data_dir / "demo" / "labels.csv", archs=("resnet18", "test_resnet"), epochs=7,
                         batch_size=12, image_size=48, lr=3e-4, patience=2, seed=5, device="cpu",
                         pretrained=str(data_dir / "weights.safetensors"), cutoffs=(10.0, 30.0))
    with gr.Blocks():
        tab = build_train_tab(Settings(data_dir=data_dir))
    try:
        tab.runner.store.add("job-1", config_to_dict(config), data_dir / "runs" / "job-1")
        filled = tab.fill_form("job-1")
        assert filled[tab.source] == SOURCES["demo"]
        assert filled[tab.archs] == ["resnet18"] and filled[tab.extra] == "test_resnet"
        assert filled[tab.config_fields["cutoffs"]] == "10,30" and filled[tab.config_fields["epochs"]] == 7
        again = make_config(
            filled[tab.data].value, [*filled[tab.archs], filled[tab.extra]],
            {name: filled[component] for name, component in tab.config_fields.items()}, data_dir=data_dir)
        assert again == config
        assert list(tab.fill_form("no-such-job").values()) == [gr.skip()] * len(tab.form)  # left as they are
    finally:
        tab.runner.close()
