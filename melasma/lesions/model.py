"""`LesionModel`: the lesion map of a photo, and the model's files (safetensors + JSON).

Files: `model.safetensors` holds the decoder in fp16 (the encoder is the packaged ImageNet
EfficientNet-Lite0, checked by its sha256 at load), `model.json` what it is and how it was made.
Nothing is unpickled. A missing, truncated or ill-fitting file is refused with one line naming it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from melasma.errors import UserError
from melasma.jsonable import jsonable
from melasma.lesions.net import ENCODER, OUTPUT_STRIDE, FpnDecoder, LesionNet
from melasma.lesions.train import to_input
from melasma.models.packaged import PACKAGED
from melasma.regions.find import as_rgb

WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"
FORMAT = "melasma-lesions/1"


class LesionModelError(UserError):
    """A lesion model folder that cannot be used (missing, truncated or ill-fitting files)."""


@dataclass(frozen=True)
class LesionMeta:
    """What `model.json` records."""

    size: int  # the input side the model was trained at
    threshold: float  # probability above which a cell is lesion
    encoder: str = ENCODER
    encoder_source: str = ""
    encoder_sha256: str = ""
    output_stride: int = OUTPUT_STRIDE
    format: str = FORMAT
    training: dict[str, Any] = field(default_factory=dict)  # config, data, seconds, machine
    metrics: dict[str, Any] = field(default_factory=dict)  # cross-validated benchmark numbers

    @classmethod
    def parse(cls, data: object, source: str) -> LesionMeta:
        """Checked against the expected keys and types; LesionModelError names what is wrong."""
        if not isinstance(data, dict):
            raise LesionModelError(f"{source}: expected a JSON object")
        if data.get("format") != FORMAT:
            raise LesionModelError(f"{source}: format {data.get('format')!r} is not {FORMAT!r}")
        if data.get("encoder") != ENCODER or data.get("encoder_sha256") != PACKAGED[ENCODER].sha256:
            raise LesionModelError(f"{source}: trained on another encoder than the packaged {ENCODER}")
        size, threshold = data.get("size"), data.get("threshold")
        if not isinstance(size, int) or size % 32 or not 64 <= size <= 1024:
            raise LesionModelError(f"{source}: size must be a multiple of 32 in 64-1024, got {size!r}")
        if not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
            raise LesionModelError(f"{source}: threshold must lie in (0, 1), got {threshold!r}")
        known = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        for key in ("training", "metrics"):
            if not isinstance(known.get(key, {}), dict):
                raise LesionModelError(f"{source}: {key} must be an object")
        return cls(**known)


class LesionModel:
    """A trained lesion model: `probability(photo)` gives the lesion probability of every pixel."""

    def __init__(self, net: LesionNet, meta: LesionMeta) -> None:
        self.net = net.eval()
        self.meta = meta

    @classmethod
    def from_decoder(cls, decoder: FpnDecoder, meta: LesionMeta) -> LesionModel:
        """Wrap a trained decoder with the packaged ImageNet encoder."""
        net = LesionNet()
        net.decoder.load_state_dict(decoder.state_dict())
        return cls(net, meta)

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        """(w, h) the photo is resized to: its long side at the training size, sides multiples of 32."""
        scale = self.meta.size / max(width, height)
        return (max(32, round(width * scale / 32) * 32), max(32, round(height * scale / 32) * 32))

    def cell_probability(self, image: Image.Image | np.ndarray) -> np.ndarray:
        """float32 (h / 8, w / 8) lesion probabilities at the model's input scale."""
        rgb = as_rgb(image)
        size = self.input_size(rgb.shape[1], rgb.shape[0])
        with torch.no_grad():
            logits = self.net(to_input(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)))
        return torch.sigmoid(logits)[0, 0].numpy()

    def probability(self, image: Image.Image | np.ndarray) -> np.ndarray:
        """float32 (h, w) lesion probability at the photo's resolution (bilinear from the cells)."""
        rgb = as_rgb(image)
        cells = self.cell_probability(rgb)
        return cv2.resize(cells, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)

    def save(self, directory: str | Path) -> Path:
        """Write `model.safetensors` (decoder, fp16) and `model.json` into `directory`."""
        from safetensors.torch import save_file

        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        state = {key: value.detach().half().contiguous() for key, value in self.net.decoder.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": FORMAT})
        (folder / META_FILE).write_text(json.dumps(jsonable(asdict(self.meta)), indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, directory: str | Path) -> LesionModel:
        """Read a folder written by `save`; LesionModelError (one line naming the file) otherwise."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(directory)
        meta_path, weights_path = folder / META_FILE, folder / WEIGHTS_FILE
        for path in (meta_path, weights_path):
            if not path.is_file():
                raise LesionModelError(f"lesion model: {path} is missing")
        try:
            data = json.loads(meta_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            raise LesionModelError(f"lesion model: {meta_path} is not readable JSON ({error})") from None
        meta = LesionMeta.parse(data, str(meta_path))
        try:
            state = load_file(str(weights_path))
        except (SafetensorError, OSError, ValueError) as error:
            raise LesionModelError(f"lesion model: {weights_path} is not a readable safetensors file "
                                   f"({error})") from None
        net = LesionNet()
        expected = net.decoder.state_dict()
        wrong = sorted(set(expected) ^ set(state)) or sorted(
            key for key in expected if expected[key].shape != state[key].shape)
        if wrong:
            raise LesionModelError(f"lesion model: {weights_path} does not fit the decoder (e.g. {wrong[0]})")
        if not all(torch.isfinite(value).all() for value in state.values()):
            raise LesionModelError(f"lesion model: {weights_path} holds non-finite weights")
        net.decoder.load_state_dict({key: value.float() for key, value in state.items()})
        return cls(net, meta)


def shipped_model_dir() -> Path:
    """The lesion model inside the package (`melasma/weights/lesions`)."""
    return Path(str(files("melasma") / "weights" / "lesions"))
