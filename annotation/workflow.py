"""The rating workflow on top of the store: who may rate, what to rate next, submit / revise,
consensus and the adjudication queue.

The rules come from a `RatingPolicy` (raters, k ratings per photo, spread threshold, severity
cut-offs), not from the app's Settings: `Workflow(store, policy)` binds both, and the functions below
take the policy or the app's `melasma.settings.Settings` (`RatingPolicy.from_settings`).

Blindness: nothing here returns another rater's scores for an image that still lacks ratings. Only
images with all k ratings reach consensus, agreement and export, and by then no one else can rate
them. A closed image's ratings are final for raters: only a coordinator changes the outcome, by
adjudicating a MASI or asking one rater to rate again (both logged).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

from annotation.store import (
    SCORE_FIELDS,
    Adjudication,
    AnnotationError,
    ImageRecord,
    Rating,
    RatingStore,
    UnknownImageError,
    UnknownRaterError,
)
from melasma import masi as masi_scale
from melasma.errors import UserError

if TYPE_CHECKING:  # the store and the workflow run without the app's settings (tests/test_rating_policy.py)
    from melasma.settings import Settings


@dataclass(frozen=True)
class RatingPolicy:
    """Who rates, how many ratings close a photo (k), when raters disagree enough to need a
    coordinator (MASI spread above `spread_threshold`, or different severity bins under `cutoffs`)."""

    raters: tuple[str, ...]
    k: int = 3
    spread_threshold: float = 8.0
    cutoffs: tuple[float, float] = field(default=masi_scale.DEFAULT_CUTOFFS["masi"])

    def __post_init__(self) -> None:
        object.__setattr__(self, "raters", tuple(self.raters))
        object.__setattr__(self, "cutoffs", tuple(self.cutoffs))
        if self.k < 2:
            raise UserError(f"ratings per image must be at least 2, got {self.k}")
        if len(set(self.raters)) != len(self.raters):
            raise UserError("rater names must be unique")
        masi_scale.severity(0.0, "masi", self.cutoffs)  # raises on cut-offs outside 0 < moderate < severe <= 48

    @classmethod
    def from_settings(cls, settings: Settings) -> RatingPolicy:
        """The app's rules: its raters, ratings per image and spread threshold (the study's cut-offs)."""
        return cls(settings.raters, settings.ratings_per_image, settings.spread_threshold)

    def check_rater(self, rater: str | None) -> str:
        """Return `rater` when it is one of the raters, else raise UnknownRaterError."""
        if not rater or rater not in self.raters:
            raise UnknownRaterError(f"unknown rater {rater!r}; configured raters: {', '.join(self.raters)}")
        return rater


Policy: TypeAlias = "RatingPolicy | Settings"


def as_policy(policy: Policy) -> RatingPolicy:
    """`policy` itself, or the one the settings hold."""
    return policy if isinstance(policy, RatingPolicy) else RatingPolicy.from_settings(policy)


def check_rater(rater: str | None, policy: Policy) -> str:
    """Return `rater` when it is one of the configured raters, else raise UnknownRaterError."""
    return as_policy(policy).check_rater(rater)


def scores_from_values(values: Sequence[object]) -> dict[str, dict[str, object]]:
    """Map 12 values (area, darkness, homogeneity for forehead, right malar, left malar, chin)
    onto the nested score mapping; `melasma.masi.validate` checks the values themselves."""
    if len(values) != len(SCORE_FIELDS):
        raise AnnotationError(f"expected {len(SCORE_FIELDS)} scores, got {len(values)}")
    scores: dict[str, dict[str, object]] = {region: {} for region in masi_scale.REGIONS}
    for (region, item), value in zip(SCORE_FIELDS, values):
        scores[region][item] = value
    return scores


def next_image(store: RatingStore, policy: Policy, rater: str) -> ImageRecord | None:
    """The next image for `rater`: a coordinator's re-rating request first, else one they have not
    rated that still needs ratings; None when done."""
    rules = as_policy(policy)
    rules.check_rater(rater)
    for image_id in store.rerate_requests(rater):
        return store.get_image(image_id)
    return store.next_unrated(rater, rules.k)


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


def hide_regions(scores: masi_scale.RawScores, hidden: Sequence[str]) -> dict[str, dict[str, object]]:
    """The scores with every region in `hidden` ("not visible in this photo") set to 0."""
    unknown = sorted(set(hidden) - set(masi_scale.REGIONS))
    if unknown:
        raise AnnotationError(f"unknown region {unknown[0]!r}; regions are {', '.join(masi_scale.REGIONS)}")
    if set(hidden) == set(masi_scale.REGIONS):
        raise AnnotationError("at least one region must be visible to rate the photo")
    return {region: ({item: 0 for item in masi_scale.ITEMS} if region in hidden else dict(scores[region]))
            for region in masi_scale.REGIONS}


def submit(
    store: RatingStore, policy: Policy, rater: str, image_id: str, scores: masi_scale.RawScores,
    hidden: Sequence[str] = (),
) -> Submission:
    """Validate and store `rater`'s scores for `image_id` (a second submit revises, audited).
    Regions in `hidden` are "not visible in this photo": stored as 0 and listed with the rating.

    Raises UnknownRaterError, UnknownImageError, ImageCompleteError or UserError (bad scores);
    nothing is stored then.
    """
    rules = as_policy(policy)
    rules.check_rater(rater)
    hidden = tuple(region for region in masi_scale.REGIONS if region in set(hidden))
    entry = masi_scale.RaterScores.from_raw(hide_regions(scores, hidden) if hidden else scores)
    rating = store.save_rating(image_id, rater, entry, max_ratings=rules.k, hidden=hidden)
    return Submission(rating.image_id, rating.rater, rating.masi, rating.mmasi, rating.revision)


def own_rating(store: RatingStore, policy: Policy, rater: str, image_id: str) -> Rating | None:
    """`rater`'s own rating of `image_id` (to revise it), or None; never another rater's."""
    check_rater(rater, policy)
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
    decisions: tuple[Adjudication, ...] = ()

    @property
    def flagged(self) -> bool:
        return bool(self.reasons)

    @property
    def rerating(self) -> tuple[str, ...]:
        """Raters a coordinator asked to rate again who have not done so yet."""
        changed = {r.rater: r.updated_at for r in self.ratings}
        return tuple(sorted({d.rater for d in self.decisions if d.action == "rerate" and d.rater
                             and d.decided_at > changed.get(d.rater, "")}))

    @property
    def hidden(self) -> tuple[str, ...] | None:
        """Regions every rater marked not visible (() when none); None when raters disagree."""
        sets = {r.hidden for r in self.ratings}
        return next(iter(sets)) if len(sets) == 1 else None

    @property
    def adjudicated(self) -> float | None:
        """The coordinator's MASI when their latest word came after the last rating change."""
        last_change = max(r.updated_at for r in self.ratings)
        verdicts = [d for d in self.decisions if d.action == "adjudicate" and d.decided_at > last_change]
        return verdicts[-1].new_masi if verdicts else None

    @property
    def status(self) -> str:
        """`re-rating`, `adjudicated`, `disputed` (in the adjudication queue) or `agreed`."""
        if self.rerating:
            return "re-rating"
        if self.adjudicated is not None:
            return "adjudicated"
        return "disputed" if self.flagged else "agreed"

    @property
    def label_masi(self) -> float:
        """The MASI training uses: the adjudicated one if any, else the consensus mean, rescaled
        to the whole face when all raters marked the same regions not visible (mean / visible weight)."""
        adjudicated = self.adjudicated
        if adjudicated is not None:
            return adjudicated
        visible = 1 - sum(masi_scale.REGION_WEIGHTS[r] for r in self.hidden or ())
        return round(min(self.consensus.masi / visible, masi_scale.SCALE_MAX["masi"]), 10)

    @property
    def trainable(self) -> bool:
        """False while raters disagree on which regions are visible and no coordinator decided."""
        return self.hidden is not None or self.adjudicated is not None


