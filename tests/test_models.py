"""Model registry and factory: every study network builds and runs; local ImageNet-style weights load."""

from __future__ import annotations

import copy
import hashlib
import warnings
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

from melasma.models import ARCHITECTURES, create, get_spec, resolve_module
from melasma.models.factory import (
    OFFLINE_FALLBACK,
    RANDOM_INIT,
    PretrainedWeightsWarning,
    load_backbone,
    torchvision_cache_file,
)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_every_study_arch_builds_and_runs(arch: str) -> None:
    torch.manual_seed(0)
    model = create(arch).eval()
    assert model.arch_name == arch
    assert get_spec(model) is ARCHITECTURES[arch]
    assert isinstance(resolve_module(model, get_spec(arch).cam_layer), torch.nn.Module)
    with torch.no_grad():
        for size in sorted({get_spec(arch).min_size, 64}):
            logits = model(torch.rand(2, 3, size, size))
            assert logits.shape == (2, 3)
            assert torch.isfinite(logits).all()


def test_sources_follow_the_study() -> None:
    assert {a: s.source for a, s in ARCHITECTURES.items()} == {
        "alexnet": "torchvision", "googlenet": "torchvision", "resnet18": "timm", "vgg16": "timm",
        "densenet121": "timm", "mobilenetv2_100": "timm",
    }
    assert isinstance(create("alexnet"), torchvision.models.AlexNet)


def test_any_timm_name_gets_a_generic_spec() -> None:
    spec = get_spec("efficientnet_b0")
    assert (spec.source, spec.lrp_canonizer, spec.head) == ("timm", "generic", "classifier")
    model = create("efficientnet_b0", num_classes=4).eval()
    assert isinstance(resolve_module(model, spec.cam_layer), torch.nn.Module)
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 4)


def test_unknown_name_lists_the_six() -> None:
    with pytest.raises(ValueError, match="alexnet, googlenet, resnet18.*any timm model name"):
        get_spec("not_a_model_at_all")


def test_resolve_module_errors_clearly() -> None:
    model = create("resnet18")
    assert resolve_module(model, "layer4.-1") is model.layer4[-1]
    with pytest.raises(ValueError, match="layer9"):
        resolve_module(model, "layer9.0")


def _backbone_equal(model: torch.nn.Module, state: dict, head: str) -> None:
    own = model.state_dict()
    for key, value in state.items():
        if key in own and not key.startswith(head):
            assert torch.equal(own[key], value), key


def test_local_safetensors_weights_drop_the_imagenet_head(tmp_path) -> None:
    torch.manual_seed(1)
    imagenet = timm.create_model("resnet18", num_classes=1000)
    state = {k: v.contiguous() for k, v in imagenet.state_dict().items()}
    path = tmp_path / "resnet18.safetensors"
    save_file(state, str(path))
    model = create("resnet18", pretrained=path)
    assert model.fc.out_features == 3
    _backbone_equal(model, state, "fc.")
    assert sum(k.startswith("fc.") for k in model.state_dict()) == 2


def test_local_pth_weights_torchvision_googlenet(tmp_path) -> None:
    torch.manual_seed(2)
    imagenet = torchvision.models.googlenet(num_classes=1000, aux_logits=True, init_weights=True)
    state = imagenet.state_dict()
    path = tmp_path / "googlenet.pth"
    torch.save({"state_dict": state}, path)
    model = create("googlenet", pretrained=str(path))
    assert model.fc.out_features == 3 and model.transform_input
    _backbone_equal(model, state, "fc.")


def test_weights_of_another_arch_are_refused(tmp_path) -> None:
    path = tmp_path / "mobilenet.safetensors"
    save_file(timm.create_model("mobilenetv2_100").state_dict(), str(path))
    with pytest.raises(ValueError, match="do not fit resnet18: neither its own keys nor torchvision's"):
        create("resnet18", pretrained=path)
    with pytest.raises(ValueError, match="not found"):
        create("resnet18", pretrained=tmp_path / "absent.safetensors")


