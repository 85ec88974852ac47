"""`python -m melasma explain-report` end to end on a model trained on the synthetic set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from melasma.cli import main
from melasma.data.manifest import load_dataset
from melasma.explain_report import ReportError, list_images
from melasma.masi import SEVERITIES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_run(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """resnet18 trained 2 epochs at 64 px on the synthetic set by the real training engine."""
    from melasma.training import TrainConfig, train_many

    out = tmp_path_factory.mktemp("run")
    train_many(TrainConfig(data=synth_dir, archs=("resnet18",), epochs=2, batch_size=16, image_size=64,
                           pretrained="off", out=out, bootstrap=0, device="cpu"))
    return out / "resnet18"


def test_report_writes_tables_and_plots(trained_run: Path, synth_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "report"
    status = main(["explain-report", "--weights", str(trained_run), "--data", str(synth_dir),
                   "--out", str(out), "--max-images", "6", "--deletion-steps", "4"])
    assert status == 0
    printed = capsys.readouterr()
    assert "wrote per_image.csv" in printed.out
    assert "6 images: about" in printed.err  # the time estimate, before the rest run
    per_image = pd.read_csv(out / "per_image.csv")
    assert len(per_image) == 6 * 3
    assert set(per_image["method"]) == {"lrp", "gradcam", "gxi"}
    validation = set(load_dataset(synth_dir, seed=0).query("split == 'val'")["path"])
    assert set(per_image["image"]) <= validation  # the study's split, by default
    lrp = per_image[per_image["method"] == "lrp"]
    assert lrp["mean_relevance"].isna().all()  # 1 / (H * W) by construction: not reported
    assert per_image["positive_share"].between(0, 1).all()
    assert lrp["positive_share"].nunique() > 1  # unlike the LRP mean, it differs between images
    assert set(per_image["severity"]) == set(SEVERITIES)  # classes taken in turn
    assert per_image["mass_in_mask"].between(0, 1).all()  # every synthetic image has a mask
    assert per_image["mask_share"].between(0, 0.5).all()
    assert per_image["pointing_game"].isin([0.0, 1.0]).all()
    assert per_image["deletion_auc"].between(0, 1.5).all()
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 3 * 3 and (summary["n_images"] == 2).all() and (summary["n_masked"] == 2).all()
    table2 = pd.read_csv(out / "study_table2.csv", index_col=0)
    assert list(table2.index) == ["resnet18"] and set(table2.columns) == set(SEVERITIES)
    gxi = per_image[per_image["method"] == "gxi"].groupby("severity")["mean_relevance"].mean()
    assert np.allclose(table2.loc["resnet18", list(gxi.index)].to_numpy(), gxi.to_numpy())
    for name in ("mean_relevance.png", "mass_in_mask.png", "pointing_game.png", "deletion_auc.png"):
        assert (out / name).stat().st_size > 5000, name


def test_report_input_errors(trained_run: Path, synth_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["explain-report", "--weights", str(trained_run), "--data", str(synth_dir),
                 "--out", str(tmp_path), "--methods", "lrp,shap"]) == 2
    assert "methods must be among" in capsys.readouterr().err
    assert main(["explain-report", "--weights", str(tmp_path / "none"), "--data", str(synth_dir),
                 "--out", str(tmp_path)]) == 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="no images found"):
        list_images(tmp_path / "empty")



def test_report_refuses_another_manifest_unless_forced(trained_run: Path, synth_dir: Path, tmp_path: Path,
                                                       capsys) -> None:
    import shutil

    changed = tmp_path / "changed"
    shutil.copytree(synth_dir, changed)
    labels = pd.read_csv(changed / "labels.csv")
    labels.iloc[1:].to_csv(changed / "labels.csv", index=False)  # one photo fewer: another manifest
    args = ["explain-report", "--weights", str(trained_run), "--data", str(changed), "--out", str(tmp_path / "r"),
            "--max-images", "2", "--deletion-steps", "2", "--methods", "gxi"]
    assert main([*args, "--split", "val"]) != 0  # a named split of another set: not the run's split
    assert "manifest hash differs" in capsys.readouterr().err
    assert main([*args, "--split", "val", "--force", "--batch-size", "1"]) == 0
    assert len(pd.read_csv(tmp_path / "r" / "per_image.csv")) == 2


def test_report_on_another_set_reads_all_its_images_and_prints_no_nan(trained_run: Path, synth_dir: Path,
                                                                      tmp_path: Path, capsys) -> None:
    """The README's example: the demo checkpoint on the app's demo set, which it was not trained on."""
    import shutil

    changed = tmp_path / "changed"
    shutil.copytree(synth_dir, changed)
    pd.read_csv(changed / "labels.csv").iloc[1:].to_csv(changed / "labels.csv", index=False)
    assert main(["explain-report", "--weights", str(trained_run), "--data", str(changed), "--out", str(tmp_path / "r"),
                 "--max-images", "3", "--deletion-steps", "2", "--methods", "lrp,gxi"]) == 0
    out, err = capsys.readouterr()
    assert "is not the data set this checkpoint was trained on: reporting on all its images" in err
    assert "NaN" not in out and "nan" not in out
    assert "mean_relevance of lrp is not defined: the method conserves relevance" in out
