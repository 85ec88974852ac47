"""The demo model from an ImageNet start, trained on real photos with lesion outlines (issue 26).

`python -m melasma.training.demo_real --data DIR --out DIR [--cv 5]` trains EfficientNet-Lite0
(`create(..., pretrained="auto")`: the packaged ImageNet weights) at 224 px on the photos of DIR
(`melasma/`, `non-melasma/`, COCO polygons): the stem and all blocks stay frozen (their outputs are
computed once per photo and augmentation: the shared 2-core CPU then trains the rest in minutes; a
a trainable block 6 took about 30 s an epoch there under load), the head convolution (320 -> 1280, 1 x 1) and
the classifier learn;
every batch norm keeps its ImageNet statistics. Two losses:

- per photo: cross-entropy against a soft target, the outline-derived MASI
  (`melasma.regions.polygon_masi`; photos without melasma: 0) spread as a normal of sd `MASI_SD` (the
  spread of raters' MASI) over the three severity bins;
- per 7 x 7 cell of the last feature map (the classifier applied to each cell; the pooled logits
  are the mean of these): "moderate" with weight = the cell's share of outlined lesion, "mild" for
  the rest, so the evidence for a grade sits on the lesions.

`--cv K` also trains K fold models (photos split by a seeded stratified K-fold) under OUT/cv/fold_i
and writes OUT/cv/folds.json, which `benchmarks/real_photos.py --cv` uses to score every photo
with the model that did not see it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from melasma.data.images import load_image
from melasma.data.masks import coco_masks
from melasma.masi import DEFAULT_CUTOFFS, SEVERITIES
from melasma.models import create
from melasma.models.checkpoint import save_checkpoint
from melasma.regions.polygon_masi import polygon_masi

ARCH = "efficientnet_lite0"
IMAGE_SIZE = 224
FROZEN_BLOCKS = 7  # the stem and all seven block stages keep their ImageNet weights
MASI_SD = 4.0
FOLDERS = {"melasma": True, "non-melasma": False}
SUFFIXES = {".jpg", ".jpeg", ".png"}


@dataclass(frozen=True)
class DemoConfig:
    """The recipe; written to model.json as `config`."""

    data: str
    epochs: int = 30
    batch_size: int = 16
    lr: float = 5e-4
    head_lr: float = 2e-3
    weight_decay: float = 1e-4
    cell_weight: float = 1.0
    variants: int = 4  # augmented copies per photo, computed once through the frozen part
    seed: int = 0


@dataclass(frozen=True)
class Photo:
    """One training photo: name, folder label, outline MASI and the lesion mask at 224 px."""

    name: str
    path: Path
    melasma: bool
    masi: float
    lesion: np.ndarray  # float (224, 224), 0-1


def list_photos(directory: Path) -> list[Photo]:
    """Every photo of DIR/melasma and DIR/non-melasma with its outline-derived MASI."""
    coco = directory / "_annotations.coco.json"
    masks = coco_masks(coco) if coco.is_file() else {}
    photos = []
    for folder, melasma in FOLDERS.items():
        for path in sorted((directory / folder).iterdir()):
            if path.suffix.lower() not in SUFFIXES:
                continue
            rgb = np.asarray(load_image(path))
            mask = masks.get(path.name) if melasma else None
            value = polygon_masi(rgb, mask).masi if melasma else 0.0
            lesion = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
            if mask is not None:
                small = torch.from_numpy(mask.astype(np.float32))[None, None]
                lesion = F.interpolate(small, size=(IMAGE_SIZE, IMAGE_SIZE), mode="area")[0, 0].numpy()
            photos.append(Photo(path.name, path, melasma, value, lesion))
    return photos


def soft_target(masi: float, cutoffs: tuple[float, float] = DEFAULT_CUTOFFS["masi"]) -> np.ndarray:
    """P(mild, moderate, severe) of a MASI read with rater noise N(masi, MASI_SD^2)."""
    def cdf(x: float) -> float:
        return 0.5 * (1 + math.erf((x - masi) / (MASI_SD * math.sqrt(2))))

    low, high = cdf(cutoffs[0]), cdf(cutoffs[1])
    return np.array([low, high - low, 1 - high], np.float32)


def _augment(image: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, bool]:
    """Colour, tone and light changes (so skin tone cannot decide) and a flip; (3, H, W) in 0-1."""
    flip = bool(rng.random() < 0.5)
    out = image.flip(-1) if flip else image
    gain = torch.tensor(rng.uniform(0.8, 1.2, 3), dtype=out.dtype).view(3, 1, 1)
    brightness = float(rng.uniform(0.7, 1.3))
    contrast = float(rng.uniform(0.75, 1.25))
    mean = out.mean()
    out = ((out * gain * brightness - mean) * contrast + mean).clamp(0, 1)
    return out, flip


def frozen_features(model: Any, photos: list[Photo], variants: int, seed: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs of the frozen stem and blocks for `variants` augmented copies of each photo (the first
    unchanged), and the matching 7 x 7 lesion shares: (N, V, C, 7, 7) and (N, V, 7, 7)."""
    rng = np.random.default_rng(seed)
    mean = torch.tensor(model.input_mean).view(1, 3, 1, 1)
    std = torch.tensor(model.input_std).view(1, 3, 1, 1)
    feats, cells = [], []
    with torch.no_grad():
        for photo in photos:
            image = load_image(photo.path).resize((IMAGE_SIZE, IMAGE_SIZE), resample=3)
            x = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255
            lesion = torch.from_numpy(photo.lesion)
            batch, shares = [], []
            for v in range(variants):
                y, flip = (x, False) if v == 0 else _augment(x, rng)
                batch.append(y)
                les = lesion.flip(-1) if flip else lesion
                shares.append(F.adaptive_avg_pool2d(les[None, None], 7)[0, 0])
            h = (torch.stack(batch) - mean) / std
            h = model.bn1(model.conv_stem(h))
            for block in model.blocks[:FROZEN_BLOCKS]:
                h = block(h)
            feats.append(h)
            cells.append(torch.stack(shares))
    return torch.stack(feats), torch.stack(cells)


