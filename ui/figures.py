"""Figures for the pages: overlays, grids, bar charts, and their PNG downloads.

Maps arrive at layer resolution from the package; ``overlay`` brings them to the picture here.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import matplotlib

matplotlib.use("Agg")  # figures are drawn off-screen, in the server's threads
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
# Plotly checks its values against pandas by looking pandas up in sys.modules, without importing it: while
# one student's first page is still importing pandas, another's chart met it half-initialized and failed
# ("partially initialized module 'pandas'", seen with 12 students arriving at once). Imported whole here,
# before any page can draw a chart.
import pandas  # noqa: E402, F401
import plotly.graph_objects as go  # noqa: E402
import streamlit as st  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

import gradcam_core as gc  # noqa: E402

COMPACT = dict(margin=dict(l=0, r=0, t=30, b=0))
TILE_SIDE = 224


def png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def download(make_rgb: Callable[[], np.ndarray], filename: str, label: str = "Download PNG") -> None:
    """A PNG download, drawn only when the button is pressed (the page does not rerun)."""
    st.download_button(label, lambda: png(make_rgb()), file_name=filename, mime="image/png",
                       key=f"download:{filename}", on_click="ignore", icon=":material/download:")


def top_classes(categories: Sequence[str], probabilities: torch.Tensor, top: Sequence[int],
                title: str = "Top-5 predictions") -> go.Figure:
    """The model's top classes as horizontal bars, best on top."""
    values = [float(probabilities[c]) for c in top][::-1]
    names = [categories[c] for c in top][::-1]
    figure = go.Figure(go.Bar(
        x=values, y=names, orientation="h", text=[f"{v:.1%}" for v in values], textposition="auto",
        hovertemplate="%{y}: %{x:.2%}<extra></extra>", marker_color="#4c78a8",
    ))
    figure.update_layout(height=190, xaxis=dict(range=[0, 1], tickformat=".0%", visible=False),
                         title=title, **COMPACT)
    return figure


def picture(rgb: np.ndarray, title: str = "", height: int = 420) -> go.Figure:
    """A zoomable RGB picture."""
    figure = go.Figure(go.Image(z=rgb, hovertemplate="x=%{x}, y=%{y}<extra></extra>"))
    figure.update_layout(title=title, height=height, **COMPACT)
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    return figure


def heatmap(m: torch.Tensor | np.ndarray, title: str, cmap: str, height: int = 420, label: str = "value",
            value_range: tuple[float, float] | None = None) -> go.Figure:
    """One map cell by cell, with its values on hover (zoom to read single activations).

    ``value_range`` fixes the colour scale (a difference map centred on zero, say); by default it
    spans the map's values. Show it with ``width="content"``: the figure is as wide as it is high.
    """
    values = np.asarray(torch.as_tensor(m).detach().cpu())
    low, high = value_range or (None, None)
    figure = go.Figure(go.Heatmap(
        z=values, colorscale=_plotly_scale(cmap), zmin=low, zmax=high,
        colorbar=dict(tickformat=".3~g", thickness=14),
        hovertemplate=f"row %{{y}}, col %{{x}}: {label} %{{z:.4g}}<extra></extra>",
    ))
    figure.update_layout(title=title, height=height, width=height + 40, **COMPACT)
    figure.update_yaxes(autorange="reversed", scaleanchor="x", visible=False)
    figure.update_xaxes(visible=False)
    return figure


def bars(values: Sequence[float], labels: Sequence[str], title: str, height: int = 300,
         axis: str = "weight") -> go.Figure:
    colours = ["#d62728" if v < 0 else "#2ca02c" for v in values]
    figure = go.Figure(go.Bar(x=list(labels), y=list(values), marker_color=colours,
                              hovertemplate="%{x}: %{y:.4g}<extra></extra>"))
    figure.update_layout(title=title, height=height, yaxis_title=axis, xaxis_type="category", **COMPACT)
    return figure


def line_chart(series: dict[str, Sequence[float]], title: str, x_title: str, height: int = 300) -> go.Figure:
    figure = go.Figure([go.Scatter(y=list(v), x=list(range(1, len(v) + 1)), name=name, mode="lines+markers")
                        for name, v in series.items()])
    figure.update_layout(title=title, height=height, xaxis_title=x_title, yaxis=dict(range=[0, 1.02], tickformat=".0%"),
                         **COMPACT)
    return figure


def grid_png(pictures: Sequence[tuple[str, np.ndarray]], columns: int) -> np.ndarray:
    """Titled pictures in a grid, as one RGB array (for a single download)."""
    rows = -(-len(pictures) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, rgb) in zip(axes.flat, pictures):
        ax.imshow(rgb)
        ax.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.canvas.draw()
    rgb = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
    plt.close(figure)
    return rgb


