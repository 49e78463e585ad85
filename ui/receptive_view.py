"""Click a cell of a map, see what it sees: its theoretical and its effective receptive field."""

from __future__ import annotations

import numpy as np
import streamlit as st
import torch
from PIL import Image, ImageDraw
from streamlit_image_coordinates import streamlit_image_coordinates

import gradcam_core as gc

from . import figures, resources, widgets

FIELD_COLOUR = "#ffd600"
CLICK_SIDE = 448


def receptive_field_ui(selection: widgets.Selection, layer: str, m: torch.Tensor, key: str) -> None:
    """The map over the picture, clickable; the clicked cell's theoretical field (box) and effective field
    (the input gradient of that cell) side by side, with what they measure."""
    clf = selection.clf
    try:
        rf = resources.receptive_fields(selection.model_key, (layer,), clf)[layer]
    except ValueError as error:  # a network of one's own may mix cells (channel shuffle, squeeze-and-excitation)
        st.info(f"No receptive field for {layer}: {error}")
        if selection.family == "CNN":
            return
        rf = None  # a transformer's tokens: no box, but the gradient of one token still says what it uses
    shown = np.asarray(Image.fromarray(gc.overlay(selection.rgb, m, selection.cmap, selection.alpha))
                       .resize(_display_size(selection.rgb), Image.BILINEAR))
    left, right = st.columns(2)
    cells = tuple(m.shape[-2:]) if rf is None else rf.layer_size
    with left:
        st.caption(f"Click a cell of the {layer} map ({cells[0]}x{cells[1]} cells).")
        click = streamlit_image_coordinates(shown, key=f"{key}:{selection.picture.image_id}:{layer}")
    height, width = clf.input_size
    if click:
        y = click["y"] / click["height"] * height
        x = click["x"] / click["width"] * width
        cell = (min(int(y * cells[0] / height), cells[0] - 1), min(int(x * cells[1] / width), cells[1] - 1)) \
            if rf is None else rf.cell_at(y, x)
    else:
        cell = (cells[0] // 2, cells[1] // 2)
    effective = resources.effective_field(selection.model_key, selection.picture.image_id, layer, cell, clf,
                                          selection.x)
    if rf is None:
        with right:
            st.caption(f"Token {cell}{'' if click else ' (the centre; click to choose)'}: the colours are the pixels "
                       "it actually uses.")
            st.image(figures.compact(_field_picture(selection, None, cell, effective)), width="stretch")
        return
    with right:
        st.caption(f"Cell {cell}{'' if click else ' (the centre; click to choose)'}: the yellow box is what it can "
                   "see, the colours what it actually uses.")
        st.image(figures.compact(_field_picture(selection, rf, cell, effective)), width="stretch")
    x0, y0, x1, y1 = rf.region(*cell)
    used = _share_inside(effective, rf.region(*cell))
    st.markdown(
        f"A {layer} cell sits {rf.jump} input pixels from its neighbour and can see **{rf.size}x{rf.size}** pixels "
        f"({x1 - x0}x{y1 - y0} inside this {width}x{height} picture): each layer's kernel widens the field by its "
        f"size times the stride accumulated so far, so early cells see a small patch and late cells nearly the whole "
        f"picture. Yet the gradient (Luo et al. 2016) is concentrated: the central pixels reach the cell along many "
        f"more paths than the edge ones, and the strongest half of its pull lies within "
        f"**{used:.0%}** of the box's area."
    )


def _display_size(rgb: np.ndarray) -> tuple[int, int]:
    height, width = rgb.shape[:2]
    scale = CLICK_SIDE / max(height, width)
    return round(width * scale), round(height * scale)


def _field_picture(selection: widgets.Selection, rf: gc.ReceptiveField | None, cell: tuple[int, int],
                   effective: torch.Tensor) -> np.ndarray:
    """The effective field as a heat map over the picture, the theoretical field as a box, at display size."""
    width, height = _display_size(selection.rgb)
    picture = np.asarray(Image.fromarray(selection.rgb).resize((width, height), Image.BILINEAR))
    heat = gc.overlay(picture, effective.sqrt(), selection.cmap, 0.6)  # sqrt: the tails stay visible
    image = Image.fromarray(heat)
    if rf is None:
        return np.asarray(image)
    in_h, in_w = selection.clf.input_size
    x0, y0, x1, y1 = rf.region(*cell)
    sx, sy = width / in_w, height / in_h
    ImageDraw.Draw(image).rectangle([x0 * sx, y0 * sy, x1 * sx - 1, y1 * sy - 1], outline=FIELD_COLOUR, width=3)
    return np.asarray(image)


def _share_inside(effective: torch.Tensor, region: tuple[int, int, int, int]) -> float:
    """The smallest share of the box's area that holds half of the gradient's total inside the box."""
    x0, y0, x1, y1 = region
    inside = effective[y0:y1, x0:x1].flatten().sort(descending=True).values
    if inside.numel() == 0 or float(inside.sum()) == 0.0:
        return 0.0
    cumulative = inside.cumsum(0) / inside.sum()
    return float((cumulative < 0.5).sum() + 1) / inside.numel()
