"""The shapes lab's ground truth on the pages: boxes, IoU and the pointing game for one map."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import streamlit as st
import torch
from PIL import Image

import gradcam_core as gc
from gradcam_core import metrics, shapes

from . import figures, resources, widgets

TRUTH_COLOUR, MAP_COLOUR, CUE_COLOUR = "#00c853", "#ffd600", "#ff1744"


def enlarged(picture: np.ndarray, side: int = widgets.SHAPES_DISPLAY_SIDE) -> np.ndarray:
    """A 64x64 shapes picture blown up with crisp pixels, for the page."""
    return np.asarray(Image.fromarray(picture).resize((side, side), Image.NEAREST))


def overlay_with_regions(picture: np.ndarray, m: torch.Tensor | None, cmap: str, alpha: float,
                         regions: Sequence[tuple[torch.Tensor, str]] = ()) -> np.ndarray:
    """The enlarged picture, the map over it (unless ``m`` is None), and a box around each ``(mask, colour)``."""
    big = enlarged(picture)
    shown = big if m is None else gc.overlay(big, m, cmap, alpha)
    boxes = [(metrics.box_from_mask(mask), colour) for mask, colour in regions]
    return figures.with_boxes(shown, boxes, big.shape[1] / picture.shape[1])


def localization_ui(selection: widgets.Selection, m: torch.Tensor, method: str = "CAM") -> None:
    """The map's box (yellow) against the true box (green), their IoU and the pointing game."""
    batch = resources.shapes_sample(st.session_state["shapes_seed"])
    mask, truth = batch.masks[0], tuple(batch.boxes[0].tolist())
    found = metrics.box_from_map(m, tuple(mask.shape))
    iou = metrics.box_iou(found, truth)
    tight_iou = metrics.box_iou(metrics.box_from_map(m, tuple(mask.shape), threshold=shapes.TIGHT_THRESHOLD), truth)
    hit = metrics.pointing_game(m, mask)
    scale = selection.picture.image.width / mask.shape[1]
    boxed = figures.with_boxes(gc.overlay(selection.rgb, m, selection.cmap, selection.alpha),
                               [(truth, TRUTH_COLOUR), (found, MAP_COLOUR)], scale)
    caption = (f"green: the true box; yellow: the box around {method}'s largest region above 15% of its peak"
               if any(found) else f"green: the true box; {method} is zero everywhere, so it draws no box")
    st.image(figures.compact(boxed), caption=caption, width="stretch")
    left, middle, right = st.columns(3)
    left.metric("Box IoU", f"{iou:.2f}", "a hit (> 0.5)" if iou > 0.5 else "a miss (<= 0.5)",
                delta_color="normal" if iou > 0.5 else "inverse",
                help="The Grad-CAM paper's protocol: the box around the map's largest region above 15% of its peak.")
    middle.metric("IoU at 50% of the peak", f"{tight_iou:.2f}",
                  help="An 8x8 map blown up to the picture spreads past the object, so the 15% box is loose; "
                       "a 50% threshold gives a tighter box.")
    right.metric("Pointing game", "hit" if hit else "miss", help="Is the map's maximum inside the object?")
