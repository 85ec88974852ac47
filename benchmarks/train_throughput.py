"""Training throughput: a naive per-epoch JPEG pipeline vs ours (decode-once cache, device-side
augmentation) vs the ceiling (random tensors already on the device), in one run.

(a) naive: ImageFolder-style, PIL full decode + the study's torchvision transforms every epoch,
    DataLoader with one worker per core; (b) ours: cache build rate (cold) and the steady epoch
    throughput of `melasma.training.loop` (best of 3 epochs); (c) ceiling: the same model, batch and
    precision (bf16 autocast + channels-last on CUDA, fp32 elsewhere) on random device tensors
    (best of 3 epochs).
Prints images/s and the ratios ours/naive and ours/ceiling per architecture and batch size.

    python benchmarks/train_throughput.py --n 16 --size 1200x900 --archs resnet18 --batch-sizes 8
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from melasma.data.cache import load_cached
from melasma.masi import SEVERITIES
from melasma.models import ARCHITECTURES, create
from melasma.training.augment import IMAGENET_MEAN, IMAGENET_STD, Augment
from melasma.training.device import resolve_device
from melasma.training.loop import batch_indices, prepare_batch, train_step


def make_jpegs(folder: Path, n: int, width: int, height: int, seed: int = 0) -> list[Path]:
    """`n` camera-size JPEGs with smooth colour fields plus sensor-like noise (realistic entropy)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        coarse = rng.integers(60, 220, (height // 100 + 2, width // 100 + 2, 3), dtype=np.uint8)
        base = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR), dtype=np.int16)
        noisy = np.clip(base + rng.integers(-12, 13, base.shape, dtype=np.int16), 0, 255).astype(np.uint8)
        path = folder / f"{SEVERITIES[i % 3]}_{i:04d}.jpg"
        Image.fromarray(noisy).save(path, quality=92)
        paths.append(path)
    return paths


