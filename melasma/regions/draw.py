"""Region outlines over a photo, for the tabs and the CLI's overlay PNGs."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from melasma.regions.find import as_rgb
from melasma.regions.types import FaceRegions

#: one colour per region (colour-blind safe, Okabe-Ito); hidden regions are drawn dashed in grey
COLOURS: dict[str, tuple[int, int, int]] = {
    "forehead": (230, 159, 0),
    "right_malar": (86, 180, 233),
    "left_malar": (0, 158, 115),
    "chin": (204, 121, 167),
}
HIDDEN = (160, 160, 160)
LABELS = {"forehead": "forehead", "right_malar": "R malar", "left_malar": "L malar", "chin": "chin"}


def _dashed(draw: ImageDraw.ImageDraw, points: list[tuple[float, float]], colour: tuple, width: int) -> None:
    for index, (start, end) in enumerate(zip(points, points[1:] + points[:1])):
        if index % 2 == 0:
            draw.line([start, end], fill=colour, width=width)


def draw_regions(
    image: Image.Image | np.ndarray, regions: FaceRegions, *, labels: bool = True, pigment: np.ndarray | None = None
) -> Image.Image:
    """The photo with each region's outline (dashed grey when not visible) and, optionally, its
    label and a translucent tint over `pigment` (a bool mask at image resolution)."""
    photo = Image.fromarray(as_rgb(image))
    if pigment is not None and pigment.any():
        tint = Image.new("RGB", photo.size, (255, 40, 40))
        photo = Image.composite(Image.blend(photo, tint, 0.45), photo, Image.fromarray(pigment.astype(np.uint8) * 255))
    draw = ImageDraw.Draw(photo)
    width = max(2, round(max(photo.size) / 300))
    for name, region in regions.regions.items():
        points = [(float(x), float(y)) for x, y in region.polygon]
        if region.visible:
            draw.polygon(points, outline=COLOURS[name], width=width)
        else:
            _dashed(draw, points, HIDDEN, width)
        if labels:
            x, y = region.polygon.mean(axis=0)
            text = LABELS[name] if region.visible else f"{LABELS[name]} (hidden)"
            draw.text((float(x), float(y)), text, fill=COLOURS[name] if region.visible else HIDDEN, anchor="mm",
                      stroke_width=2, stroke_fill=(0, 0, 0), font_size=max(10, round(max(photo.size) / 40)))
    return photo
