"""Where the melasma is: a lesion model on ImageNet features, trained on hand-drawn lesion outlines.

`LesionModel.probability(photo)` maps lesion probability over a photo; `analyse(photo)` reads the
four MASI regions with it (A from the lesion share, D from the lesion skin's darkness against the
person's own normal skin, H from how confluent it is). `python -m melasma lesions train` reproduces
the shipped model (`melasma/weights/lesions`, its model card says on what data and how well).
"""

from melasma.lesions.model import LesionMeta, LesionModel, LesionModelError, shipped_model_dir
from melasma.lesions.reading import METHODS, Method, analyse, check_method, measure, shipped_model

__all__ = [
    "METHODS", "LesionMeta", "LesionModel", "LesionModelError", "Method", "analyse", "check_method", "measure",
    "shipped_model", "shipped_model_dir",
]
