"""Dataset manifests (CSV and class folders), their error report, and the 6:3:1 splits."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from melasma.data.manifest import DatasetError, load_dataset, manifest_hash
from melasma.data.splits import assign_splits, patient_id_warning, patient_key
from melasma.masi import SEVERITIES


def _write_images(folder: Path, names: list[str], shade: int = 0) -> None:
    """Distinct tiny PNGs (distinct content: duplicates are an error)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.new("RGB", (8, 8), (i, shade, 99)).save(folder / name)


def test_synthetic_csv_loads_with_contract_columns(synth_dir: Path) -> None:
    df = load_dataset(synth_dir / "labels.csv")
    assert list(df.columns[:6]) == ["path", "label", "severity", "masi", "patient_id", "split"]
    assert len(df) == 60 and all(Path(p).is_absolute() and Path(p).is_file() for p in df["path"])
    assert (df["label"] == df["severity"].map(SEVERITIES.index)).all()
    labels = pd.read_csv(synth_dir / "labels.csv")
    assert np.allclose(df["masi"], labels["masi"])
    assert set(df["split"]) == {"train", "val", "test"}
    # the folder itself resolves to its labels.csv
    assert manifest_hash(load_dataset(synth_dir)) == manifest_hash(df)


def test_cutoffs_change_the_bins(synth_dir: Path) -> None:
    df = load_dataset(synth_dir / "labels.csv", cutoffs=(10.0, 40.0))
    expected = np.where(df["masi"] < 10, "mild", np.where(df["masi"] < 40, "moderate", "severe"))
    assert (df["severity"] == expected).all()


def test_class_folders(tmp_path: Path) -> None:
    for k, name in enumerate(SEVERITIES):
        _write_images(tmp_path / name, [f"{name}{i}.png" for i in range(4 + k)], shade=k)
    (tmp_path / "mild" / "readme.txt").write_text("not an image")
    df = load_dataset(tmp_path)
    assert df["severity"].value_counts().to_dict() == {"severe": 6, "moderate": 5, "mild": 4}
    assert df["masi"].isna().all() and df["patient_id"].isna().all()
    assert set(df["split"]) == {"train", "val", "test"}


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    _write_images(tmp_path, ["a.jpg", "b.jpg"])
    shutil.copy(tmp_path / "a.jpg", tmp_path / "a_copy.jpg")
    (tmp_path / "data.csv").write_text(
        "image,masi,severity,split\n"
        "a.jpg,3,,train\n"  # line 2
        "a_copy.jpg,5,,val\n"  # line 3: same content as line 2
        "b.jpg,49,,val\n"  # line 4: masi out of range
        "gone.jpg,20,,test\n"  # line 5: missing file
        "b.jpg,,awful,sometimes\n"  # line 6: unknown label, bad split (and b.jpg twice)
    )
    with pytest.raises(DatasetError) as info:
        load_dataset(tmp_path / "data.csv")
    message = str(info.value)
    assert "masi must be a number 0-48 on line 4" in message
    assert "unknown or missing label on line 6" in message
    assert "split must be one of train, val, test on line 6" in message
    assert "1 image file(s) missing: " in message and "gone.jpg" in message
    assert "line 2 and line 3" in message and "line 4 and line 6" in message
    assert "no images for class(es): severe" in message


