"""Train/val/test assignment: 6:3:1 by default, stratified by severity, grouped by patient."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from melasma.masi import SEVERITIES

SPLITS: tuple[str, ...] = ("train", "val", "test")
DEFAULT_RATIOS: tuple[float, float, float] = (0.6, 0.3, 0.1)


class DatasetError(ValueError):
    """A data set cannot be used; the message lists every problem found."""


def _groups(df: pd.DataFrame) -> pd.Series:
    """One group key per row: the patient when known, else the image (its content hash when known,
    so the key does not depend on the row order)."""
    rows = pd.Series([f"\0row{i}" for i in range(len(df))], index=df.index)
    if "sha256" in df:
        rows = rows.where(df["sha256"].isna(), "image:" + df["sha256"].astype(str))
    if "patient_id" not in df:
        return rows
    patients = df["patient_id"].astype("object")
    known = patients.notna() & (patients.astype(str).str.strip() != "")
    return rows.where(~known, "patient:" + patients.astype(str))


def patients_in_several_splits(df: pd.DataFrame) -> dict[str, list[str]]:
    """Patient id -> the splits it appears in, for every patient found in more than one split."""
    if "patient_id" not in df or "split" not in df:
        return {}
    known = df[df["patient_id"].notna() & df["split"].notna()]
    spread = known.groupby(known["patient_id"].astype(str))["split"].unique()
    return {patient: sorted(splits) for patient, splits in spread.items() if len(splits) > 1}


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