def _head(model: Any, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled logits and per-cell logits (N, 3, 7, 7) from frozen-part features."""
    for block in model.blocks[FROZEN_BLOCKS:]:
        h = block(h)
    h = model.bn2(model.conv_head(h))
    cell_logits = torch.einsum("nchw,kc->nkhw", h, model.classifier.weight) + model.classifier.bias.view(1, -1, 1, 1)
    return cell_logits.mean((2, 3)), cell_logits


def fit(config: DemoConfig, photos: list[Photo], feats: torch.Tensor, cells: torch.Tensor,
        log: Callable[[str], None] = print) -> nn.Module:
    """Train one model on `photos` (with their frozen features); returns it in eval mode."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model: Any = create(ARCH, len(SEVERITIES), pretrained="auto")
    trainable = [p for b in model.blocks[FROZEN_BLOCKS:] for p in b.parameters()]
    trainable += list(model.conv_head.parameters())
    for p in model.parameters():
        p.requires_grad_(False)
    for p in [*trainable, *model.classifier.parameters()]:
        p.requires_grad_(True)
    model.eval()  # batch norms keep their ImageNet statistics (and dropout stays off)
    optimiser = torch.optim.AdamW([
        {"params": trainable, "lr": config.lr},
        {"params": list(model.classifier.parameters()), "lr": config.head_lr},
    ], weight_decay=config.weight_decay)
    targets = torch.from_numpy(np.stack([soft_target(p.masi) for p in photos]))
    n = len(photos)
    steps = config.epochs * math.ceil(n / config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=[config.lr, config.head_lr], total_steps=steps, pct_start=0.15)
    for epoch in range(config.epochs):
        order = rng.permutation(n)
        total = 0.0
        for start in range(0, n, config.batch_size):
            idx = order[start:start + config.batch_size]
            pick = torch.from_numpy(rng.integers(0, feats.shape[1], len(idx)))
            h = feats[idx, pick]
            share = cells[idx, pick]
            pooled, cell_logits = _head(model, h)
            loss = -(targets[idx] * F.log_softmax(pooled, 1)).sum(1).mean()
            cell_target = torch.stack([1 - share, share, torch.zeros_like(share)], 1)
            loss = loss + config.cell_weight * -(cell_target * F.log_softmax(cell_logits, 1)).sum(1).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            scheduler.step()
            total += float(loss.detach()) * len(idx)
        if (epoch + 1) % 5 == 0 or epoch == 0:
            log(f"  epoch {epoch + 1}/{config.epochs} loss {total / n:.4f}")
    for p in model.parameters():
        p.requires_grad_(True)
    return model.eval()


def folds(photos: list[Photo], k: int, seed: int) -> list[int]:
    """A fold index per photo: stratified by folder, shuffled by `seed`."""
    rng = np.random.default_rng(seed)
    fold = [0] * len(photos)
    for label in (True, False):
        idx = [i for i, p in enumerate(photos) if p.melasma == label]
        rng.shuffle(idx)
        for j, i in enumerate(idx):
            fold[i] = j % k
    return fold


#: The command that made the shipped `melasma/weights/demo` (recorded in its model.json).
COMMAND = ("python -m melasma.training.demo_real --data ../shared/data/roboflow-melasma "
           "--out .devdata/demo_try3 --cv 5 --cache .devdata/frozen_v4_b7.npz")


def save(model: Any, out: Path, config: DemoConfig, photos: list[Photo], seconds: float) -> None:
    """The checkpoint (fp16 safetensors + model.json with the recipe and the training photos)."""
    meta = {
        "classes": list(SEVERITIES), "cutoffs": list(DEFAULT_CUTOFFS["masi"]), "image_size": IMAGE_SIZE,
        "mean": list(model.input_mean), "std": list(model.input_std),
        "pretrained": getattr(model, "pretrained_source", ""),
        "config": {**asdict(config), "frozen_blocks": FROZEN_BLOCKS, "masi_sd": MASI_SD,
                   "recipe": "melasma.training.demo_real"},
        "data": {"path": config.data, "photos": [p.name for p in photos], "n": len(photos),
                 "melasma": sum(p.melasma for p in photos),
                 "labels": "melasma.regions.polygon_masi (outline-derived MASI); photos without melasma: MASI 0"},
        "training": {"seconds": round(seconds, 1), "device": "cpu", "threads": torch.get_num_threads()},
        "seed": config.seed,
        "command": "bash melasma/weights/train_demo.sh RUN_DIR  # = " + COMMAND,
    }
    save_checkpoint(out, model, meta, dtype=torch.float16)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--cv", type=int, default=0, help="also train this many fold models (0: none)")
    parser.add_argument("--epochs", type=int, default=DemoConfig.epochs)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only-cv", action="store_true", help="train the fold models only")
    parser.add_argument("--cache", default=None, help="an .npz keeping the frozen features between runs "
                                                     "(same data, seed and variants)")
    args = parser.parse_args(argv)
    config = DemoConfig(data=str(args.data), epochs=args.epochs, seed=args.seed)
    torch.manual_seed(config.seed)
    out = Path(args.out)
    start = time.monotonic()
    photos = list_photos(Path(args.data))
    print(f"{len(photos)} photos ({sum(p.melasma for p in photos)} melasma); outline MASI of the melasma "
          f"photos: {sorted(round(p.masi, 1) for p in photos if p.melasma)}", flush=True)

    base = create(ARCH, len(SEVERITIES), pretrained="auto").eval()
    cache = Path(args.cache) if args.cache else None
    if cache is not None and cache.is_file():  # our own numpy arrays (no pickle)
        with np.load(cache, allow_pickle=False) as stored:
            feats, cells = torch.from_numpy(stored["feats"]), torch.from_numpy(stored["cells"])
    else:
        feats, cells = frozen_features(base, photos, config.variants, config.seed)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, feats=feats.numpy(), cells=cells.numpy())
    print(f"frozen features {tuple(feats.shape)} in {time.monotonic() - start:.0f} s", flush=True)
    if args.cv:
        assignment = folds(photos, args.cv, config.seed)
        for k in range(args.cv):
            train = [i for i, f in enumerate(assignment) if f != k]
            print(f"fold {k}: {len(train)} training photos", flush=True)
            t0 = time.monotonic()
            model = fit(config, [photos[i] for i in train], feats[train], cells[train])
            save(model, out / "cv" / f"fold_{k}", config, [photos[i] for i in train], time.monotonic() - t0)
        (out / "cv" / "folds.json").write_text(json.dumps(
            {"k": args.cv, "seed": config.seed, "folds": {p.name: f for p, f in zip(photos, assignment)}},
            indent=1) + "\n")
    if not args.only_cv:
        t0 = time.monotonic()
        model = fit(config, photos, feats, cells)
        save(model, out, config, photos, time.monotonic() - t0)
    print(f"done in {time.monotonic() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
