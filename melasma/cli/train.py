"""`python -m melasma train`: train the study's CNNs on a data set and write RUN/<arch>/ + summary.

`torchrun --nproc-per-node N -m melasma train ...` trains data-parallel (docs/multi-gpu.md); rank 0 prints.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from melasma.cli.arguments import device, non_negative_float, non_negative_int, positive_float, positive_int, seed
from melasma.training.config import TrainConfig
from melasma.training.events import ArchDone, BatchDone, EpochDone, LogLine, TrainingEvent

#: TrainConfig's field defaults: the one source of the flags' defaults (the Train tab reads them too).
DEFAULTS = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
#: Where `train` writes its run unless --out says otherwise.
DEFAULT_OUT = str(next(f for f in fields(TrainConfig) if f.name == "out").default_factory())  # type: ignore[operator]

HELP = "train CNNs (study protocol: Adam 1e-3, batch 32, 224 px, early stopping) and report Table 1"


def add_arguments(parser: argparse.ArgumentParser, *, with_out: bool = True) -> None:
    """The training flags; `with_out=False` leaves out --out (queued jobs write to DATA/runs/<id>)."""
    parser.add_argument("--data", required=True, help="manifest CSV, or a folder with labels.csv or class folders")
    parser.add_argument("--arch", default=",".join(DEFAULTS["archs"]),
                        help="comma list: alexnet, googlenet, resnet18, vgg16, densenet121, mobilenetv2_100 "
                             f"or any timm name (default {','.join(DEFAULTS['archs'])})")
    parser.add_argument("--epochs", type=positive_int, default=DEFAULTS["epochs"],
                        help="most epochs per architecture (default %(default)s)")
    parser.add_argument("--batch-size", type=positive_int, default=DEFAULTS["batch_size"],
                        help="default %(default)s (the study's)")
    parser.add_argument("--image-size", type=positive_int, default=DEFAULTS["image_size"],
                        help="input side in pixels (default %(default)s)")
    parser.add_argument("--lr", type=positive_float, default=DEFAULTS["lr"], help="Adam learning rate (default %(default)g)")
    parser.add_argument("--weight-decay", type=non_negative_float, default=DEFAULTS["weight_decay"],
                        help="default %(default)g")
    parser.add_argument("--patience", type=non_negative_int, default=DEFAULTS["patience"],
                        help="stop after this many epochs without validation-loss improvement (default %(default)s)")
    parser.add_argument("--head", choices=("classification", "regression"), default=DEFAULTS["head"],
                        help="classification: three severity logits (the study); regression: one output "
                             "trained on the mean MASI (every image needs masi), bins from the predicted MASI")
    parser.add_argument("--class-weighted", action="store_true", help="weight the loss by inverse class frequency")
    if with_out:
        parser.add_argument("--out", default=DEFAULT_OUT, help=f"run folder (default {DEFAULT_OUT})")
    else:
        parser.add_argument("--processes", type=non_negative_int, default=DEFAULTS["processes"],
                            help="data-parallel training processes (torchrun, one GPU each): 0 = one per GPU "
                                 "when several are present, else one (default 0)")
    parser.add_argument("--device", type=device, default=DEFAULTS["device"], help="auto (cuda, mps, cpu), cpu, cuda, cuda:N or mps")
    parser.add_argument("--pretrained", default=DEFAULTS["pretrained"],
                        help="auto (the study's torchvision ImageNet weights: local cache, then download, "
                             "else random init with a warning), timm (timm's ImageNet recipe), off, or a "
                             "weights file (.safetensors or .pth, timm or torchvision layout)")
    parser.add_argument("--lr-auto", action="store_true",
                        help="networks that start from random init train with Adam lr 1e-4 (lr 1e-3 "
                             "collapses AlexNet and VGG16 from scratch)")
    parser.add_argument("--cutoffs", default=None,
                        help="MASI values where moderate and severe begin, e.g. 16,32 (the default)")
    parser.add_argument("--allow-patient-overlap", action="store_true",
                        help="accept a split column that puts one patient in two splits")
    parser.add_argument("--seed", type=seed, default=DEFAULTS["seed"], help="seed for splits, init and augmentation")
    parser.add_argument("--cache-dir", default=None, help="decoded-image cache (default $MELASMA_CACHE_DIR "
                                                          "or ~/.cache/melasma)")
    parser.add_argument("--bootstrap", type=non_negative_int, default=DEFAULTS["bootstrap"], help="bootstrap resamples for the 95%% CIs")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig the flags of `add_arguments` describe."""
    return TrainConfig(
        data=args.data, archs=args.arch, epochs=args.epochs, batch_size=args.batch_size,
        image_size=args.image_size, lr=args.lr, weight_decay=args.weight_decay, patience=args.patience,
        device=args.device, pretrained=args.pretrained, seed=args.seed, out=Path(getattr(args, "out", DEFAULT_OUT)),
        class_weighted=args.class_weighted, cache_dir=args.cache_dir, bootstrap=args.bootstrap,
        lr_auto=args.lr_auto, allow_patient_overlap=args.allow_patient_overlap,
        head=args.head, processes=getattr(args, "processes", 0),
        **({"cutoffs": args.cutoffs} if args.cutoffs else {}),
    )


class ProgressBar:
    """`on_event` for `train_many`: one tqdm bar per epoch, epoch lines and log lines above it."""

    def __init__(self) -> None:
        self.bar: Any = None

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __call__(self, event: TrainingEvent) -> None:
        from tqdm import tqdm

        match event:
            case BatchDone():
                if self.bar is None:
                    self.bar = tqdm(total=event.n_batches, unit="batch", leave=False,
                                    desc=f"{event.arch} epoch {event.epoch}")
                self.bar.set_postfix(loss=f"{event.loss:.3f}", refresh=False)
                self.bar.update(event.batch - self.bar.n)
            case EpochDone():
                self._close()
                tqdm.write(f"{event.arch} epoch {event.epoch}/{event.epochs}: train loss {event.train_loss:.4f} "
                           f"acc {event.train_acc:.3f} | val loss {event.val_loss:.4f} acc {event.val_acc:.3f} | "
                           f"{event.seconds:.1f} s" + (" *" if event.best else ""))
            case ArchDone(metrics=metrics):
                last = (f"MAE {metrics['mae']:.2f}, ICC {metrics['icc']:.3f}" if "mae" in metrics
                        else f"macro AUC {metrics['auc_macro']:.3f}")
                tqdm.write(f"{event.arch} test: accuracy {metrics['accuracy']:.3f}, F1 {metrics['f1_weighted']:.3f}, "
                           + last + (f" | COLLAPSED: {event.collapse_cause}" if event.collapsed else ""))
            case LogLine():
                self._close()
                tqdm.write(event.message)


def run(args: argparse.Namespace) -> int:
    import logging
    import sys
    import warnings

    import torch

    # deferred: imports torch; --help stays instant
    from melasma.models.factory import PretrainedWeightsWarning
    from melasma.training import distributed, train_many

    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    warnings.simplefilter("ignore", PretrainedWeightsWarning)  # logged once already
    config = config_from_args(args)
    try:
        summary = train_many(config, on_event=ProgressBar())
    except torch.OutOfMemoryError as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 1
    if distributed.launched_rank() != 0:
        return 0  # under torchrun rank 0 reports
    if len(summary) == 0:
        print("no architecture finished", file=sys.stderr)
        return 1
    print((config.out / "summary.md").read_text(), end="")
    print(f"checkpoints, metrics, history and figures: {config.out}/<arch>/; table: {config.out}/summary.csv")
    return 0
