"""A trained model's relevance lands on the lesions, not on the face around them.

The shipped demo weights (GoogLeNet, trained on synthetic data with seed 1) explain fresh synthetic
photos (seed 11) whose lesion masks are known. Relevance mass inside the masks is compared with
the masks' share of the image (what a map spread evenly would score) and with the same maps scored
against another photo's mask (what a map that ignores the lesions would score).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from melasma.data.masks import mask_for_image
from melasma.data.synthetic import generate
from melasma.explain import explain
from melasma.explain.faithfulness import relevance_mass_accuracy, resize_mask
from melasma.explain_report import load_models

pytestmark = pytest.mark.slow

DEMO = Path(__file__).resolve().parents[1] / "melasma" / "weights" / "demo"
#: Measured on the 2-core CPU with the demo checkpoint (EfficientNet-Lite0, 224 px, trained on real
#: photos): gradient x input 2.63x, LRP (EpsilonPlusFlat) 2.08x the mask share.
FLOOR = {"gxi": 2.3, "lrp": 1.8}


@pytest.fixture(scope="module")
def maps(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("lesions")
    labels = pd.read_csv(generate(out, n=24, seed=11, size=128))
    (loaded,) = load_models([DEMO])
    rows = []
    for _, row in labels.iterrows():
        path = out / row["image"]
        x = loaded.tensor(str(path))
        mask = resize_mask(mask_for_image(path), (loaded.size, loaded.size))
        for method in FLOOR:
            relevance = explain(
                loaded.model, x, method, mean=loaded.mean.flatten().tolist(), std=loaded.std.flatten().tolist()
            ).numpy()
            rows.append({"image": row["image"], "method": method, "relevance": relevance, "mask": mask})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("method", list(FLOOR))
def test_relevance_concentrates_inside_the_lesion_masks(maps: pd.DataFrame, method: str) -> None:
    own = maps[maps.method == method].reset_index(drop=True)
    inside = sum(relevance_mass_accuracy(r, m) for r, m in zip(own.relevance, own["mask"]))
    share = sum(float(m.mean()) for m in own["mask"])
    assert inside / share >= FLOOR[method], f"{method}: {inside / share:.2f}x the mask share"

    # Each map scored against its neighbour's mask. Lesions sit on the same cheeks and forehead in
    # every face, so this scores well above the mask share too: measured 0.84x (gxi) and 0.88x (LRP)
    # the own-mask score with this demo (0.65x with the cartoon-trained GoogLeNet before it). The own
    # mask must still win: the map follows this photo's lesions, if only a little.
    other_masks = np.roll(np.arange(len(own)), 1)
    elsewhere = sum(relevance_mass_accuracy(own.relevance[i], own["mask"][j]) for i, j in enumerate(other_masks))
    elsewhere_share = sum(float(own["mask"][j].mean()) for j in other_masks)
    assert elsewhere / elsewhere_share < 0.95 * inside / share, method