def _disagreements(ratings: Sequence[Rating], spread: float, rules: RatingPolicy) -> tuple[str, ...]:
    reasons = []
    if len({r.hidden for r in ratings}) > 1:
        reasons.append("raters disagree on which regions are visible")
    bins = {masi_scale.severity(r.masi, "masi", rules.cutoffs) for r in ratings}
    if len(bins) > 1:
        reasons.append("raters disagree on the severity bin (" + ", ".join(sorted(bins)) + ")")
    if spread > rules.spread_threshold:
        reasons.append(f"MASI spread {spread:.1f} exceeds {rules.spread_threshold:g}")
    return tuple(reasons)


def consensus_rows(store: RatingStore, policy: Policy) -> list[ConsensusRow]:
    """Consensus (mean MASI, bin, region means, spread) of every image with all k ratings."""
    by_image: dict[str, list[Rating]] = {}
    for rating in store.ratings():
        by_image.setdefault(rating.image_id, []).append(rating)
    decisions: dict[str, list[Adjudication]] = {}
    for decision in store.adjudications():
        decisions.setdefault(decision.image_id, []).append(decision)
    rules = as_policy(policy)
    rows = []
    for image in store.images():
        ratings = by_image.get(image.id, [])
        if len(ratings) < rules.k:
            continue
        result = masi_scale.consensus([r.scores for r in ratings], rules.cutoffs)
        reasons = _disagreements(ratings, result.spread, rules)
        rows.append(ConsensusRow(image, tuple(ratings), result, reasons,
                                 tuple(decisions.get(image.id, ()))))
    return rows


