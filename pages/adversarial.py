"""Adversarial examples: an invisible change flips the prediction, and Grad-CAM still finds the true class."""

import math

import numpy as np
import streamlit as st
import torch

import gradcam_core as gc
from gradcam_core import attacks, metrics
from ui import figures, layout, links, resources, shapes_view, widgets
from ui.source import show_code


# The "push towards" choice of an untargeted attack (class indices start at 0).
ANY_CLASS = -1


def settings_ui(selection: widgets.Selection, label: int) -> tuple[int, int, int | None, bool]:
    """Budget in 0-255 levels, PGD steps, an optional target class (not ``label``, the class attacked),
    and whether to stop at the flip."""
    left, middle, right = st.columns(3)
    levels = left.slider("Budget ε (levels of 255)", 0, 16, key=links.linked("attack_epsilon", 2, range(17), int),
                         help="The most any colour value of any pixel may change. 2 of 255 is invisible.")
    steps = middle.slider("PGD steps", 1, 20, key=links.linked("attack_steps", 10, range(1, 21), int),
                          help="1 step of size ε is FGSM.")
    clf = selection.clf
    choices = [ANY_CLASS] + [c for c in selection.probabilities.argsort(descending=True).tolist() if c != label]
    target = right.selectbox("Push towards", choices, key=links.linked("attack_target", ANY_CLASS, choices, int,
                                                                       "the target class"),
                             format_func=lambda c: "any other class" if c == ANY_CLASS else clf.categories[c],
                             help="Untargeted: away from the class. Targeted: towards the class you pick.")
    stop = st.toggle("Stop as soon as the prediction flips", key=links.linked("attack_stop", True, (True, False),
                                                                               links.boolean),
                     help="The smallest change that flips the answer. Off: PGD spends its whole budget, and goes on "
                          "erasing the original class's evidence after the flip.")
    return levels, steps, None if target == ANY_CLASS else target, stop