class NaiveDataset(torch.utils.data.Dataset):
    """ImageFolder-style: full PIL decode and the study's transforms on every access."""

    def __init__(self, paths: list[Path], labels: list[int], image_size: int) -> None:
        from torchvision import transforms as T

        self.paths, self.labels = paths, labels
        self.transform = T.Compose([
            T.Resize((image_size, image_size)), T.RandomHorizontalFlip(), T.RandomRotation(15),
            T.ColorJitter(0.2, 0.2, 0.2), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.paths[i]) as img:
            return self.transform(img.convert("RGB")), self.labels[i]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def naive_epoch(model, loader, device: torch.device) -> float:
    """Images/s of one training epoch fed by the naive DataLoader (worker start-up included)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    criterion = torch.nn.CrossEntropyLoss()
    model.train()
    start, seen = time.perf_counter(), 0
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        x = x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x
        train_step(model, optimizer, criterion, x, y.to(device, non_blocking=True))
        seen += len(y)
    _sync(device)
    return seen / (time.perf_counter() - start)


def naive_decode_rate(loader) -> float:
    """Images/s of the naive loader alone (decode + transforms, no model)."""
    start, seen = time.perf_counter(), 0
    for _, y in loader:
        seen += len(y)
    return seen / (time.perf_counter() - start)


def ours_epochs(model, images: torch.Tensor, labels: torch.Tensor, batch_size: int, epochs: int = 3) -> float:
    """Best images/s over `epochs` epochs (the first warms up) of our loop: index, float, augment,
    normalise, step."""
    device = labels.device
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    criterion = torch.nn.CrossEntropyLoss()
    order, augment_rng = torch.Generator().manual_seed(0), torch.Generator(device=device).manual_seed(0)
    model.train()
    rate = 0.0
    for _ in range(epochs):
        _sync(device)
        start = time.perf_counter()
        for rows in batch_indices(len(labels), batch_size, order):
            rows = rows.to(device, non_blocking=True)
            x = prepare_batch(images[rows], augment=Augment(), generator=augment_rng)
            train_step(model, optimizer, criterion, x, labels[rows])
        _sync(device)
        rate = max(rate, len(labels) / (time.perf_counter() - start))
    return rate


def ceiling(model, n_images: int, batch_size: int, image_size: int, device: torch.device, epochs: int = 3) -> float:
    """Best images/s over `epochs` epochs of the same steps on random tensors already on the device."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    criterion = torch.nn.CrossEntropyLoss()
    x = torch.randn(batch_size, 3, image_size, image_size, device=device)
    x = x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x
    y = torch.randint(0, 3, (batch_size,), device=device)
    steps = max(n_images // batch_size, 1)
    model.train()
    rate = 0.0
    for _ in range(epochs):
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            train_step(model, optimizer, criterion, x, y)
        _sync(device)
        rate = max(rate, steps * batch_size / (time.perf_counter() - start))
    return rate


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64, help="number of synthetic JPEGs (default 64)")
    parser.add_argument("--size", type=_size, default=(4000, 3000), help="JPEG WxH (default 4000x3000)")
    parser.add_argument("--archs", default=",".join(ARCHITECTURES), help="comma list (default: the six)")
    parser.add_argument("--batch-sizes", default="32,256", help="comma list (default 32,256)")
    parser.add_argument("--image-size", type=int, default=224, help="training input px (default 224)")
    parser.add_argument("--epoch-images", type=int, default=0,
                        help="images per measured epoch for ours/ceiling; the cache is tiled up to this "
                             "(default: max(n, 4 x largest batch))")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="naive DataLoader workers")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    epoch_images = args.epoch_images or max(args.n, 4 * max(batch_sizes))
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU"
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {gpu}; "
          f"torch {torch.__version__}; device {device}; precision "
          f"{'bf16 autocast + channels_last' if device.type == 'cuda' else 'fp32'}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        paths = make_jpegs(folder, args.n, *args.size)
        labels = [i % 3 for i in range(args.n)]
        print(f"{args.n} JPEGs {args.size[0]}x{args.size[1]} written in {time.perf_counter() - start:.1f} s")

        def loader(batch_size: int):
            return torch.utils.data.DataLoader(
                NaiveDataset(paths, labels, args.image_size), batch_size=batch_size, shuffle=True,
                num_workers=args.workers, pin_memory=device.type == "cuda", drop_last=False)

        decode = naive_decode_rate(loader(batch_sizes[0]))
        start = time.perf_counter()
        cached = load_cached(paths, args.image_size, cache_dir=folder / "cache")
        build = args.n / (time.perf_counter() - start)
        print(f"naive full decode + transforms: {decode:.1f} img/s; our cache build (cold): {build:.1f} img/s "
              f"= {build / decode:.2f} x naive decode")
        tiles = -(-epoch_images // args.n)
        images = torch.from_numpy(np.tile(cached, (tiles, 1, 1, 1))[:epoch_images]).to(device)
        targets = torch.tensor((labels * tiles)[:epoch_images], device=device)
        print(f"\n{'arch':<16}{'batch':>6}{'naive':>9}{'ours':>9}{'ceiling':>9}{'ours/naive':>12}{'ours/ceil':>11}")
        for arch in archs:
            for batch_size in batch_sizes:
                torch.manual_seed(0)
                model = create(arch, 3, "off").to(device)
                if device.type == "cuda":
                    model = model.to(memory_format=torch.channels_last)
                try:
                    naive = naive_epoch(model, loader(batch_size), device)
                    ours = ours_epochs(model, images, targets, batch_size)
                    top = ceiling(model, epoch_images, batch_size, args.image_size, device)
                except torch.OutOfMemoryError:
                    print(f"{arch:<16}{batch_size:>6}  out of memory")
                    torch.cuda.empty_cache()
                    continue
                print(f"{arch:<16}{batch_size:>6}{naive:>9.1f}{ours:>9.1f}{top:>9.1f}"
                      f"{ours / naive:>12.2f}{ours / top:>11.2f}", flush=True)
                del model
    return 0


if __name__ == "__main__":
    sys.exit(main())
