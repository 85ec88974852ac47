"""Inference: a checkpoint loaded once, predictions and explanations with per-step latencies.

`Predictor` preprocesses exactly like training (decode through `melasma.data.images`, squash to the
checkpoint's square input size, normalise with its mean and std), runs fp32 on the chosen device and
times each step. Explanations go through one `melasma.explain.Explainer` per predictor, built on
first use (its own canonized copy for LRP, one for Grad-CAM and gradient x input, hooks kept) and
released by `close()`, which the shared cache calls when it drops a checkpoint.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from melasma.data.images import ImageLoadError, ImageSource, check_shape, load_image
from melasma.errors import UserError
from melasma.explain.explainer import METHODS, Explainer
from melasma.models.checkpoint import CheckpointError, CheckpointMeta, load_checkpoint, read_checkpoint_meta
from melasma.real_photo_check import RealPhotoCheck, RealPhotoCheckError, read_check

#: Longest side, in pixels, of the photo that maps and overlays are drawn at.
DISPLAY_MAX = 512

ImageInput = ImageSource | Image.Image | np.ndarray


class NonFiniteOutputError(UserError):
    """The model's output for a photo holds NaN or infinite values: its weights cannot be trusted."""


def _require_finite(output: torch.Tensor, arch: str) -> torch.Tensor:
    """`output`, or NonFiniteOutputError when any value is NaN or infinite (never labelled)."""
    if not bool(torch.isfinite(output).all()):
        raise NonFiniteOutputError(
            f"the {arch} checkpoint gave NaN or infinite outputs for this photo: its weights are damaged or "
            "out of range; retrain it or choose another checkpoint"
        )
    return output


@dataclass(frozen=True)
class Prediction:
    """A severity, the class probabilities (mild/moderate/severe) and each step's latency in ms.

    A regression-head checkpoint also gives `masi`, the predicted MASI (0-48); its severity is the
    bin of that MASI under the checkpoint's cut-offs and its probabilities are that bin one-hot
    (the head outputs no probabilities). `masi` is None for a classifier.
    """

    severity: str
    probabilities: dict[str, float]
    latency_ms: dict[str, float] = field(default_factory=dict)
    masi: float | None = None


@dataclass(frozen=True)
class Explanation:
    """A relevance map at the photo's size, its overlay on the photo, the photo, and latencies."""

    method: str
    target: str
    map: np.ndarray
    overlay: Image.Image
    photo: Image.Image
    latency_ms: dict[str, float] = field(default_factory=dict)

    def figure(self) -> Image.Image:
        """The photo beside the overlay, with a colour-bar legend (signed for LRP and gxi)."""
        # deferred: loads matplotlib; a prediction without an overlay needs none
        from melasma.explain import views

        drawing = views.side_by_side(self.photo, {self.method: self.map}, title=f"explaining: {self.target}")
        return Image.fromarray(views.figure_to_array(drawing))


@dataclass(frozen=True)
class ExplanationSet:
    """All three maps for one photo from one call: Grad-CAM and gxi share a forward and backward.

    `maps[method]` is at the photo's size; `cam_grid` is Grad-CAM's feature-map size (rows,
    columns) and `cam_note` a warning when it is too coarse to localise (empty otherwise).
    """

    target: str
    probabilities: dict[str, float]
    maps: dict[str, np.ndarray]
    photo: Image.Image
    cam_grid: tuple[int, int] | None
    cam_note: str
    latency_ms: dict[str, float] = field(default_factory=dict)


class _Timer:
    """Collects named step durations in milliseconds."""

    def __init__(self) -> None:
        self.steps: dict[str, float] = {}
        self._start = time.perf_counter()

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.steps[name] = (time.perf_counter() - start) * 1000.0

    def result(self) -> dict[str, float]:
        total = (time.perf_counter() - self._start) * 1000.0
        return {**{k: round(v, 2) for k, v in self.steps.items()}, "total": round(total, 2)}


def _from_array(array: np.ndarray) -> Image.Image:
    """A uint8 (H, W), (H, W, 3) or (H, W, 4) array as an RGB image."""
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (
        array.ndim == 3 and array.shape[2] not in (3, 4)
    ):
        raise ImageLoadError(
            f"<array>: expected a uint8 array of shape (H, W), (H, W, 3) or (H, W, 4), "
            f"got {array.dtype} {array.shape}"
        )
    image = Image.fromarray(np.ascontiguousarray(array))
    if image.mode == "RGBA":
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image)
    return image.convert("RGB")


