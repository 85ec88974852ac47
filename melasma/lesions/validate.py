"""How well a lesion map reads real photos: pixel, cell and photo measures, and cross-validation.

Measures (the keys of `benchmarks/regions_real.py --json`):
- Dice / IoU of the lesion skin against the outline, per melasma photo with a face (`dice_mean`,
  `iou_mean`), beside the Dice of the trivial mask "all of the face's skin" (`dice_whole_skin`);
- `lesion_cell_auc`: 8 x 8 cells of the model's input that are mostly skin, lesion (mostly inside
  the outline) vs other skin, pooled over the melasma photos;
- melasma vs healthy photo ROC AUC of the image-derived MASI (`auc_melasma`) and of the lesion share
  of the skin, beside the tone baseline (`melasma.regions.tone`), also within the darker and the
  lighter half of the photos split at the median skin ITA; photos with no face are scored over
  their skin-coloured pixels, never dropped;
- `area_corr`: lesion share vs outline share of the photo, melasma photos.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from melasma.errors import UserError
from melasma.lesions.photos import LesionPhoto
from melasma.regions.find import find_regions
from melasma.regions.lesion_measure import measure_lesions, measure_skin
from melasma.regions.pigment import measure_pigment
from melasma.regions.tone import tone_score
from melasma.regions.types import FaceNotFound


@dataclass(frozen=True)
class PhotoScore:
    """One photo's outcome (NaN where it does not apply)."""

    name: str
    melasma: bool
    face: bool
    ita: float
    lesion_share: float  # share of the skin the map calls lesion
    outline_share: float  # share of the photo inside the outline
    masi: float  # image-derived MASI (no face: the skin as one region)
    dice: float
    iou: float
    dice_skin: float


@dataclass(frozen=True)
class LesionSummary:
    """The benchmark's headline numbers."""

    images: int
    faces_found: int
    dice_mean: float
    iou_mean: float
    area_corr: float
    auc_melasma: float
    tone_baseline_auc: float
    dice_whole_skin: float
    lesion_cell_auc: float
    auc_lesion_share: float
    auc_darker_half: float
    auc_lighter_half: float
    tone_auc_darker_half: float
    tone_auc_lighter_half: float
    healthy_lesion_share: float  # mean over photos without melasma
    melasma_lesion_share: float