def adjudication_queue(store: RatingStore, policy: Policy) -> list[ConsensusRow]:
    """Fully rated images whose raters disagree (bin or spread) and no coordinator has resolved."""
    return [row for row in consensus_rows(store, policy) if row.status == "disputed"]


def closed_row(store: RatingStore, policy: Policy, image_id: str) -> ConsensusRow:
    """The consensus row of a closed (fully rated) image, or AnnotationError."""
    for row in consensus_rows(store, policy):
        if row.image.id == image_id:
            return row
    if store.get_image(image_id) is None:
        raise UnknownImageError(f"unknown image id {image_id!r}")
    raise AnnotationError(f"photo {image_id} does not have all {as_policy(policy).k} ratings yet")


def adjudicate(
    store: RatingStore, policy: Policy, coordinator: str, image_id: str, masi: float, reason: str
) -> Adjudication:
    """Record a coordinator's MASI for a closed photo (logged: who, when, old consensus, new, why)."""
    row = closed_row(store, policy, image_id)
    top = masi_scale.SCALE_MAX["masi"]
    if not 0 <= masi <= top:
        raise AnnotationError(f"the adjudicated MASI must be between 0 and {top:g}")
    if not reason.strip():
        raise AnnotationError("say why (the reason is kept in the audit log)")
    return store.add_adjudication(image_id, coordinator, "adjudicate", reason,
                                  old_masi=row.label_masi, new_masi=float(masi))


def request_rerate(
    store: RatingStore, policy: Policy, coordinator: str, image_id: str, rater: str, reason: str
) -> Adjudication:
    """Ask one rater to rate a closed photo again: it comes first in their queue, blank (logged)."""
    row = closed_row(store, policy, image_id)
    check_rater(rater, policy)
    if not reason.strip():
        raise AnnotationError("say why (the reason is kept in the audit log)")
    return store.add_adjudication(image_id, coordinator, "rerate", reason,
                                  old_masi=row.label_masi, rater=rater)


def progress(store: RatingStore, policy: Policy) -> dict[str, dict[str, int]]:
    """Per rater: images rated, and images still open to them (not rated, not yet complete)."""
    counts = store.rating_counts()
    rules = as_policy(policy)
    needed = rules.k
    result = {}
    for rater in rules.raters:
        mine = set(store.rated_by(rater))
        open_to_rater = sum(1 for i, n in counts.items() if i not in mine and n < needed)
        result[rater] = {"rated": len(mine), "remaining": open_to_rater}
    return result


@dataclass(frozen=True)
class Workflow:
    """The rating workflow of one store under one policy: what the Annotate tab and the CLI call."""

    store: RatingStore
    policy: RatingPolicy

    def next_image(self, rater: str) -> ImageRecord | None:
        return next_image(self.store, self.policy, rater)

    def submit(self, rater: str, image_id: str, scores: masi_scale.RawScores, hidden: Sequence[str] = ()) -> Submission:
        return submit(self.store, self.policy, rater, image_id, scores, hidden)

    def own_rating(self, rater: str, image_id: str) -> Rating | None:
        return own_rating(self.store, self.policy, rater, image_id)

    def consensus_rows(self) -> list[ConsensusRow]:
        return consensus_rows(self.store, self.policy)

    def adjudication_queue(self) -> list[ConsensusRow]:
        return adjudication_queue(self.store, self.policy)

    def closed_row(self, image_id: str) -> ConsensusRow:
        return closed_row(self.store, self.policy, image_id)

    def adjudicate(self, coordinator: str, image_id: str, masi: float, reason: str) -> Adjudication:
        return adjudicate(self.store, self.policy, coordinator, image_id, masi, reason)

    def request_rerate(self, coordinator: str, image_id: str, rater: str, reason: str) -> Adjudication:
        return request_rerate(self.store, self.policy, coordinator, image_id, rater, reason)

    def progress(self) -> dict[str, dict[str, int]]:
        return progress(self.store, self.policy)
