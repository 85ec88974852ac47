"""From-scratch collapse check: AlexNet and VGG16 at the study's Adam lr 1e-3 vs `--lr-auto` (1e-4).

The study's lr 1e-3 from random init drives both networks to a constant (majority-class) predictor.
This trains each (architecture, setting) pair on the same synthetic faces and prints test accuracy,
macro AUC, the final training loss and whether `melasma.training.collapse` marks the run collapsed.

    python benchmarks/collapse_check.py --device cuda              # 1200 faces, 224 px, 6 epochs
    python benchmarks/collapse_check.py --n 150 --size 64 --epochs 3 --device cpu   # a CPU-sized run
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from melasma.data.synthetic import generate
from melasma.training import TrainConfig, train_many

#: setting name -> TrainConfig changes
SETTINGS: dict[str, dict] = {"study lr 1e-3": {"lr": 1e-3}, "lr-auto (1e-4)": {"lr_auto": True}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="alexnet,vgg16")
    parser.add_argument("--n", type=int, default=1200, help="synthetic faces (default 1200)")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels (default 224)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data", default=None, help="reuse a synthetic folder instead of generating one")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else Path(tmp) / "faces"
        started = time.perf_counter()
        if not args.data:
            generate(data, n=args.n, size=args.size, seed=0)
        print(f"data: {data} ({time.perf_counter() - started:.1f} s to generate)", flush=True)
        print(f"{'arch':<10} {'setting':<16} {'lr':>7} {'accuracy':>8} {'AUC':>6} {'last loss':>9} "
              f"{'seconds':>7}  collapsed")
        for arch in args.archs.split(","):
            for name, changes in SETTINGS.items():
                config = TrainConfig(data=data, archs=(arch,), epochs=args.epochs, patience=args.epochs,
                                     batch_size=args.batch_size, image_size=args.size, pretrained="off",
                                     device=args.device, out=Path(tmp) / "runs" / f"{arch}-{name[:5]}",
                                     cache_dir=Path(tmp) / "cache", bootstrap=200, **changes)
                started = time.perf_counter()
                row = train_many(config).iloc[0]
                history = (config.out / arch / "history.csv").read_text().splitlines()
                last_loss = float(history[-1].split(",")[1])
                print(f"{arch:<10} {name:<16} {row['lr']:>7g} {row['accuracy']:>8.3f} {row['auc_macro']:>6.3f} "
                      f"{last_loss:>9.3f} {time.perf_counter() - started:>7.1f}  "
                      f"{row['collapse_cause'] if row['collapsed'] else 'no'}", flush=True)


if __name__ == "__main__":
    main()
