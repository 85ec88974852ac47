"""The rating workflow on top of the store: who may rate, what to rate next, submit / revise,
consensus and the adjudication queue.

Blindness: nothing here returns another rater's scores for an image that still lacks ratings. Only
images with all k ratings (`Settings.ratings_per_image`) reach consensus, agreement and export, and
by then no one else can rate them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from annotation.store import (
    SCORE_FIELDS,
    AnnotationError,
    ImageRecord,
    Rating,
    RatingStore,
    UnknownImageError,
    UnknownRaterError,
)
from melasma import masi as masi_scale
from melasma.settings import Settings


def check_rater(rater: str | None, settings: Settings) -> str:
    """Return `rater` when it is one of the configured raters, else raise UnknownRaterError."""
    if not rater or rater not in settings.raters:
        raise UnknownRaterError(
            f"unknown rater {rater!r}; configured raters: {', '.join(settings.raters)}"
        )
    return rater


def scores_from_values(values: Sequence[object]) -> dict[str, dict[str, object]]:
    """Map 12 values (area, darkness, homogeneity for forehead, right malar, left malar, chin)
    onto the nested score mapping; `melasma.masi.validate` checks the values themselves."""
    if len(values) != len(SCORE_FIELDS):
        raise AnnotationError(f"expected {len(SCORE_FIELDS)} scores, got {len(values)}")
    scores: dict[str, dict[str, object]] = {region: {} for region in masi_scale.REGIONS}
    for (region, item), value in zip(SCORE_FIELDS, values):
        scores[region][item] = value
    return scores


def next_image(store: RatingStore, settings: Settings, rater: str) -> ImageRecord | None:
    """The next image `rater` has not rated that still needs ratings, or None when done."""
    return store.next_unrated(check_rater(rater, settings), settings.ratings_per_image)


@dataclass(frozen=True)
class Submission:
    """What a rater gets back after submitting: their own entry's scores, nothing of others'."""

    image_id: str
    rater: str
    masi: float
    mmasi: float
    revision: int

    @property
    def revised(self) -> bool:
        return self.revision > 1


def submit(
    store: RatingStore, settings: Settings, rater: str, image_id: str, scores: masi_scale.Scores
) -> Submission:
    """Validate and store `rater`'s scores for `image_id` (a second submit revises, audited).

    Raises UnknownRaterError, UnknownImageError, ImageCompleteError or ValueError (bad scores);
    nothing is stored then.
    """
    check_rater(rater, settings)
    clean = masi_scale.validate(scores)
    rating = store.save_rating(
        image_id, rater, clean, masi_scale.masi(clean), masi_scale.mmasi(clean),
        max_ratings=settings.ratings_per_image,
    )
    return Submission(rating.image_id, rating.rater, rating.masi, rating.mmasi, rating.revision)


def own_rating(store: RatingStore, settings: Settings, rater: str, image_id: str) -> Rating | None:
    """`rater`'s own rating of `image_id` (to revise it), or None; never another rater's."""
    check_rater(rater, settings)
    if store.get_image(image_id) is None:
        raise UnknownImageError(f"unknown image id {image_id!r}")
    return store.get_rating(image_id, rater)


@dataclass(frozen=True)
class ConsensusRow:
    """The consensus of one fully rated image and whether it needs adjudication (and why)."""

    image: ImageRecord
    ratings: tuple[Rating, ...]
    consensus: masi_scale.Consensus
    reasons: tuple[str, ...]

    @property
    def flagged(self) -> bool:
        return bool(self.reasons)


def _disagreements(ratings: Sequence[Rating], spread: float, threshold: float) -> tuple[str, ...]:
    reasons = []
    bins = {masi_scale.severity(r.masi) for r in ratings}
    if len(bins) > 1:
        reasons.append("raters disagree on the severity bin (" + ", ".join(sorted(bins)) + ")")
    if spread > threshold:
        reasons.append(f"MASI spread {spread:.1f} exceeds {threshold:g}")
    return tuple(reasons)


def consensus_rows(store: RatingStore, settings: Settings) -> list[ConsensusRow]:
    """Consensus (mean MASI, bin, region means, spread) of every image with all k ratings."""
    by_image: dict[str, list[Rating]] = {}
    for rating in store.ratings():
        by_image.setdefault(rating.image_id, []).append(rating)
    rows = []
    for image in store.images():
        ratings = by_image.get(image.id, [])
        if len(ratings) < settings.ratings_per_image:
            continue
        result = masi_scale.consensus([r.scores for r in ratings])
        reasons = _disagreements(ratings, result.spread, settings.spread_threshold)
        rows.append(ConsensusRow(image, tuple(ratings), result, reasons))
    return rows


def adjudication_queue(store: RatingStore, settings: Settings) -> list[ConsensusRow]:
    """Fully rated images whose raters disagree on the bin or spread more than the threshold."""
    return [row for row in consensus_rows(store, settings) if row.flagged]


def progress(store: RatingStore, settings: Settings) -> dict[str, dict[str, int]]:
    """Per rater: images rated, and images still open to them (not rated, not yet complete)."""
    counts = store.rating_counts()
    needed = settings.ratings_per_image
    result = {}
    for rater in settings.raters:
        mine = set(store.rated_by(rater))
        open_to_rater = sum(1 for i, n in counts.items() if i not in mine and n < needed)
        result[rater] = {"rated": len(mine), "remaining": open_to_rater}
    return result
