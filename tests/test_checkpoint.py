"""Checkpoints: a safetensors + JSON round trip gives identical outputs; damage gives CheckpointError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from melasma.models import CheckpointError, create, load_checkpoint, save_checkpoint

pytestmark = pytest.mark.slow

META = {"classes": ["mild", "moderate", "severe"], "cutoffs": [16.0, 32.0], "image_size": 32,
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "metrics": {"auc": float("nan")}}


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = create("mobilenetv2_100").eval()
    return save_checkpoint(tmp_path / "run" / "mobilenetv2_100", model, META), model


def test_round_trip_gives_identical_outputs(saved) -> None:
    directory, model = saved
    loaded, meta = load_checkpoint(directory)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert not loaded.training and loaded.arch_name == "mobilenetv2_100"
    assert meta.arch == "mobilenetv2_100" and list(meta.classes) == META["classes"]
    assert meta.metrics["auc"] is None  # NaN is stored as JSON null
    assert {"torch", "torchvision", "timm", "melasma"} <= set(meta.extra["versions"]) and meta.created


def test_builder_options_survive(tmp_path: Path) -> None:
    imagenet = torchvision.models.googlenet(num_classes=1000, aux_logits=True, init_weights=True)
    save_file({k: v.contiguous() for k, v in imagenet.state_dict().items()}, str(tmp_path / "g.safetensors"))
    model = create("googlenet", pretrained=tmp_path / "g.safetensors").eval()
    loaded, meta = load_checkpoint(save_checkpoint(tmp_path / "ck", model, META))
    assert loaded.transform_input and meta.arch_kwargs == {"transform_input": True}
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_missing_files(saved) -> None:
    directory, _ = saved
    (directory / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        load_checkpoint(directory)
    (directory / "model.json").unlink()
    with pytest.raises(CheckpointError, match="model.json is missing"):
        load_checkpoint(directory)


def test_damaged_json(saved) -> None:
    directory, _ = saved
    (directory / "model.json").write_text('{"arch": "mobilenetv2_100", ')
    with pytest.raises(CheckpointError, match="model.json is damaged"):
        load_checkpoint(directory)
    (directory / "model.json").write_text('{"arch": "mobilenetv2_100"}')
    with pytest.raises(CheckpointError, match="lacks classes"):
        load_checkpoint(directory)


def test_damaged_weights(saved) -> None:
    directory, _ = saved
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="model.safetensors is damaged"):
        load_checkpoint(directory)


def _edit_meta(directory: Path, **changes: object) -> None:
    meta = json.loads((directory / "model.json").read_text())
    (directory / "model.json").write_text(json.dumps({**meta, **changes}))


def test_wrong_arch(saved) -> None:
    directory, _ = saved
    _edit_meta(directory, arch="resnet18")
    with pytest.raises(CheckpointError, match="does not fit resnet18"):
        load_checkpoint(directory)
    _edit_meta(directory, arch="no_such_net")
    with pytest.raises(CheckpointError, match="unknown architecture 'no_such_net'"):
        load_checkpoint(directory)


def test_shape_mismatch(saved) -> None:
    from safetensors.torch import load_file

    directory, _ = saved
    state = load_file(str(directory / "model.safetensors"))
    head = next(key for key in state if key.endswith("weight") and state[key].shape[0] == 3)
    state[head] = torch.zeros(4, *state[head].shape[1:])
    save_file(state, str(directory / "model.safetensors"))
    with pytest.raises(CheckpointError, match="does not fit mobilenetv2_100 with 3 classes: .*size mismatch") as info:
        load_checkpoint(directory)
    assert "\n" not in str(info.value)


def test_checkpoint_error_is_a_value_error() -> None:
    assert issubclass(CheckpointError, ValueError)
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_checkpoint("/nonexistent/run/resnet18")


def _meta(**changes: object) -> dict:
    return {**{key: value for key, value in META.items() if key != "metrics"}, "arch": "resnet18", **changes}


def test_older_model_json_gets_the_documented_fallbacks() -> None:
    from melasma.models.checkpoint import CheckpointMeta

    bare = CheckpointMeta.from_json(_meta())  # a checkpoint from before seed, head and the hash were recorded
    assert (bare.seed, bare.manifest_hash, bare.head.name, bare.pretrained, bare.created) == (
        0, None, "classification", "not recorded", None)
    assert (bare.data, bare.config, bare.metrics, bare.allow_patient_overlap) == ({}, {}, {}, False)
    nested = CheckpointMeta.from_json(_meta(data={"seed": 5, "manifest_hash": "abc"},
                                            config={"seed": 9, "allow_patient_overlap": True}))
    assert (nested.seed, nested.manifest_hash, nested.allow_patient_overlap) == (5, "abc", True)
    assert CheckpointMeta.from_json(_meta(config={"seed": 9})).seed == 9
    top = CheckpointMeta.from_json(_meta(seed=3, manifest_hash="top", data={"seed": 5, "manifest_hash": "abc"},
                                         head="regression", versions={"torch": "2"}))
    assert (top.seed, top.manifest_hash, top.head.name, top.extra) == (3, "top", "regression", {"versions": {"torch": "2"}})
    assert CheckpointMeta.from_json(_meta(data=[1], metrics="x")).data == {}  # not an object: empty


@pytest.mark.parametrize(("changes", "message"), [
    ({"seed": "7"}, "seed must be an integer"), ({"data": {"seed": True}}, "seed must be an integer"),
    ({"head": "ordinal"}, "head must be classification or regression"),
    ({"manifest_hash": 12}, "manifest_hash must be a string"), ({"pretrained": ["x"]}, "pretrained must be a string"),
])
def test_bad_optional_fields_are_refused_naming_the_key(changes: dict, message: str) -> None:
    from melasma.models.checkpoint import CheckpointMeta

    with pytest.raises(ValueError, match=message):
        CheckpointMeta.from_json(_meta(**changes))


def test_saving_writes_the_json_it_was_given(saved) -> None:
    directory, _ = saved
    stored = json.loads((directory / "model.json").read_text())
    assert {key: stored[key] for key in META} == {**META, "metrics": {"auc": None}}
    assert stored["arch"] == "mobilenetv2_100" and "seed" not in stored and "head" not in stored
