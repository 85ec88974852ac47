"""From outlined photos to a saved lesion model: encode, cross-validate, fit, write.

`python -m melasma lesions train --data DIR --out DIR` runs `build_lesion_model`; with `--cv K`
it also scores every photo with a model trained without it (K folds by photo, fixed by the seed)
and records those numbers in model.json, the ones the model card and docs/regions.md quote.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from melasma.lesions.model import LesionMeta, LesionModel
from melasma.lesions.net import ENCODER, LesionNet
from melasma.lesions.photos import LesionPhoto, load_photos
from melasma.lesions.train import EncodedViews, LesionTrainConfig, encode_views, fit_decoder, training_rows
from melasma.lesions.validate import LesionSummary, PhotoReading, PhotoScore, evaluate, folds, lesion_reading
from melasma.models.packaged import PACKAGED

THRESHOLD = 0.5
#: called with one line of progress
Report = Callable[[str], None]


@dataclass(frozen=True)
class CrossValidation:
    """Every photo scored by a model that never saw it."""

    folds: int
    seed: int
    scores: list[PhotoScore]
    summary: LesionSummary


def cells_of(config: LesionTrainConfig) -> Callable[[LesionPhoto], tuple[int, int]]:
    def cells(photo: LesionPhoto) -> tuple[int, int]:
        height, width = photo.rgb.shape[:2]
        scale = config.size / max(width, height)
        return max(1, round(width * scale / 32) * 4), max(1, round(height * scale / 32) * 4)

    return cells


def cross_validate(photos: Sequence[LesionPhoto], encoded: EncodedViews, config: LesionTrainConfig,
                   k: int = 5, report: Report | None = None) -> CrossValidation:
    """Fit one decoder per fold on the other folds' photos and score the held-out ones."""
    readings: list[PhotoReading | None] = [None] * len(photos)
    for fold, held_out in enumerate(folds(photos, k, config.seed)):
        kept = sorted(set(range(len(photos))) - set(held_out.tolist()))
        decoder = fit_decoder(encoded, training_rows(photos, config, kept), config)
        model = LesionModel.from_decoder(decoder, LesionMeta(size=config.size, threshold=THRESHOLD))
        for index in held_out:
            photo = photos[index]
            readings[index] = lesion_reading(photo, model.probability(photo.rgb), THRESHOLD)
        if report:
            report(f"cross-validation: fold {fold + 1}/{k} done ({len(held_out)} photos held out)")
    scores, summary = evaluate(photos, [r for r in readings if r is not None], THRESHOLD, cells_of(config))
    return CrossValidation(k, config.seed, scores, summary)


def build_lesion_model(data: str | Path, out: str | Path, config: LesionTrainConfig, *, cv: int = 0,
                       report: Report | None = None) -> tuple[LesionModel, CrossValidation | None]:
    """Train on every outlined photo of `data` (Roboflow layout), write the model to `out`."""
    say = report or (lambda line: None)
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    photos = load_photos(data, healthy=config.healthy or cv > 0)
    say(f"{len(photos)} photos ({sum(p.melasma for p in photos)} with melasma outlines, "
        f"{sum(p.face for p in photos)} with a face found)")
    net = LesionNet()
    encoded = encode_views(net, photos, config,
                           on_encoded=lambda done, total: say(f"encoded {done}/{total} photos")
                           if done % 10 == 0 or done == total else None)
    validation = cross_validate(photos, encoded, config, cv, say) if cv else None
    decoder = fit_decoder(encoded, training_rows(photos, config), config,
                          on_epoch=lambda epoch, epochs, loss: say(f"epoch {epoch}/{epochs}: loss {loss:.4f}")
                          if epoch % 10 == 0 or epoch == epochs else None)
    weights = PACKAGED[ENCODER]
    meta = LesionMeta(
        size=config.size, threshold=THRESHOLD, encoder_source=weights.source, encoder_sha256=weights.sha256,
        training={
            "config": asdict(config), "data": str(Path(data).name),
            "photos": {"melasma": sum(p.melasma for p in photos if p.melasma or config.healthy),
                       "healthy": sum(not p.melasma for p in photos) if config.healthy else 0},
            "seconds": round(time.perf_counter() - started, 1), "machine": platform.machine(),
            "torch": torch.__version__,
        },
        metrics={"cross_validated": {"folds": cv, "seed": config.seed, **asdict(validation.summary)}}
        if validation else {},
    )
    model = LesionModel.from_decoder(decoder, meta)
    model.save(out)
    say(f"wrote {Path(out) / 'model.safetensors'}")
    return model, validation