def test_missing_columns_and_empty_class_folder(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("file,masi\na.jpg,3\n")
    with pytest.raises(DatasetError, match="no 'image' column"):
        load_dataset(tmp_path / "x.csv")
    (tmp_path / "y.csv").write_text("image,score\na.jpg,3\n")
    with pytest.raises(DatasetError, match="needs a 'masi' or a 'severity' column"):
        load_dataset(tmp_path / "y.csv")
    _write_images(tmp_path / "mild", ["m.png"])
    (tmp_path / "severe").mkdir()
    with pytest.raises(DatasetError, match="no images for class\\(es\\): moderate, severe"):
        load_dataset(tmp_path)


def test_given_split_column_wins(tmp_path: Path) -> None:
    names = [f"i{i}.png" for i in range(6)]
    _write_images(tmp_path, names)
    splits = ["test", "test", "val", "train", "train", "val"]
    severities = ["mild", "moderate", "severe"] * 2
    pd.DataFrame({"image": names, "severity": severities, "split": splits}).to_csv(
        tmp_path / "m.csv", index=False
    )
    assert load_dataset(tmp_path / "m.csv")["split"].tolist() == splits


def _table(n_patients: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        for _ in range(int(rng.integers(1, 4))):
            rows.append({"patient_id": f"P{p}", "severity": SEVERITIES[int(rng.integers(0, 3))]})
    return pd.DataFrame(rows)


def test_splits_grouped_stratified_deterministic() -> None:
    df = _table(300)
    first, again, other = assign_splits(df, seed=1), assign_splits(df, seed=1), assign_splits(df, seed=2)
    assert first.equals(again) and not first.equals(other)
    assert (df.assign(split=first).groupby("patient_id")["split"].nunique() == 1).all()
    shares = first.value_counts(normalize=True)
    for name, ratio in zip(("train", "val", "test"), (0.6, 0.3, 0.1)):
        assert abs(shares[name] - ratio) < 0.03
    per_class = pd.crosstab(df["severity"], first, normalize="index")
    assert (abs(per_class["train"] - 0.6) < 0.06).all() and (abs(per_class["test"] - 0.1) < 0.05).all()


def test_too_few_images_for_three_splits() -> None:
    df = pd.DataFrame({"severity": ["mild", "moderate", "severe"] * 3})
    with pytest.raises(DatasetError, match="need at least 10, got 9"):
        assign_splits(df, seed=0)
    small = pd.DataFrame({"severity": ["mild", "moderate", "severe"] * 4})
    split = assign_splits(small, seed=0)
    assert set(split) == {"train", "val", "test"}
    assert set(small.loc[split == "train", "severity"]) == set(SEVERITIES)


def test_manifest_hash_tracks_content_labels_and_splits(synth_dir: Path, tmp_path: Path) -> None:
    df = load_dataset(synth_dir / "labels.csv")
    moved = tmp_path / "moved"
    shutil.copytree(synth_dir, moved)
    assert manifest_hash(load_dataset(moved / "labels.csv")) == manifest_hash(df)
    assert manifest_hash(df.drop(columns="sha256")) == manifest_hash(df)
    relabelled = df.copy()
    relabelled.loc[0, "label"] = (relabelled.loc[0, "label"] + 1) % 3
    assert manifest_hash(relabelled) != manifest_hash(df)
    assert manifest_hash(load_dataset(synth_dir / "labels.csv", seed=5)) != manifest_hash(df)


def test_a_patient_in_two_given_splits_is_refused_unless_allowed(tmp_path: Path) -> None:
    names = [f"i{i}.png" for i in range(6)]
    _write_images(tmp_path, names)
    pd.DataFrame({"image": names, "severity": ["mild", "moderate", "severe"] * 2,
                  "patient_id": ["A", "A", "B", "C", "D", "D"],
                  "split": ["train", "test", "val", "train", "val", "val"]}).to_csv(tmp_path / "m.csv", index=False)
    refused = r"1 patient\(s\) in more than one split .*allow-patient-overlap.*: A \(test/train\)"
    with pytest.raises(DatasetError, match=refused):
        load_dataset(tmp_path / "m.csv")
    table = load_dataset(tmp_path / "m.csv", allow_patient_overlap=True)
    assert table["split"].tolist() == ["train", "test", "val", "train", "val", "val"]


def test_automatic_split_does_not_depend_on_row_order(synth_dir: Path, tmp_path: Path) -> None:
    rows = pd.read_csv(synth_dir / "labels.csv")
    rows["image"] = [str(synth_dir / name) for name in rows["image"]]
    for with_patients in (True, False):
        table = rows if with_patients else rows.drop(columns="patient_id")
        table.to_csv(tmp_path / "ordered.csv", index=False)
        table.sample(frac=1, random_state=3).to_csv(tmp_path / "shuffled.csv", index=False)
        ordered, shuffled = (load_dataset(tmp_path / f"{name}.csv").set_index("path")["split"]
                             for name in ("ordered", "shuffled"))
        assert shuffled.reindex(ordered.index).equals(ordered), with_patients


def test_skin_type_comes_from_the_manifest_or_the_synthetic_fitzpatrick_column(synth_dir: Path, tmp_path: Path) -> None:
    table = load_dataset(synth_dir / "labels.csv")
    assert table["skin_type"].tolist() == pd.read_csv(synth_dir / "labels.csv", dtype=str)["fitzpatrick"].tolist()
    names = [f"i{i}.png" for i in range(10)]
    _write_images(tmp_path, names)
    pd.DataFrame({"image": names, "severity": ["mild", "moderate", "severe", "mild", "mild"] * 2,
                  "skin_type": ["I-II", "V-VI"] * 5}).to_csv(tmp_path / "m.csv", index=False)
    assert load_dataset(tmp_path / "m.csv")["skin_type"].tolist() == ["I-II", "V-VI"] * 5


def test_skin_groups_fall_back_to_ita_from_the_image() -> None:
    from melasma.data.skin_tone import ita_group, skin_groups

    assert [ita_group(a) for a in (60, 50, 30, 20, 0, -40)] == [
        "ITA very light", "ITA light", "ITA intermediate", "ITA tan", "ITA brown", "ITA dark"]
    images = np.stack([np.full((32, 32, 3), colour, np.uint8) for colour in ((240, 210, 190), (90, 60, 45))])
    assert skin_groups(["II", None], images) == ["ITA very light", "ITA dark"]
    assert skin_groups(["II", "V"], images) == ["II", "V"]


def test_patient_ids_compare_case_and_space_insensitively(tmp_path: Path) -> None:
    assert patient_key("P005") == patient_key(" p005 ") == patient_key("p 005") == "p005"
    assert patient_key("  ") is None and patient_key(None) is None
    names = [f"i{i}.png" for i in range(6)]
    _write_images(tmp_path, names)
    pd.DataFrame({"image": names, "severity": ["mild", "moderate", "severe"] * 2,
                  "patient_id": ["P005", " p005 ", "B", "C", "D", "E"],
                  "split": ["train", "test", "val", "train", "val", "test"]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DatasetError, match=r"1 patient\(s\) in more than one split .*: P005 \(test/train\)"):
        load_dataset(tmp_path / "m.csv")
    df = _table(60)
    df.loc[::2, "patient_id"] = df.loc[::2, "patient_id"].str.lower() + " "  # "P3" and "p3 " are one patient
    split = assign_splits(df, seed=0)
    assert (df.assign(split=split, key=df["patient_id"].map(patient_key)).groupby("key")["split"].nunique() == 1).all()


def test_class_folders_take_patient_ids_from_patients_csv(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for k, name in enumerate(SEVERITIES):
        files = [f"{name}{i}.png" for i in range(12)]
        _write_images(tmp_path / name, files, shade=k)
        rows += [(f"{name}/{f}" if i % 2 else f, f"P{int(rng.integers(0, 12)) + 12 * k}") for i, f in enumerate(files)]
    without = load_dataset(tmp_path)
    assert without["patient_id"].isna().all()
    assert patient_id_warning(without).startswith("no image has a patient id: each such image is its own unit")
    from melasma.ui.train_view import data_summary

    assert "**Warning: No image has a patient id: each such image" in data_summary(tmp_path)  # the Train tab
    pd.DataFrame(rows, columns=["file", "patient_id"]).to_csv(tmp_path / "patients.csv", index=False)
    table = load_dataset(tmp_path)
    assert table["patient_id"].notna().all() and patient_id_warning(table) is None
    assert (table.groupby("patient_id")["split"].nunique() == 1).all()  # each patient in one split
    assert table.groupby("patient_id").size().max() > 1
    pd.DataFrame(rows[:-1], columns=["file", "patient_id"]).to_csv(tmp_path / "patients.csv", index=False)
    assert patient_id_warning(load_dataset(tmp_path)).startswith("1 of 36 images have no patient id")
    (tmp_path / "patients.csv").write_text("file,patient_id\nmild/nope.png,P1\nmild0.png,P1\nmild/mild0.png,P2\n")
    with pytest.raises(DatasetError, match="(?s)not in the class folders .*mild/nope.png \\(line 2\\).*two patient ids: "
                                           "mild/mild0.png \\(line 4\\)"):
        load_dataset(tmp_path)
