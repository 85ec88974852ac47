"""The explanation methods, described once: names, labels, colour maps and what their maps mean.

Every part that lists, labels or draws methods (the Explainer, the per-call path, the report, the
views, the Predict tab, the CLI) reads this table, so a method is added or renamed here only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    """One explanation method.

    `name` is the key used everywhere (CLI, API, CSV); `label` names it in the app, `short` in table
    headers, `title` above a figure. `signed` maps are relevance with both signs (a diverging colour
    map centred on 0); unsigned ones are scaled to [0, 1]. `conserved`: the map sums to the
    explained logit's start value for every image, so its per-image mean carries no information.
    """

    name: str
    label: str
    short: str
    title: str
    cmap: str
    signed: bool
    conserved: bool
    summary: str


TABLE: dict[str, Method] = {
    method.name: method for method in (
        Method("lrp", "LRP (signed relevance)", "LRP", "LRP (signed)", "bwr", signed=True, conserved=True,
               summary="layer-wise relevance propagation (zennit EpsilonPlusFlat with our canonizers)"),
        Method("gradcam", "Grad-CAM", "Grad-CAM", "Grad-CAM", "inferno", signed=False, conserved=False,
               summary="class activation map of the last convolutional block (pytorch-grad-cam)"),
        Method("gxi", "Gradient x input", "Gradient x input", "gradient x input", "bwr", signed=True,
               conserved=False, summary="gradient of the class logit times the input: the study's 'LRP'"),
    )
}

#: Method names, in the order they are computed and shown.
METHODS: tuple[str, ...] = tuple(TABLE)


def method_list(text: str) -> list[str]:
    """A comma-separated list of method names (spaces ignored), e.g. "lrp, gxi"."""
    return [name.strip() for name in text.split(",") if name.strip()]
