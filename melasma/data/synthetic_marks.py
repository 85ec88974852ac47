"""Which stored photos are synthetic: `synth` lists the ids it ingests in the data folder
(`DataLayout.synthetic_list`), so that a study is never mixed with cartoon faces unnoticed.

`refuse_mixing` stops a command that would add synthetic photos or ratings to a store that holds
real ones (unless forced); `synthetic_note` is what the Agreement and Export screens say when
synthetic photos are in the store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from melasma.errors import UserError
from melasma.layout import DataLayout


class MixingError(UserError):
    """Synthetic photos would land in a store holding real ones."""


@dataclass(frozen=True)
class StoreMix:
    """How many of a store's photos are synthetic and how many real."""

    synthetic: int
    real: int


def synthetic_ids(layout: DataLayout) -> set[str]:
    """The ids `synth` has ingested into this data folder (empty when none)."""
    path = layout.synthetic_list
    if not path.is_file():
        return set()
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def mark_synthetic(layout: DataLayout, ids: Iterable[str]) -> None:
    """Add `ids` to the data folder's list of synthetic photos."""
    known = synthetic_ids(layout)
    new = sorted(set(ids) - known)
    if new:
        layout.root.mkdir(parents=True, exist_ok=True)
        with layout.synthetic_list.open("a") as handle:
            handle.write("".join(f"{image_id}\n" for image_id in new))


def store_mix(layout: DataLayout, image_ids: Iterable[str]) -> StoreMix:
    """Synthetic and real photos among a store's `image_ids`."""
    ids = set(image_ids)
    synthetic = len(ids & synthetic_ids(layout))
    return StoreMix(synthetic=synthetic, real=len(ids) - synthetic)


def refuse_mixing(layout: DataLayout, image_ids: Iterable[str], *, force: bool = False) -> None:
    """MixingError when the store (`image_ids`) already holds real photos and `force` is not set."""
    mix = store_mix(layout, image_ids)
    if mix.real and not force:
        raise MixingError(
            f"{layout.root} holds {mix.real} real photo(s): synthetic photos and ratings would mix with the "
            "study's (agreement, exports, training). Write them to a folder of their own (--data-dir "
            "followup-data) or pass --force")


def synthetic_note(layout: DataLayout, image_ids: Iterable[str]) -> str:
    """A warning line (Markdown) when synthetic photos are among `image_ids`; empty otherwise."""
    mix = store_mix(layout, image_ids)
    if not mix.synthetic:
        return ""
    return (f"⚠️ **{mix.synthetic} of {mix.synthetic + mix.real} photos here are synthetic** (cartoon faces "
            "written by `synth`, rated by simulated raters): they count in these numbers and in exports.")