class Predictor:
    """One checkpoint, loaded once: `predict(image)` and `explain(image, method)`."""

    def __init__(self, model: torch.nn.Module, meta: CheckpointMeta, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        # channels-last: oneDNN's and cuDNN's fast convolution layout (googlenet predict 55 -> 32 ms
        # on a 2-core CPU, benchmarks/predict_latency.py); explanations run on it unchanged.
        self.model = model.to(self.device).float().eval().to(memory_format=torch.channels_last)
        self.meta = meta
        self.arch = meta.arch
        self.classes = meta.classes
        self.head = meta.head
        self.image_size = meta.image_size
        self._mean = torch.tensor(meta.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(meta.std, dtype=torch.float32).view(1, 3, 1, 1)
        self._lock = threading.Lock()
        self._explainer: Explainer | None = None
        #: What the checkpoint is worth on real photos (`real_photos.json` beside its weights), if measured.
        self.real_photo_check: RealPhotoCheck | None = None

    @classmethod
    def from_checkpoint(cls, directory: str | Path, device: str = "cpu") -> Predictor:
        """Load `directory` (model.safetensors + model.json) once and warm it up; raises
        CheckpointError."""
        model, meta = load_checkpoint(directory, device=device)
        predictor = cls(model, meta, device=device)
        try:
            predictor.real_photo_check = read_check(directory)
        except RealPhotoCheckError as error:
            raise CheckpointError(str(error)) from None
        predictor.warm_up()
        return predictor

    def warm_up(self) -> None:
        """One forward on a blank input, so that one-time kernel set-up does not count as the
        first photo's latency."""
        blank = torch.zeros(1, 3, self.image_size, self.image_size, device=self.device)
        blank = blank.contiguous(memory_format=torch.channels_last)
        with self._lock:
            self._probabilities(blank)

    def decode(self, image: ImageInput, draft: int | None = None) -> Image.Image:
        """Any accepted input as an upright RGB image; large JPEGs decode at a reduced size that
        stays at least `draft` (default: the input size, as training's decoding) on each side."""
        if isinstance(image, Image.Image):
            check_shape(image.width, image.height, "<image>")
            return image.convert("RGB")
        if isinstance(image, np.ndarray):
            photo = _from_array(image)
            check_shape(photo.width, photo.height, "<array>")
            return photo
        size = draft or self.image_size
        return load_image(image, draft=(size, size))

    def preprocess(self, photo: Image.Image) -> torch.Tensor:
        """Squash to the square input size (as training does) and normalise: (1, 3, S, S)."""
        size = self.image_size
        square = photo if photo.size == (size, size) else photo.resize(
            (size, size), Image.Resampling.BILINEAR
        )
        x = torch.from_numpy(np.asarray(square, dtype=np.uint8).copy()).permute(2, 0, 1)
        x = x.unsqueeze(0).float().div_(255.0)
        x = ((x - self._mean) / self._std).to(self.device)
        return x.contiguous(memory_format=torch.channels_last)

    def batch(self, images: Sequence[ImageInput]) -> torch.Tensor:
        """Photos decoded and preprocessed as `predict` does: (N, 3, S, S) on the device (the explain
        report's input, so its numbers are the Predict tab's)."""
        return torch.cat([self.preprocess(self.decode(image)) for image in images])

    def _probabilities(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            logits = _require_finite(self.model(x).float(), self.arch)
            return _require_finite(self.head.probabilities(logits, self.meta.cutoffs, len(self.classes)),
                                   self.arch)[0].cpu()

    def predict(self, image: ImageInput) -> Prediction:
        """Severity and class probabilities of one photo (and the MASI, for a regression head);
        raises ImageLoadError for a bad file."""
        timer = _Timer()
        with timer.step("decode"):
            photo = self.decode(image)
        with timer.step("preprocess"):
            x = self.preprocess(photo)
        with self._lock, timer.step("forward"), torch.inference_mode():
            output = _require_finite(self.model(x).float(), self.arch)
        if self.head.predicts_masi:
            output = output.cpu().double()  # MASI and its bin in float64, as `melasma.masi.severity`
        probs = self.head.probabilities(output, self.meta.cutoffs, len(self.classes))[0].cpu()
        masi = self.head.masi(output)
        probabilities = {name: float(p) for name, p in zip(self.classes, probs.tolist())}
        return Prediction(self.classes[int(probs.argmax())], probabilities, timer.result(),
                          masi=None if masi is None else float(masi[0]))

    @property
    def explainer(self) -> Explainer:
        """This checkpoint's Explainer, built on first use (two model copies with their hooks)."""
        with self._lock:
            if self._explainer is None:
                self._explainer = Explainer(self.model, mean=self.meta.mean, std=self.meta.std)
            return self._explainer

    def close(self) -> None:
        """Release the Explainer (hooks, canonized copies); a later explanation builds a new one."""
        with self._lock:
            explainer, self._explainer = self._explainer, None
        if explainer is not None:
            explainer.close()

    def _check_target(self, target: str | None) -> int | None:
        if self.head.predicts_masi:
            raise UserError(f"{self.arch} has a MASI regression head: explanations support classification "
                             "checkpoints only (they explain one class's logit)")
        if target is not None and target not in self.classes:
            raise UserError(f"target must be one of {', '.join(self.classes)}, got {target!r}")
        return None if target is None else self.classes.index(target)

    def _display_input(self, image: ImageInput, timer: _Timer) -> tuple[torch.Tensor, Image.Image]:
        with timer.step("decode"):
            decoded = self.decode(image, draft=DISPLAY_MAX)
        with timer.step("preprocess"):
            return self.preprocess(decoded), fit_display(decoded, DISPLAY_MAX)

    def explain(self, image: ImageInput, method: str = "lrp", target: str | None = None) -> Explanation:
        """A relevance map for `target` (a class name; None: the predicted class) and its overlay."""
        # deferred: loads matplotlib; a prediction without an overlay needs none
        from melasma.explain import views

        if method not in METHODS:
            raise UserError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        index = self._check_target(target)
        explainer = self.explainer
        timer = _Timer()
        x, photo = self._display_input(image, timer)
        if index is None:
            with self._lock, timer.step("forward"):
                index = int(self._probabilities(x).argmax())
        with timer.step(method):
            result = explainer.explain(x, methods=(method,), target=index)
        _require_finite(result.logits, self.arch)
        with timer.step("overlay"):
            resized = views.resize_map(result.maps[method][0], photo.size)
            overlay = views.overlay(photo, resized, method=method)
        return Explanation(method, self.classes[index], resized, overlay, photo, timer.result())

    def explain_all(self, image: ImageInput, target: str | None = None) -> ExplanationSet:
        """LRP, Grad-CAM and gradient x input for one photo in one call: the Grad-CAM/gxi pass's
        forward also gives the prediction and the target (None: the predicted class)."""
        # deferred: loads matplotlib; a prediction without an overlay needs none
        from melasma.explain import views

        index = self._check_target(target)
        explainer = self.explainer
        timer = _Timer()
        x, photo = self._display_input(image, timer)
        result = explainer.explain(x, target=index)
        _require_finite(result.logits, self.arch)
        timer.steps.update(result.latency_ms)
        with timer.step("resize"):
            maps = {method: views.resize_map(m[0], photo.size) for method, m in result.maps.items()}
        probs = torch.softmax(result.logits[0], dim=0).tolist()
        note = ""
        if result.cam_is_coarse and result.cam_grid is not None:
            rows, columns = result.cam_grid
            note = (f"Grad-CAM's feature map is only {rows} x {columns} cells at {self.image_size} px: "
                    f"too coarse to localise; read it as a rough left/right/up/down hint.")
        return ExplanationSet(
            self.classes[result.targets[0]], dict(zip(self.classes, probs)), maps, photo,
            result.cam_grid, note, timer.result(),
        )


def fit_display(photo: Image.Image, longest: int = DISPLAY_MAX) -> Image.Image:
    """Shrink `photo` so its longest side is at most `longest` pixels, keeping its aspect ratio."""
    if max(photo.size) <= longest:
        return photo
    scale = longest / max(photo.size)
    size = (max(1, round(photo.width * scale)), max(1, round(photo.height * scale)))
    return photo.resize(size, Image.Resampling.BILINEAR)


def default_checkpoint() -> Path:
    """The demo checkpoint shipped with the project (`melasma/weights/demo`)."""
    return Path(str(resources.files("melasma") / "weights" / "demo"))


def _run_checkpoints(runs_dir: Path) -> Iterator[tuple[str, Path]]:
    for meta in sorted(Path(runs_dir).glob("*/*/model.json")):
        directory = meta.parent
        if (directory / "model.safetensors").is_file():
            yield f"{directory.parent.name}/{directory.name}", directory


def list_checkpoints(runs_dir: str | Path | None = None) -> dict[str, Path]:
    """Key -> checkpoint directory: the demo weights ("demo") first, then every RUN/<arch> in runs_dir."""
    found: dict[str, Path] = {}
    demo = default_checkpoint()
    if (demo / "model.json").is_file():
        found["demo"] = demo
    if runs_dir is not None:
        found.update(_run_checkpoints(Path(runs_dir)))
    return found


def describe_checkpoint(directory: str | Path) -> str:
    """A label from model.json: when it was trained, on what data, its test accuracy and its
    architecture, e.g. "2026-11-27 00:12 · demo_data/labels.csv (500 images) · test acc 0.725 · googlenet".
    A model.json that fails the checkpoint schema (not an object, nested too deeply, ...) gives
    "NAME (not loadable: what is wrong)": one damaged run never stops the app."""
    folder = Path(directory)
    try:
        meta = read_checkpoint_meta(folder)
    except CheckpointError as error:
        reason = str(error).replace(str(folder / "model.json"), "model.json").replace(str(folder), folder.name)
        return f"{folder.name} (not loadable: {reason})"
    except OSError as error:
        return f"{folder.name} (unreadable model.json: {error.strerror or type(error).__name__})"
    data = meta.data
    counts = data["n"] if isinstance(data.get("n"), dict) else {}
    images = sum(v for v in counts.values() if isinstance(v, int))
    if isinstance(data.get("n"), int) and not isinstance(data.get("n"), bool):  # one count (the demo's photos)
        images = data["n"]
    source = Path(str(data.get("path", "unknown data")))
    dataset = f"{source.parent.name}/{source.name}" if source.parent.name else source.name
    accuracy = meta.metrics.get("accuracy")
    score = f"test acc {accuracy:.3f}" if isinstance(accuracy, (int, float)) else "no test score"
    created = (meta.created if meta.created is not None else "undated")[:16].replace("T", " ")
    dataset += f" ({images} images)" if images else ""
    return f"{created} · {dataset} · {score} · {meta.arch}"


class _PredictorCache:
    """The few most recently used Predictors, keyed by (directory, weights mtime, device); a
    Predictor dropped from the cache is closed (its Explainer released)."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, int, str], Predictor] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: tuple[str, int, str], load: Callable[[], Predictor]) -> Predictor:
        with self._lock:
            if key in self._items:
                self.hits += 1
                self._items.move_to_end(key)
                return self._items[key]
            self.misses += 1
            predictor = self._items[key] = load()
            stale = [k for k in self._items if k[0] == key[0] and k != key]  # the same directory, retrained
            while len(self._items) - len(stale) > self.size:
                stale.append(next(k for k in self._items if k not in stale))
            dropped = [self._items.pop(k) for k in stale]
        for old in dropped:
            old.close()
        return predictor

    def clear(self) -> None:
        """Drop and close every cached Predictor."""
        with self._lock:
            dropped = list(self._items.values())
            self._items.clear()
            self.hits = self.misses = 0
        for old in dropped:
            old.close()

    def __len__(self) -> int:
        return len(self._items)


_cache = _PredictorCache()


def get_predictor(directory: str | Path, device: str = "cpu") -> Predictor:
    """A shared Predictor per checkpoint directory, reloaded when its weights file changes."""
    path = Path(directory).resolve()
    weights = path / "model.safetensors"
    mtime = weights.stat().st_mtime_ns if weights.is_file() else 0
    return _cache.get((str(path), mtime, device), lambda: Predictor.from_checkpoint(path, device=device))


def warm_up_in_background(directory: str | Path, device: str = "cpu") -> threading.Thread:
    """Load `directory`'s shared Predictor and build and run its Explainer once on a blank photo,
    in a daemon thread: the first visitor then pays neither the model load, the explainer's set-up
    nor the explanation libraries' first-call costs."""

    def warm() -> None:
        predictor = get_predictor(directory, device)
        blank = Image.new("RGB", (predictor.image_size, predictor.image_size), (128, 128, 128))
        predictor.explain_all(blank)

    thread = threading.Thread(target=warm, name="melasma-warm-up", daemon=True)
    thread.start()
    return thread
