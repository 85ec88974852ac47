"""The regions of a photo read with the lesion model (default) or the colour rules, by name.

Everything that shows regions calls this module: the Predict tab, `python -m melasma regions`, the
`/regions` API, the machine rater of the Agreement dashboard and the image-derived line of the
Patients tab. `method="colour"` keeps the CIELAB rules of `melasma.regions.pigment` for comparison.
"""

from __future__ import annotations

from functools import lru_cache, partial
from typing import Literal, get_args

import numpy as np
from PIL import Image

from melasma.errors import UserError
from melasma.lesions.model import LesionModel, shipped_model_dir
from melasma.regions.find import as_rgb
from melasma.regions.lesion_measure import measure_lesions
from melasma.regions.pigment import measure_pigment
from melasma.regions.report import RegionReport
from melasma.regions.report import analyse as analyse_regions
from melasma.regions.types import FaceRegions, RegionMeasures

Method = Literal["model", "colour"]
METHODS: tuple[str, ...] = get_args(Method)


@lru_cache(maxsize=1)
def shipped_model() -> LesionModel:
    """The lesion model inside the package, loaded once per process."""
    return LesionModel.load(shipped_model_dir())


def check_method(method: str) -> Method:
    """`method` if it names a reading, else UserError listing the choices."""
    if method not in METHODS:
        raise UserError(f"lesion reading must be one of {', '.join(METHODS)}, got {method!r}")
    return method  # type: ignore[return-value]


def measure(image: Image.Image | np.ndarray, regions: FaceRegions, method: Method = "model",
            model: LesionModel | None = None) -> RegionMeasures:
    """A / D / H per visible region and the image-derived MASI, by the lesion map or by colour."""
    if check_method(method) == "colour":
        return measure_pigment(image, regions)
    lesion_model = model or shipped_model()
    rgb = as_rgb(image)
    return measure_lesions(rgb, regions, lesion_model.probability(rgb), lesion_model.meta.threshold)


def analyse(image: Image.Image | np.ndarray, method: Method = "model", *, labels: bool = True) -> RegionReport:
    """`melasma.regions.report.analyse` with the chosen reading: regions, measures and overlay."""
    return analyse_regions(image, labels=labels, measure=partial(measure, method=check_method(method)))