def model_view(selection: widgets.Selection, x: torch.Tensor) -> np.ndarray:
    """What the model sees, as RGB: the input at its own resolution."""
    rgb = (attacks.to_pixels(selection.clf, x)[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
    return shapes_view.enlarged(rgb) if selection.model.startswith("shapes") else rgb


def perturbation_picture(selection: widgets.Selection, adversarial: torch.Tensor, levels: int) -> np.ndarray:
    """The change, magnified so that the budget spans the whole grey scale around mid-grey."""
    change = attacks.to_pixels(selection.clf, adversarial) - attacks.to_pixels(selection.clf, selection.x)
    scaled = (0.5 + change[0] / (2 * max(levels, 1) / 255)).clamp(0, 1)
    rgb = (scaled.permute(1, 2, 0) * 255).round().byte().numpy()
    return shapes_view.enlarged(rgb) if selection.model.startswith("shapes") else rgb


def _shown(r: float) -> str:
    return "none left" if math.isnan(r) else f"{r:.2f}"


def maps_ui(selection: widgets.Selection, outcome: attacks.AttackOutcome, attacked_rgb: np.ndarray,
            clean_rgb: np.ndarray) -> None:
    clf = selection.clf
    label, new = int(outcome.labels[0]), int(outcome.new_classes[0])
    pictures = [
        (f"'{clf.categories[label]}' on the original", clean_rgb, outcome.label_clean[0]),
        (f"'{clf.categories[label]}' on the attacked picture", attacked_rgb, outcome.label_attacked[0]),
        (f"'{clf.categories[new]}' (its new top-1) on the attacked picture", attacked_rgb, outcome.new_attacked[0]),
    ]
    columns = st.columns(3)
    for column, (caption, rgb, m) in zip(columns, pictures):
        column.image(figures.compact(gc.overlay(rgb, m, selection.cmap, selection.alpha)),
                     caption=f"Grad-CAM for {caption}",
                     width="stretch")
    left, right = st.columns(2)
    left.metric(f"Correlation of the '{clf.categories[label]}' maps before and after",
                _shown(outcome.label_correlations()[0]),
                help="Pearson over the map's cells. 'none left': the attack erased all the evidence for the class.")
    right.metric("Correlation of the old class's map with the new class's, after",
                 _shown(gc.maps.correlation(outcome.label_attacked[0], outcome.new_attacked[0])))
    if selection.model.startswith("shapes"):
        mask = resources.shapes_sample(st.session_state["shapes_seed"]).masks
        hits = [metrics.pointing_game(m, mask[0]) for _, _, m in pictures]
        st.caption("Pointing game on the shape: " + ", ".join(
            f"{caption.split(' on ')[0]} {'hit' if hit else 'miss'}" for (caption, _, _), hit in zip(pictures, hits)))


selection = widgets.sidebar()
clf = selection.clf
st.title("Adversarial examples")
layout.lesson(
    "A change too small to see can make a network name another class (Szegedy et al. 2014). The Grad-CAM paper "
    "(Section 6.2) attacked a network until a wrong class won, then explained the *original* class on the attacked "
    "picture: the map still found the object. **Look for** the original class's map staying where it was, while the "
    "prediction moves. The attack below is projected gradient descent in pixel space (Madry et al. 2018)."
)
st.latex(r"x^{t+1} = \mathrm{clip}_{[x-\epsilon,\,x+\epsilon]\,\cap\,[0,1]}\Big(x^t + \alpha\,"
         r"\mathrm{sign}\,\nabla_x \mathcal{L}\big(f(x^t), y\big)\Big)")
label = int(selection.probabilities.argmax())
levels, steps, target, stop = settings_ui(selection, label)
outcome = resources.attack(selection.model_key, selection.picture.image_id, label, levels, steps, target, stop,
                           clf, selection.x)
clean_rgb, attacked_rgb = model_view(selection, selection.x), model_view(selection, outcome.adversarial)

columns = st.columns(3)
columns[0].image(figures.compact(clean_rgb),
                 caption=f"The original, as the model sees it ({clf.input_size[0]}x{clf.input_size[1]})",
                 width="stretch")
columns[1].image(figures.compact(attacked_rgb),
                 caption=f"Attacked: every value moved by at most {levels}/255", width="stretch")
columns[2].image(figures.compact(perturbation_picture(selection, outcome.adversarial, levels)),
                 caption="The change, magnified (grey: none)", width="stretch")
left, right = st.columns(2)
for column, probabilities, when in ((left, outcome.clean_probabilities[0], "before"),
                                    (right, outcome.attacked_probabilities[0], "after")):
    top = probabilities.topk(min(5, len(clf.categories))).indices.tolist()  # a network of one's own may have fewer
    column.plotly_chart(figures.top_classes(clf.categories, probabilities, top, title=f"Top-5 {when} the attack"),
                        key=f"attack_top_{when}")
new = int(outcome.new_classes[0])
if bool(outcome.flipped[0]):
    st.warning(f"The top-1 moved from **{clf.categories[label]}** to **{clf.categories[new]}** with a change of at most "
             f"{levels}/255 per value.")
else:
    st.info(f"**{clf.categories[label]}** survived this budget. Raise ε or the steps.")

st.subheader("Where does each class's evidence lie?")
maps_ui(selection, outcome, attacked_rgb, clean_rgb)
st.caption("The attacked picture is kept in floating point, as the model saw it. Saving it as an 8-bit PNG rounds each "
           "value to a whole level and can undo part of a small attack.")

show_code(
    f"adversarial = attacks.pgd(clf, x, label={label}, epsilon={levels}/255, steps={steps}, "
    f"target_class={target}, stop_when_flipped={stop})\n"
    f"outcome = attacks.attack_and_explain(clf, x, labels={label}, epsilon={levels}/255, steps={steps}, "
    f"target_class={target}, stop_when_flipped={stop})",
    attacks.pgd,
)
