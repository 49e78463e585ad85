"""Where would you look? The student points at the evidence, then sees where the model's map points."""

import numpy as np
import streamlit as st
import torch
from PIL import Image, ImageDraw
from streamlit_image_coordinates import streamlit_image_coordinates

import gradcam_core as gc
from ui import figures, layout, resources, widgets
from ui.source import show_code

QUESTION = "where"
SIDE = 448
HUMAN_COLOUR, MODEL_COLOUR = "#ffffff", "#000000"


def display(rgb: np.ndarray) -> np.ndarray:
    image = Image.fromarray(rgb)
    scale = SIDE / max(image.size)
    return np.asarray(image.resize((round(image.width * scale), round(image.height * scale)), Image.NEAREST
                                   if max(rgb.shape[:2]) < 128 else Image.BILINEAR))


def marked(rgb: np.ndarray, points: list[tuple[tuple[float, float], str]]) -> np.ndarray:
    """``rgb`` with a ringed dot at each ``((y, x), colour)``, coordinates as fractions of the picture."""
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    radius = max(6, image.width // 40)
    for (y, x), colour in points:
        cx, cy = x * image.width, y * image.height
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], outline=colour, width=4)
        draw.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=colour)
    return np.asarray(image)


def peak(m: torch.Tensor, size: tuple[int, int]) -> tuple[float, float, torch.Tensor]:
    """The map upsampled to ``size``: its peak as fractions (y, x), and the upsampled map."""
    up = gc.upsample(m, size)
    row, column = divmod(int(up.argmax()), size[1])
    return (row + 0.5) / size[0], (column + 0.5) / size[1], up


def record(key: str, choice: str, right: bool | None, detail: str) -> None:
    recorded = st.session_state.setdefault("where_recorded", set())
    if key in recorded:
        return
    recorded.add(key)
    problem = resources.record_answer(QUESTION, choice, right, detail)
    if problem:
        st.warning(problem)


selection = widgets.sidebar()
clf = selection.clf
st.title("Where would you look?")
layout.lesson(
    f"Before you see the model's map: **click where you see the evidence for '{selection.class_name}'** (the "
    "sidebar's picture and class). Then compare with where Grad-CAM's map peaks. On a shapes picture the true "
    "object is known, so you and the model both play the pointing game."
)
shown = display(selection.rgb)
key = f"where:{selection.model_key}:{selection.picture.image_id}:{selection.target}"
with st.container(width=SIDE):  # as wide as the picture, or as the screen where that is narrower (a phone)
    click = streamlit_image_coordinates(shown, key=key, width="stretch")
if click is None:
    st.info("Click on the picture to answer.")
else:
    human = (click["y"] / click["height"], click["x"] / click["width"])
    m = selection.explain(["grad_cam"], [clf.cam_layer])["grad_cam"].maps[clf.cam_layer][0]
    if float(m.max()) <= 0:
        st.warning(f"Grad-CAM finds no evidence for '{selection.class_name}' anywhere in this picture (its map is zero "
                   "everywhere), so there is no peak to compare with. Pick a class the model finds likelier.")
        st.stop()
    model_y, model_x, up = peak(m, selection.rgb.shape[:2])
    overlay = gc.overlay(shown, m, selection.cmap, selection.alpha)
    left, right = st.columns(2)
    left.image(figures.compact(marked(overlay, [(human, HUMAN_COLOUR), ((model_y, model_x), MODEL_COLOUR)])),
               width="stretch",
               caption=f"White: your point. Black: the peak of Grad-CAM for '{selection.class_name}'.")
    height, width = selection.rgb.shape[:2]
    at_human = float(up[min(int(human[0] * height), height - 1), min(int(human[1] * width), width - 1)])
    share = at_human / max(float(up.max()), 1e-12)
    distance = float(np.hypot(human[0] - model_y, human[1] - model_x))
    with right:
        st.metric("The model's map at your point, as a share of its peak", f"{share:.0%}")
        st.metric("Distance between the two points, as a share of the picture's side", f"{distance:.0%}")
        if selection.model.startswith("shapes"):
            mask = resources.shapes_sample(st.session_state["shapes_seed"]).masks[0]
            human_hit = bool(mask[min(int(human[0] * mask.shape[0]), mask.shape[0] - 1),
                                  min(int(human[1] * mask.shape[1]), mask.shape[1] - 1)])
            model_hit = gc.metrics.pointing_game(m, mask)
            st.metric("You, on the shape?", "hit" if human_hit else "miss")
            st.metric("The model, on the shape?", "hit" if model_hit else "miss")
            record(key, "hit" if human_hit else "miss", human_hit,
                   f"{selection.model}|model {'hit' if model_hit else 'miss'}")
        else:
            record(key, "agree" if share >= 0.5 else "differ", None, f"{selection.model}|map at point {share:.2f}")
    st.caption("Your answer went into the class tally (once per picture and class). Pick another picture or class "
               "in the sidebar to play again.")

show_code(
    f"m = gc.GradCAM(clf.module, ['{clf.cam_layer}'])(x, target={selection.target}).maps['{clf.cam_layer}'][0]\n"
    "up = gc.upsample(m, picture_size); peak = divmod(int(up.argmax()), picture_size[1])\n"
    "gc.metrics.pointing_game(m, mask)      # on shapes: is the peak on the object?",
    gc.metrics.pointing_game,
)