#: JPEG quality of the pictures sent to the browser. At 90, with colour kept at full resolution (4:4:4), a
#: photo or a map overlay looks the same to a student and takes about 40% of the bytes of the quality-100
#: JPEG that Streamlit makes of an array.
JPEG_QUALITY = 90


#: Pictures up to this many pixels (a tag, a tiny map) go as PNG: a few hundred bytes either way, and
#: the browser enlarges them, JPEG's ringing with them.
SMALL_PICTURE = 128 * 128


def compact(picture: np.ndarray | Image.Image) -> bytes:
    """An RGB or grey picture (uint8, or float in [0, 1]) as the bytes ``st.image`` sends unchanged: JPEG at
    :data:`JPEG_QUALITY`, or PNG for a small picture."""
    if isinstance(picture, np.ndarray) and picture.dtype != np.uint8:
        picture = (np.clip(picture, 0.0, 1.0) * 255).round().astype(np.uint8)
    image = picture if isinstance(picture, Image.Image) else Image.fromarray(picture)
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    out = io.BytesIO()
    if image.width * image.height <= SMALL_PICTURE:
        image.save(out, format="PNG")
    else:
        image.save(out, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return out.getvalue()


def show_grid(pictures: Sequence[tuple[str, np.ndarray]], columns: int, filename: str) -> None:
    """Pictures side by side, with one download of the whole grid."""
    for start in range(0, len(pictures), columns):
        for column, (title, rgb) in zip(st.columns(columns), pictures[start:start + columns]):
            column.image(compact(rgb), caption=title, width="stretch")
    download(lambda: grid_png(pictures, columns), filename, "Download these pictures (PNG)")


def colorize(m: torch.Tensor, cmap: str, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """A map alone, coloured cell by cell and enlarged with crisp cells (a browser would blur them).

    ``value_range`` puts several maps on one colour scale; by default each spans its own values.
    """
    m = torch.as_tensor(m).detach().float().cpu()
    if value_range is None:
        scaled = gc.normalize(m)
    else:
        low, high = value_range
        scaled = ((m - low) / max(high - low, 1e-12)).clamp(0, 1)
    colours = (matplotlib.colormaps[cmap](scaled.numpy())[..., :3] * 255).round().astype(np.uint8)
    factor = max(1, -(-TILE_SIDE // max(colours.shape[:2])))
    return colours.repeat(factor, axis=0).repeat(factor, axis=1)


def with_boxes(rgb: np.ndarray, boxes: Sequence[tuple[tuple[float, float, float, float], str]], scale: float) -> np.ndarray:
    """Draw ``(box, colour)`` outlines, boxes as (x0, y0, x1, y1) in model pixels, ends exclusive,
    scaled by ``scale``; an empty box draws nothing."""
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    for (x0, y0, x1, y1), colour in boxes:
        if x1 <= x0 or y1 <= y0:
            continue
        draw.rectangle([x0 * scale, y0 * scale, x1 * scale - 1, y1 * scale - 1], outline=colour, width=3)
    return np.asarray(image)


def _plotly_scale(cmap: str) -> list[list]:
    colours = matplotlib.colormaps[cmap](np.linspace(0, 1, 11))
    return [[i / 10, matplotlib.colors.to_hex(c)] for i, c in enumerate(colours)]


def signed(name: str, m: torch.Tensor) -> bool:
    """Whether method ``name``'s map ``m`` is shown with its sign: a pixel-space map with values
    against the class (LIME's and Kernel SHAP's weights, occlusion's rises of the score)."""
    return not gc.METHODS[name].layered and m.dim() == 2 and bool((m < 0).any())


#: What the colours of a signed map mean, for its caption.
SIGNED_CAPTION = "red: for the class, blue: against it"


def method_picture(name: str, m: torch.Tensor, base: np.ndarray, cmap: str, alpha: float) -> np.ndarray:
    """One picture's result of method ``name`` at ``base``'s size: a ``(h, w)`` map (and the pixel-space
    perturbation methods' ``(H, W)``) as a heat overlay, in red and blue where it has both signs
    (:func:`signed`); a ``(3, H, W)`` attribution as its strength at each pixel, or on grey where the
    registry says it is a picture (guided backprop's edges)."""
    if signed(name, m):
        return gc.signed_overlay(base, m, alpha)
    if m.dim() == 2:
        return gc.overlay(base, m.clamp(min=0), cmap, alpha)
    rgb = gc.to_image(m) if gc.METHODS[name].picture else gc.maps.heat_image(gc.Saliency.strength(m))
    return np.asarray(Image.fromarray(rgb).resize((base.shape[1], base.shape[0]), Image.BILINEAR))