def overlap(found: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(Dice, IoU) of two bool masks; both empty counts as 1."""
    both = float((found & truth).sum())
    total = float(found.sum() + truth.sum())
    if total == 0:
        return 1.0, 1.0
    return 2 * both / total, both / float((found | truth).sum())


@dataclass(frozen=True)
class PhotoReading:
    """What a method made of one photo: lesion probability at its resolution, image-derived MASI."""

    probability: np.ndarray  # float32 (h, w)
    masi: float


def lesion_reading(photo: LesionPhoto, probability: np.ndarray, threshold: float) -> PhotoReading:
    """The lesion model's reading: MASI by region on a face, the skin as one region without one."""
    try:
        regions = find_regions(photo.rgb) if photo.face else None
    except FaceNotFound:
        regions = None
    if regions is not None:
        return PhotoReading(probability, measure_lesions(photo.rgb, regions, probability, threshold).masi)
    return PhotoReading(probability, measure_skin(photo.rgb, photo.skin, probability, threshold).masi)


def colour_reading(photo: LesionPhoto) -> PhotoReading:
    """The CIELAB colour rules (`melasma.regions.pigment`): they need a face; without one, nothing."""
    try:
        regions = find_regions(photo.rgb)
    except FaceNotFound:
        return PhotoReading(np.zeros(photo.rgb.shape[:2], np.float32), 0.0)
    measures = measure_pigment(photo.rgb, regions)
    return PhotoReading(measures.pigment_mask.astype(np.float32), measures.masi)


def score_photo(photo: LesionPhoto, reading: PhotoReading, threshold: float,
                cells: tuple[int, int]) -> tuple[PhotoScore, np.ndarray, np.ndarray]:
    """The photo's score, and its skin cells' (probabilities, lesion labels) at `cells` (w, h)."""
    nan = float("nan")
    lesion = (reading.probability > threshold) & photo.skin
    share = float(lesion.sum() / max(int(photo.skin.sum()), 1))
    dice = iou = dice_skin = nan
    if photo.melasma and photo.face:
        dice, iou = overlap(lesion, photo.lesion)
        dice_skin = overlap(photo.skin, photo.lesion)[0]
    cell_skin = cv2.resize(photo.skin.astype(np.float32), cells, interpolation=cv2.INTER_AREA) >= 0.5
    cell_truth = cv2.resize(photo.lesion.astype(np.float32), cells, interpolation=cv2.INTER_AREA) >= 0.5
    cell_probability = cv2.resize(reading.probability, cells, interpolation=cv2.INTER_AREA)
    score = PhotoScore(photo.name, photo.melasma, photo.face, photo.ita, share, float(photo.lesion.mean()),
                       float(reading.masi), dice, iou, dice_skin)
    return score, cell_probability[cell_skin], cell_truth[cell_skin]


def _auc(labels: Sequence[bool], scores: Sequence[float]) -> float:
    return float(roc_auc_score(labels, scores)) if len(set(labels)) == 2 else float("nan")


def summarise(scores: Sequence[PhotoScore], cell_probability: np.ndarray, cell_truth: np.ndarray) -> LesionSummary:
    """Headline numbers over the photos (melasma and healthy)."""
    labels = [s.melasma for s in scores]
    with_face = [s for s in scores if s.melasma and s.face]
    melasma = [s for s in scores if s.melasma]
    median_ita = float(np.median([s.ita for s in scores]))
    halves = {"darker": [s for s in scores if s.ita <= median_ita],
              "lighter": [s for s in scores if s.ita > median_ita]}
    areas = np.array([(s.lesion_share, s.outline_share) for s in melasma])
    return LesionSummary(
        images=len(scores),
        faces_found=sum(s.face for s in scores),
        dice_mean=float(np.mean([s.dice for s in with_face])) if with_face else float("nan"),
        iou_mean=float(np.mean([s.iou for s in with_face])) if with_face else float("nan"),
        area_corr=float(np.corrcoef(areas.T)[0, 1]) if len(melasma) > 2 else float("nan"),
        auc_melasma=_auc(labels, [s.masi for s in scores]),
        tone_baseline_auc=_auc(labels, [tone_score(s.ita) for s in scores]),
        dice_whole_skin=float(np.mean([s.dice_skin for s in with_face])) if with_face else float("nan"),
        lesion_cell_auc=_auc(list(cell_truth), list(cell_probability)),
        auc_lesion_share=_auc(labels, [s.lesion_share for s in scores]),
        auc_darker_half=_auc([s.melasma for s in halves["darker"]], [s.masi for s in halves["darker"]]),
        auc_lighter_half=_auc([s.melasma for s in halves["lighter"]], [s.masi for s in halves["lighter"]]),
        tone_auc_darker_half=_auc([s.melasma for s in halves["darker"]],
                                  [tone_score(s.ita) for s in halves["darker"]]),
        tone_auc_lighter_half=_auc([s.melasma for s in halves["lighter"]],
                                   [tone_score(s.ita) for s in halves["lighter"]]),
        healthy_lesion_share=float(np.mean([s.lesion_share for s in scores if not s.melasma] or [np.nan])),
        melasma_lesion_share=float(np.mean([s.lesion_share for s in melasma] or [np.nan])),
    )


def evaluate(photos: Sequence[LesionPhoto], readings: Sequence[PhotoReading], threshold: float,
             cells_of: Callable[[LesionPhoto], tuple[int, int]]) -> tuple[list[PhotoScore], LesionSummary]:
    """Score every photo by its reading (one per photo) and summarise."""
    scores, cell_probability, cell_truth = [], [], []
    for photo, reading in zip(photos, readings, strict=True):
        score, cell_p, cell_t = score_photo(photo, reading, threshold, cells_of(photo))
        scores.append(score)
        if photo.melasma:
            cell_probability.append(cell_p)
            cell_truth.append(cell_t)
    return scores, summarise(scores, np.concatenate(cell_probability or [np.zeros(0)]),
                             np.concatenate(cell_truth or [np.zeros(0, bool)]))


def folds(photos: Sequence[LesionPhoto], k: int, seed: int) -> list[np.ndarray]:
    """`k` held-out index sets by photo, stratified by melasma / healthy, fixed by `seed`."""
    if k < 2:
        raise UserError(f"cross-validation needs at least 2 folds, got {k}")
    labels = np.array([photo.melasma for photo in photos])
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [test for _, test in splitter.split(np.zeros(len(labels)), labels)]
