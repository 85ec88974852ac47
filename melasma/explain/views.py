"""Views: relevance maps over the photo at its own aspect ratio, one method or side by side.

Maps are computed on the square model input; `resize_map` stretches them back to the photo's
W x H (the inverse of the squash applied before the model). Signed maps (LRP, gradient x input)
use a diverging colour map with symmetric limits, so white means zero relevance; Grad-CAM, which is
non-negative and min-max scaled, uses a sequential one. Figures use matplotlib's object API
(no pyplot, no global backend state), so they are safe in the app's worker threads.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from PIL import Image

from melasma.errors import UserError
from melasma.explain.methods import METHODS, TABLE

#: A figure's panels are drawn at most this many times taller than wide (or wider than tall); the
#: photo keeps its own aspect inside its panel. A 1 x 40000 strip once made a 640 x 163,930 px figure.
MAX_PANEL_ASPECT = 3.0
#: Largest figure `figure_to_array` renders, in pixels (about 48 MB of RGBA).
MAX_FIGURE_PIXELS = 12_000_000

#: Percentile of |relevance| used as the colour limit, so a few extreme pixels do not wash out the map.
CLIP_PERCENTILE = 99.5


class ViewError(UserError):
    """A map or method the views cannot draw."""


def _as_array(relevance: np.ndarray | torch.Tensor) -> np.ndarray:
    array = relevance.detach().float().cpu().numpy() if isinstance(relevance, torch.Tensor) else relevance
    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 2:
        raise ViewError(f"expected an (H, W) relevance map, got shape {array.shape}")
    return np.nan_to_num(array)


def resize_map(relevance: np.ndarray | torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """An (H, W) map resized (bilinear) to `size` = (width, height), e.g. a PIL image's `.size`."""
    array = _as_array(relevance)
    width, height = size
    if array.shape == (height, width):
        return array
    tensor = torch.from_numpy(array)[None, None]
    return F.interpolate(tensor, size=(height, width), mode="bilinear", align_corners=False)[0, 0].numpy()


def _check_method(method: str) -> None:
    if method not in TABLE:
        raise ViewError(f"method must be one of {', '.join(METHODS)}, got {method!r}")


def color_norm(relevance: np.ndarray, method: str) -> Normalize:
    """Symmetric limits around zero for signed methods, [0, max] for Grad-CAM."""
    limit = float(np.percentile(np.abs(relevance), CLIP_PERCENTILE)) or 1e-12
    if TABLE[method].signed:
        return TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)
    return Normalize(vmin=0.0, vmax=max(float(relevance.max()), 1e-12))


def heatmap_rgba(relevance: np.ndarray, method: str) -> np.ndarray:
    """(H, W, 4) float RGBA colours; alpha grows with |relevance| so near-zero shows the photo."""
    _check_method(method)
    norm = color_norm(relevance, method)
    rgba = colormaps[TABLE[method].cmap](norm(relevance))
    if TABLE[method].signed:
        strength = np.clip(np.abs(relevance) / norm.vmax, 0.0, 1.0)
    else:
        strength = np.clip(norm(relevance), 0.0, 1.0)
    rgba[..., 3] = np.sqrt(strength)
    return rgba


def overlay(
    photo: Image.Image, relevance: np.ndarray | torch.Tensor, method: str = "lrp", alpha: float = 0.65
) -> Image.Image:
    """The photo with the map (any size; resized to the photo) blended over it, as an RGB image."""
    base = np.asarray(photo.convert("RGB"), dtype=np.float32) / 255.0
    rgba = heatmap_rgba(resize_map(relevance, photo.size), method)
    weight = alpha * rgba[..., 3:4]
    blended = base * (1.0 - weight) + rgba[..., :3] * weight
    return Image.fromarray(np.round(blended * 255.0).astype(np.uint8), mode="RGB")


def side_by_side(
    photo: Image.Image, maps: Mapping[str, np.ndarray | torch.Tensor], title: str | None = None
) -> Figure:
    """The photo, then each method's overlay with a colour bar legend, at the photo's aspect ratio."""
    for method in maps:
        _check_method(method)
    aspect = min(max(photo.height / max(photo.width, 1), 1 / MAX_PANEL_ASPECT), MAX_PANEL_ASPECT)
    panels = 1 + len(maps)
    figure = Figure(figsize=(3.2 * panels, 3.2 * aspect + 0.9), layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False)[0]
    axes[0].imshow(photo)
    axes[0].set_title("photo")
    for axis, (method, relevance) in zip(axes[1:], maps.items()):
        resized = resize_map(relevance, photo.size)
        axis.imshow(overlay(photo, resized, method))
        axis.set_title(TABLE[method].title)
        mappable = ScalarMappable(norm=color_norm(resized, method), cmap=TABLE[method].cmap)
        label = "relevance (red +, blue -)" if TABLE[method].signed else "activation (scaled 0-1)"
        figure.colorbar(mappable, ax=axis, orientation="horizontal", fraction=0.05, pad=0.02, label=label)
    for axis in axes:
        axis.set_axis_off()
    if title:
        figure.suptitle(title)
    return figure


def figure_to_array(figure: Figure, dpi: int = 100) -> np.ndarray:
    """A matplotlib figure rendered to an (H, W, 3) uint8 RGB array; ViewError (before drawing) for
    one over MAX_FIGURE_PIXELS."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    width, height = figure.get_size_inches() * dpi
    if width * height > MAX_FIGURE_PIXELS:
        raise ViewError(f"figure of {width:.0f} x {height:.0f} px is larger than the "
                        f"{MAX_FIGURE_PIXELS:,} pixel limit of a rendered figure")
    canvas = FigureCanvasAgg(figure)
    figure.set_dpi(dpi)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def colour_scale_html(relevance: np.ndarray | torch.Tensor, method: str, stops: int = 9) -> str:
    """An HTML colour bar for a heatmap: the overlay's colour map as a gradient between its limits."""
    _check_method(method)
    array = _as_array(relevance)
    norm = color_norm(array, method)
    cmap = colormaps[TABLE[method].cmap]
    colours = ", ".join(
        "#{:02x}{:02x}{:02x}".format(*(round(255 * c) for c in cmap(i / (stops - 1))[:3])) for i in range(stops)
    )
    middle = "0" if TABLE[method].signed else f"{((norm.vmin or 0.0) + (norm.vmax or 0.0)) / 2:.3g}"
    meaning = "red supports the class, blue speaks against it" if TABLE[method].signed else "scaled 0-1 per photo"
    return (
        f'<div class="colour-scale" title="{TABLE[method].title}: {meaning}">'
        f'<div style="height:10px;border-radius:3px;background:linear-gradient(to right, {colours})"></div>'
        f'<div style="display:flex;justify-content:space-between;font-size:11px">'
        f"<span>{norm.vmin:.3g}</span><span>{middle}</span><span>{norm.vmax:.3g}</span></div>"
        f'<div style="font-size:11px;opacity:.75">{meaning}</div></div>'
    )
