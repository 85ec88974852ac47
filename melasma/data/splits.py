"""Train/val/test assignment: 6:3:1 by default, stratified by severity, grouped by patient."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from melasma.errors import UserError
from melasma.masi import SEVERITIES

SPLITS: tuple[str, ...] = ("train", "val", "test")
DEFAULT_RATIOS: tuple[float, float, float] = (0.6, 0.3, 0.1)


class DatasetError(UserError):
    """A data set cannot be used; the message lists every problem found."""


def patient_key(value: object) -> str | None:
    """A patient id as compared: case- and space-insensitive ("P005", " p005 " and "p 005" are one
    patient); None for a missing or blank id."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    key = "".join(str(value).split()).casefold()
    return key or None


def _patient_keys(df: pd.DataFrame) -> pd.Series:
    if "patient_id" not in df:
        return pd.Series(None, index=df.index, dtype=object)
    return df["patient_id"].map(patient_key).astype(object)


def _groups(df: pd.DataFrame) -> pd.Series:
    """One group key per row: the patient when known (`patient_key`), else the image (its content
    hash when known, so the key does not depend on the row order)."""
    rows = pd.Series([f"\0row{i}" for i in range(len(df))], index=df.index)
    if "sha256" in df:
        rows = rows.where(df["sha256"].isna(), "image:" + df["sha256"].astype(str))
    patients = _patient_keys(df)
    return rows.where(patients.isna(), "patient:" + patients.astype(str))


def patients_in_several_splits(df: pd.DataFrame) -> dict[str, list[str]]:
    """Patient id (as first written) -> the splits it appears in, for every patient (`patient_key`)
    found in more than one split."""
    if "patient_id" not in df or "split" not in df:
        return {}
    keys = _patient_keys(df)
    known = df.assign(key=keys)[keys.notna() & df["split"].notna()]
    spread = known.groupby("key", sort=True).agg(shown=("patient_id", "first"), splits=("split", "unique"))
    return {str(row.shown).strip(): sorted(row.splits) for row in spread.itertuples() if len(row.splits) > 1}


def patient_id_warning(df: pd.DataFrame) -> str | None:
    """One loud line when images have no patient id (None when all have one): each such image is its
    own unit in the automatic split, so one patient's photos can sit in train and test."""
    missing = int(_patient_keys(df).isna().sum())
    if missing == 0:
        return None
    which = "no image has a patient id" if missing == len(df) else f"{missing} of {len(df)} images have no patient id"
    return (f"{which}: each such image is its own unit in the split, so photos of one patient can land in "
            "both training and test and the test metrics can be optimistic; give a patient_id column in the "
            "CSV, or a patients.csv (file,patient_id) beside the class folders")


def assign_splits(
    df: pd.DataFrame, seed: int = 0, ratios: tuple[float, float, float] = DEFAULT_RATIOS
) -> pd.Series:
    """Return a train/val/test label per row of `df` (needs a `severity` column).

    A filled `split` column wins. Otherwise patients (or single images without a patient id, keyed
    by their `sha256` when the column exists) are sorted by key, so the row order does not matter,
    shuffled with `seed` and placed greedily, largest first, where their classes are most lacking
    relative to the target ratios; every class ends up in train. Raises DatasetError when there are
    too few images or patients to fill three splits.
    """
    if "split" in df and df["split"].notna().all():
        return df["split"].astype(str).rename("split")
    if len(ratios) != 3 or any(r <= 0 for r in ratios):
        raise ValueError(f"ratios must be three positive numbers (train, val, test), got {ratios}")
    target_share = np.asarray(ratios, float) / sum(ratios)
    groups = _groups(df)
    n_groups = groups.nunique()
    needed = math.ceil(1 / target_share.min() - 1e-9)
    if n_groups < needed:
        unit = "patients/images" if "patient_id" in df else "images"
        raise DatasetError(
            f"too few {unit} for a {':'.join(f'{r:g}' for r in ratios)} split: "
            f"need at least {needed}, got {n_groups}"
        )

    classes = df["severity"].map({s: i for i, s in enumerate(SEVERITIES)}).to_numpy()
    members: dict[str, np.ndarray] = {k: np.flatnonzero(groups.to_numpy() == k) for k in groups.unique()}
    rng = np.random.default_rng(seed)
    ordered = sorted(members)  # a function of the content, not of the row order
    keys = [ordered[i] for i in rng.permutation(n_groups)]
    keys.sort(key=lambda k: -len(members[k]))  # stable: equal sizes keep the shuffled order

    totals = np.bincount(classes, minlength=len(SEVERITIES)).astype(float)
    target = target_share[:, None] * totals[None, :]
    counts = np.zeros_like(target)
    placed: dict[str, int] = {}
    for key in keys:
        group_counts = np.bincount(classes[members[key]], minlength=len(SEVERITIES))
        deficit = (target - counts) / np.maximum(target, 1e-9)
        choice = int(np.argmax(deficit @ group_counts))  # ties go to the earlier split (train)
        placed[key] = choice
        counts[choice] += group_counts

    for c in np.flatnonzero((counts[0] == 0) & (totals > 0)):  # every class must be in train
        donors = [k for k in keys if placed[k] != 0 and (classes[members[k]] == c).any()]
        key = min(donors, key=lambda k: len(members[k]))
        counts[placed[key]] -= np.bincount(classes[members[key]], minlength=len(SEVERITIES))
        counts[0] += np.bincount(classes[members[key]], minlength=len(SEVERITIES))
        placed[key] = 0

    empty = [SPLITS[s] for s in range(3) if counts[s].sum() == 0]
    if empty:
        raise DatasetError(
            f"too few images or patients to fill the {', '.join(empty)} split(s); add more images"
        )
    labels = np.empty(len(df), dtype=object)
    for key, split in placed.items():
        labels[members[key]] = SPLITS[split]
    return pd.Series(labels, index=df.index, name="split")
