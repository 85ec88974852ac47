"""Dataset manifests: a CSV (`image` + `masi` or `severity`) or mild/moderate/severe folders -> table.

`load_dataset` returns one row per image with columns `path` (absolute), `label` (index into
`SEVERITIES`), `severity`, `masi` (NaN when unknown), `patient_id` (str or None), `split`, `sha256`
(of the file bytes) and `skin_type` (the CSV's `skin_type` column, else its `fitzpatrick` column as
the synthetic set writes it, else None). Class folders take patient ids from a `patients.csv`
(`file,patient_id`) beside them. Patient ids compare case- and space-insensitively
(`splits.patient_key`); `splits.patient_id_warning` says when some are missing. Every problem is collected first and raised as one
`DatasetError`; a user `split` column that puts one patient in two splits is one, unless
`allow_patient_overlap`.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import defaultdict
from pathlib import Path

import pandas as pd

from melasma.data.images import file_sha256
from melasma.data.splits import SPLITS, DatasetError, assign_splits, patient_key, patients_in_several_splits
from melasma.masi import SCALE_MAX, SEVERITIES, severity

__all__ = ["IMAGE_EXTENSIONS", "DatasetError", "load_dataset", "manifest_hash"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
DEFAULT_CSV_NAMES = ("labels.csv", "manifest.csv")
#: Patient ids of a class-folder data set: `file,patient_id` rows in this file beside the folders.
PATIENTS_CSV = "patients.csv"
_MAX_LISTED = 20


def _listing(items: list[str], sep: str = ", ") -> str:
    shown = sep.join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def _lines(rows: list[int]) -> str:
    return "line" + ("s " if len(rows) > 1 else " ") + _listing([str(r) for r in rows])


def _read_csv(csv_path: Path, cutoffs: tuple[float, float] | None, problems: list[str]) -> pd.DataFrame:
    try:
        raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DatasetError(f"{csv_path}: not a readable CSV file ({error})") from None
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    if "image" not in raw:
        raise DatasetError(f"{csv_path}: no 'image' column (columns: {', '.join(raw.columns)})")
    if "masi" not in raw and "severity" not in raw:
        raise DatasetError(f"{csv_path}: needs a 'masi' or a 'severity' column")
    line = pd.Series(range(2, len(raw) + 2), index=raw.index)  # the header is line 1

    image = raw["image"].str.strip()
    blank = line[image == ""].tolist()
    if blank:
        problems.append(f"empty image path on {_lines(blank)}")

    masi_text = raw["masi"].str.strip() if "masi" in raw else pd.Series("", index=raw.index)
    masi = pd.to_numeric(masi_text, errors="coerce")
    top = SCALE_MAX["masi"]
    bad_masi = line[(masi_text != "") & ~masi.between(0, top)].tolist()
    if bad_masi:
        problems.append(f"masi must be a number 0-{top:g} on {_lines(bad_masi)}")
    masi = masi.where(masi.between(0, top))

    given = raw["severity"].str.strip().str.lower() if "severity" in raw else pd.Series("", index=raw.index)
    labels = given.where(masi.isna(), masi.map(lambda m: severity(m, "masi", cutoffs) if pd.notna(m) else ""))
    unknown = line[(masi.isna()) & (masi_text == "") & ~given.isin(SEVERITIES)].tolist()
    if unknown:
        problems.append(
            f"unknown or missing label on {_lines(unknown)} (severity must be one of "
            f"{', '.join(SEVERITIES)}, or give masi)"
        )

    patient = raw["patient_id"].str.strip() if "patient_id" in raw else pd.Series("", index=raw.index)
    split = raw["split"].str.strip().str.lower() if "split" in raw else pd.Series("", index=raw.index)
    if (split != "").any():
        bad_split = line[~split.isin(SPLITS)].tolist()
        if bad_split:
            problems.append(f"split must be one of {', '.join(SPLITS)} on {_lines(bad_split)}")
    skin_column = next((c for c in ("skin_type", "fitzpatrick") if c in raw), None)
    skin = raw[skin_column].str.strip() if skin_column else pd.Series("", index=raw.index)
    root = csv_path.parent
    return pd.DataFrame({
        "path": [os.path.abspath(root / p) if p else "" for p in image],
        "severity": labels,
        "masi": masi.astype(float),
        "patient_id": [p if p else None for p in patient],
        "split": [s if s else None for s in split],
        "skin_type": [t if t else None for t in skin],
        "line": line,
    })


def _read_folders(root: Path, problems: list[str]) -> pd.DataFrame:
    paths, labels = [], []
    for name in SEVERITIES:
        folder = root / name
        if folder.is_dir():
            for file in sorted(folder.rglob("*")):
                if file.is_file() and file.suffix.lower() in IMAGE_EXTENSIONS:
                    paths.append(os.path.abspath(file))
                    labels.append(name)
    return pd.DataFrame({
        "path": paths, "severity": labels, "masi": math.nan,
        "patient_id": _folder_patients(root, paths, problems), "split": None, "skin_type": None, "line": None,
    })


def _folder_patients(root: Path, paths: list[str], problems: list[str]) -> list[str | None]:
    """Patient ids of class-folder images from `root/PATIENTS_CSV` (columns `file`, `patient_id`;
    `file` relative to `root`, e.g. `mild/a.jpg`, or a bare file name found once in the folders);
    None for every image when there is no such file."""
    csv_path = root / PATIENTS_CSV
    if not csv_path.is_file():
        return [None] * len(paths)
    try:
        raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DatasetError(f"{csv_path}: not a readable CSV file ({error})") from None
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    if not {"file", "patient_id"} <= set(raw.columns):
        raise DatasetError(f"{csv_path}: needs 'file' and 'patient_id' columns (columns: {', '.join(raw.columns)})")
    relative = [Path(p).relative_to(os.path.abspath(root)).as_posix() for p in paths]
    names: dict[str, list[int]] = defaultdict(list)
    for i, rel in enumerate(relative):
        names[Path(rel).name].append(i)
    where = {rel: i for i, rel in enumerate(relative)}
    ids: list[str | None] = [None] * len(paths)
    unknown, twice = [], []
    for number, (file, patient) in enumerate(zip(raw["file"].str.strip(), raw["patient_id"].str.strip()), start=2):
        index = where.get(Path(file).as_posix()) if file else None
        if index is None and file and len(names.get(file, [])) == 1:
            index = names[file][0]
        if index is None:
            unknown.append(f"{file or '(empty)'} (line {number})")
        elif ids[index] is not None and patient_key(ids[index]) != patient_key(patient):
            twice.append(f"{file} (line {number})")
        else:
            ids[index] = patient or None
    if unknown:
        problems.append(f"{PATIENTS_CSV} names files that are not in the class folders (or not once): "
                        + _listing(unknown))
    if twice:
        problems.append(f"{PATIENTS_CSV} gives one file two patient ids: " + _listing(twice))
    return ids


def _describe(row: pd.Series) -> str:
    return f"line {row['line']}" if row["line"] is not None and row["line"] == row["line"] else row["path"]


def load_dataset(
    path: str | os.PathLike, *, seed: int = 0, cutoffs: tuple[float, float] | None = None,
    allow_patient_overlap: bool = False,
) -> pd.DataFrame:
    """Read a CSV manifest or class-folder data set, check it and assign splits (see module doc)."""
    source = Path(path)
    problems: list[str] = []
    if source.is_dir():
        has_class_folders = any((source / name).is_dir() for name in SEVERITIES)
        csv_path = next((source / n for n in DEFAULT_CSV_NAMES if (source / n).is_file()), None)
        if has_class_folders or csv_path is None:
            if not has_class_folders:
                raise DatasetError(
                    f"{source}: no labels.csv and no {'/, '.join(SEVERITIES)}/ class folders"
                )
            table = _read_folders(source, problems)
        else:
            table = _read_csv(csv_path, cutoffs, problems)
    elif source.is_file():
        table = _read_csv(source, cutoffs, problems)
    else:
        raise DatasetError(f"{source}: no such file or folder")

    present = table[table["path"] != ""]
    missing = present[~present["path"].map(os.path.isfile)]
    if len(missing):
        problems.append(f"{len(missing)} image file(s) missing: {_listing(missing['path'].tolist())}")
    odd = present[~present["path"].map(lambda p: Path(p).suffix.lower() in IMAGE_EXTENSIONS)]
    if len(odd):
        problems.append(
            f"not an image file extension ({', '.join(sorted(IMAGE_EXTENSIONS))}): "
            f"{_listing(odd['path'].tolist())}"
        )

    found = present.drop(missing.index)
    hashes = {i: file_sha256(p) for i, p in found["path"].items()}
    table["sha256"] = pd.Series(hashes, dtype=object).reindex(table.index)
    by_hash: dict[str, list[str]] = defaultdict(list)
    for i, digest in hashes.items():
        by_hash[digest].append(_describe(table.loc[i]))
    duplicates = [" and ".join(rows) for rows in by_hash.values() if len(rows) > 1]
    if duplicates:
        problems.append(f"same image content listed more than once: {_listing(duplicates, sep='; ')}")

    counts = table["severity"].value_counts()
    empty = [name for name in SEVERITIES if counts.get(name, 0) == 0]
    if empty:
        problems.append(f"no images for class(es): {', '.join(empty)}")

    given = table["split"].notna()
    if given.any() and not given.all():
        problems.append(f"split is empty on {_lines(table.loc[~given, 'line'].tolist())}")
    elif given.all() and len(table):
        for name in SPLITS:
            if not (table["split"] == name).any():
                problems.append(f"the split column has no {name} images")
        overlap = patients_in_several_splits(table)
        if overlap and not allow_patient_overlap:
            problems.append(
                f"{len(overlap)} patient(s) in more than one split (their images would leak between "
                f"training and evaluation; pass --allow-patient-overlap to accept): "
                + _listing([f"{p} ({'/'.join(s)})" for p, s in overlap.items()])
            )

    if problems:
        raise DatasetError(f"{source}: {len(problems)} problem(s):\n  - " + "\n  - ".join(problems))

    table = table.drop(columns="line").reset_index(drop=True)
    table["label"] = table["severity"].map({s: i for i, s in enumerate(SEVERITIES)}).astype(int)
    table["split"] = assign_splits(table, seed=seed)
    return table[["path", "label", "severity", "masi", "patient_id", "split", "sha256", "skin_type"]]


def manifest_hash(df: pd.DataFrame) -> str:
    """sha256 over (content hash, label, split, masi) rows in a stable order; paths do not matter."""
    digests = df["sha256"] if "sha256" in df else df["path"].map(file_sha256)
    rows = sorted(
        f"{d}\t{label}\t{split}\t{'' if pd.isna(m) else round(float(m), 6)}"
        for d, label, split, m in zip(digests, df["label"], df["split"], df["masi"])
    )
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()