def test_pickled_objects_are_never_loaded(tmp_path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": object()}, path)
    with pytest.raises(ValueError, match="cannot read weights file evil.pth"):
        create("resnet18", pretrained=path)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network, empty torchvision and Hugging Face caches under tmp_path."""
    def refuse(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr("socket.create_connection", refuse)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path


def _torchvision_twin(arch: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    extra = {"aux_logits": True, "init_weights": True} if arch == "googlenet" else {}
    return getattr(torchvision.models, get_spec(arch).torchvision_weights)(weights=None, **extra).eval()


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_torchvision_weight_files_give_torchvision_logits(arch: str, tmp_path) -> None:
    twin = _torchvision_twin(arch, 3)
    if arch == "googlenet":
        twin.transform_input = True  # torchvision turns it on with ImageNet weights, as we do
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = twin(x)
    state = {k: v.contiguous() for k, v in twin.state_dict().items()}
    torch.save(state, tmp_path / f"{arch}.pth")
    save_file(state, str(tmp_path / f"{arch}.safetensors"))
    for path in (tmp_path / f"{arch}.pth", tmp_path / f"{arch}.safetensors"):
        model = create(arch, num_classes=1000, pretrained=path).eval()  # ImageNet head kept: comparable
        with torch.no_grad():
            assert torch.allclose(model(x), expected, atol=1e-5, rtol=0), path.name
        assert model.pretrained_source.startswith(f"file {path} sha256:")
    assert create(arch, pretrained=tmp_path / f"{arch}.pth").pretrained_source.startswith("file ")


def _publish(monkeypatch, arch: str, state: dict[str, torch.Tensor] | bytes) -> tuple[Path, str]:
    """Put `state` in the torchvision cache under a name whose hash prefix is its own sha256 (as
    torchvision's published files are named): torchvision's weights URL is pointed at that name."""
    weights = torchvision.models.get_model_weights(get_spec(arch).torchvision_weights)["IMAGENET1K_V1"]
    staging = torchvision_cache_file(get_spec(arch)).with_suffix(".staging")
    staging.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(state, bytes):
        staging.write_bytes(state)
    else:
        torch.save(state, staging)
    digest = hashlib.sha256(staging.read_bytes()).hexdigest()
    url = weights.url.rsplit("-", 1)[0] + f"-{digest[:8]}.pth"
    monkeypatch.setattr(weights.value, "url", url)
    cached = torchvision_cache_file(get_spec(arch))
    staging.rename(cached)
    return cached, digest


def test_auto_loads_torchvision_weights_from_the_local_cache_offline(offline, monkeypatch) -> None:
    twin = _torchvision_twin("densenet121", 4)
    state = twin.state_dict()
    old_style = {k.replace("norm1.", "norm.1.").replace("conv1.", "conv.1.") if "denselayer" in k else k: v
                 for k, v in state.items()}  # the key names of torchvision's published file
    assert torchvision_cache_file(get_spec("densenet121")) == (
        offline / "torch" / "hub" / "checkpoints" / "densenet121-a639ec97.pth")
    _, digest = _publish(monkeypatch, "densenet121", old_style)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning
        model = create("densenet121", pretrained="auto")
    assert model.pretrained_source == f"torchvision IMAGENET1K_V1 sha256:{digest}"  # model.json's `pretrained`
    _backbone_equal(model, state, "classifier")


def test_auto_falls_back_with_one_warning_when_nothing_is_cached(offline) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = create("mobilenetv2_100", pretrained="auto")
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "mobilenetv2_100" in messages[0] and "--pretrained" in messages[0]
    assert model.pretrained_source == OFFLINE_FALLBACK and model.classifier.out_features == 3
    assert create("mobilenetv2_100", pretrained="off").pretrained_source == RANDOM_INIT


def test_a_file_under_a_torchvision_name_with_another_hash_is_refused(offline) -> None:
    """A randomly initialised model saved as resnet18-f37072fd.pth is not torchvision's weights."""
    cached = torchvision_cache_file(get_spec("resnet18"))
    cached.parent.mkdir(parents=True)
    torch.save(_torchvision_twin("resnet18", 5).state_dict(), cached)
    with pytest.raises(ValueError, match=r"is not torchvision's file: its sha256 starts [0-9a-f]{8}, its name "
                                         r"says f37072fd") as refused:
        create("resnet18", pretrained="auto")
    assert "\n" not in str(refused.value)


def test_a_cached_file_that_does_not_fit_is_an_error_not_a_fallback(offline, monkeypatch) -> None:
    state = dict(_torchvision_twin("resnet18", 5).state_dict())
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    _publish(monkeypatch, "resnet18", state)
    with pytest.raises(ValueError, match="wrong shape .*conv1.weight"):
        create("resnet18", pretrained="auto")


def test_a_corrupt_cached_file_is_an_error_not_a_fallback(offline, monkeypatch) -> None:
    cached = torchvision_cache_file(get_spec("resnet18"))
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"PK\x03\x04 half a download")
    with pytest.raises(ValueError, match="resnet18-f37072fd.pth is not torchvision's file"):
        create("resnet18", pretrained="auto")
    cached.unlink()
    _publish(monkeypatch, "resnet18", b"PK\x03\x04 half a download")  # its hash matches its name
    with pytest.raises(ValueError, match="cannot read weights file resnet18-"):
        create("resnet18", pretrained="auto")


def test_nothing_remembers_that_the_hub_was_unreachable(offline, monkeypatch) -> None:
    """A fallback is decided per call: weights cached after it are used by the next call."""
    with pytest.warns(PretrainedWeightsWarning):
        assert create("resnet18", pretrained="auto").pretrained_source == OFFLINE_FALLBACK
    _, digest = _publish(monkeypatch, "resnet18", _torchvision_twin("resnet18", 7).state_dict())
    assert create("resnet18", pretrained="auto").pretrained_source == f"torchvision IMAGENET1K_V1 sha256:{digest}"


def test_timm_recipe_from_the_hugging_face_cache_offline(offline) -> None:
    snapshot = offline / "hf" / "models--timm--mobilenetv2_100.ra_in1k" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    torch.manual_seed(6)
    state = {k: v.contiguous() for k, v in timm.create_model("mobilenetv2_100").state_dict().items()}
    save_file(state, str(snapshot / "model.safetensors"))
    model = create("mobilenetv2_100", pretrained="timm")
    digest = hashlib.sha256((snapshot / "model.safetensors").read_bytes()).hexdigest()
    assert model.pretrained_source == f"timm mobilenetv2_100.ra_in1k sha256:{digest}"
    _backbone_equal(model, state, "classifier")


def test_a_hugging_face_blob_whose_sha256_is_not_its_name_is_refused(offline) -> None:
    repo = offline / "hf" / "models--timm--mobilenetv2_100.ra_in1k"
    snapshot, blobs = repo / "snapshots" / "abc123", repo / "blobs"
    snapshot.mkdir(parents=True)
    blobs.mkdir()
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    torch.manual_seed(6)
    state = {k: v.contiguous() for k, v in timm.create_model("mobilenetv2_100").state_dict().items()}
    blob = blobs / ("0" * 64)  # the hub names a blob by its sha256: this one lies
    save_file(state, str(blob))
    (snapshot / "model.safetensors").symlink_to(blob)
    with pytest.raises(ValueError, match="is damaged: its sha256 is"):
        create("mobilenetv2_100", pretrained="timm")
    digest = hashlib.sha256(blob.read_bytes()).hexdigest()
    blob.rename(blobs / digest)
    (snapshot / "model.safetensors").unlink()
    (snapshot / "model.safetensors").symlink_to(blobs / digest)
    assert create("mobilenetv2_100", pretrained="timm").pretrained_source.endswith(f"sha256:{digest}")


def test_load_backbone_reports_shape_mismatch() -> None:
    model = create("resnet18")
    state = dict(model.state_dict())
    state["conv1.weight"] = torch.zeros(1, 1, 1, 1)
    with pytest.raises(ValueError, match="wrong shape .*conv1.weight"):
        load_backbone(model, state)


def test_dense_convolutions_match_conv2d_and_only_vgg16_fc1_becomes_one() -> None:
    """VGG16's 7 x 7 head convolution over a 7 x 7 map runs as a matrix product (oneDNN re-lays its
    411 MB weight out per call); values, gradients and other input sizes as nn.Conv2d's."""
    from torch import nn

    from melasma.models.dense_conv import DenseConv2d, use_dense_convolutions

    generator = torch.Generator().manual_seed(0)
    for memory_format in (torch.contiguous_format, torch.channels_last):
        conv = nn.Conv2d(6, 5, 3).to(memory_format=memory_format)
        dense = copy.deepcopy(conv)
        assert use_dense_convolutions(dense, min_weights=1) == 1 and type(dense) is DenseConv2d
        for size in (3, 5):  # the kernel covers the input (a matrix product), then slides (a convolution)
            x = torch.randn(2, 6, size, size, generator=generator).contiguous(memory_format=memory_format)
            x.requires_grad_(True)
            expected = conv(x)
            (expected_grad,) = torch.autograd.grad(expected.sum(), x)
            ours = dense(x)
            (our_grad,) = torch.autograd.grad(ours.sum(), x)
            torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(our_grad, expected_grad, rtol=1e-5, atol=1e-6)
    vgg = create("vgg16")
    assert [n for n, m in vgg.named_modules() if isinstance(m, DenseConv2d)] == ["pre_logits.fc1"]
    assert not any(isinstance(m, DenseConv2d) for m in create("resnet18").modules())
