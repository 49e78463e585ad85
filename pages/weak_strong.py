"""Weak or strong model? The Grad-CAM paper's trust experiment: two models, one answer, which one to trust."""

import random

import numpy as np
import pandas as pd
import streamlit as st

import gradcam_core as gc
from ui import figures, layout, links, resources, shapes_view, tally, widgets
from ui.source import show_code

#: Pair -> (weaker, stronger) model.
PAIRS = {
    "Shapes: early in training vs fully trained": ("shapes_gap_early", "shapes_gap"),
    "ImageNet: EfficientNet-Lite0 vs EfficientNet-Lite2": ("efficientnet_lite0", "efficientnet_lite2"),
}
METHODS = {"grad_cam": "Grad-CAM", "guided_grad_cam": "Guided Grad-CAM (the paper's)"}
CHOICES = {"Model A": "A", "Model B": "B", "I cannot tell them apart": "unsure"}
QUESTION = "weak_vs_strong"
HELD_OUT = 500


def explained(model: str, image_id: str, picture, source, target: int, method: str, cmap: str,
              alpha: float) -> np.ndarray:
    clf = resources.classifier(model)
    x = clf.preprocess(source)
    m = resources.explanation((method,), model, image_id, (clf.cam_layer,), target, None, clf, x)[method].maps[clf.cam_layer]
    shown = shapes_view.enlarged(picture) if model.startswith("shapes") else picture
    return figures.method_picture(method, m[0], shown, cmap, alpha)


def reveal_ui(pair: tuple[str, str], order: list[str], answer: str) -> None:
    weaker, stronger = pair
    for letter, model in zip("AB", order):
        clf = resources.classifier(model)
        if model.startswith("shapes"):
            wrong, _ = resources.shapes_mistakes(model, HELD_OUT, clf)
            accuracy = f"{1 - len(wrong) / HELD_OUT:.1%} right on {HELD_OUT} held-out pictures"
        else:
            accuracy = clf.description.rsplit("(", 1)[-1].rstrip(")")
        strength = "the stronger" if model == stronger else "the weaker"
        st.markdown(f"**Model {letter}** was `{model}`, {strength} model: {accuracy}.")
    picked = dict(zip("AB", order)).get(answer)
    if picked == stronger:
        st.success("You trusted the stronger model.")
    elif picked == weaker:
        st.warning("You trusted the weaker model. Look again: whose map covers the whole object?")
    else:
        st.info("You could not tell them apart on this picture. Try another.")


def record_answer(verdict: str, detail: str) -> None:
    """One vote into the class tally; if the tally cannot take it, a message, and the page goes on."""
    problem = resources.record_answer(QUESTION, verdict, None if verdict == "unsure" else verdict == "stronger", detail)
    if problem:
        st.warning(problem)


def class_results_ui() -> None:
    store, problem = resources.class_tally()
    try:
        if store is None:
            raise tally.TallyUnavailable(problem)
        answers = store.answers(QUESTION)
    except tally.TallyUnavailable as error:
        st.warning(str(error))
        return
    if not answers:
        st.caption("No answers in the class tally yet.")
        return
    table = pd.DataFrame([{"pair": a.detail.split("|")[0], "trusted": {"stronger": "the stronger model",
                           "weaker": "the weaker model"}.get(a.choice, "could not tell")} for a in answers])
    counts = table.groupby(["pair", "trusted"]).size().unstack(fill_value=0)
    st.markdown(f"**The class so far** ({len(answers)} answers):")
    st.dataframe(counts, width="stretch")


selection = widgets.sidebar()
st.title("Weak or strong model?")
layout.lesson(
    "Two networks give the same, right answer. Can their maps tell you which one to trust? In the Grad-CAM paper "
    "(Section 5.3) people saw the visualizations of AlexNet and of the more accurate VGG-16 on pictures both "
    "classified right, and rated VGG-16 as more reliable (by +1.27 on a scale from -2 to +2 with Guided "
    "Grad-CAM, +1.00 with Guided Backprop), without being told which was which. **Look for** a map that covers "
    "the object and nothing else."
)
pairs = {name: pair for name, pair in PAIRS.items() if all(resources.model_ready(model) for model in pair)}
left, right = st.columns(2)
pair_name = left.radio("Which two models", list(pairs), key=links.linked("pair", list(pairs)[0], pairs, label="the pair"))
method = right.radio("Visualization", list(METHODS), format_func=METHODS.get, horizontal=True,
                     key=links.linked("visualization", "grad_cam", METHODS))
pair = pairs[pair_name]
pictures = resources.agreed_pictures(pair, HELD_OUT, widgets.DISPLAY_SIDE)
if not pictures:
    st.warning("The two models agree on no picture here.")
    st.stop()
number = st.session_state[links.linked("picture", 0, range(len(pictures)), int, "the picture")]
if st.button("Another picture", key="trust_next"):
    number = (number + 1) % len(pictures)
    st.session_state["picture"] = number
    links.publish("picture", number)
image_id, picture, source, target = pictures[number]
order = list(pair)
random.Random(image_id).shuffle(order)  # the same hidden order for everyone who sees this picture
clf = resources.classifier(pair[1])
st.caption(f"Picture {number + 1} of {len(pictures)} that both models classify right, as "
           f"**{clf.categories[target]}**. Both maps explain that class.")
columns = st.columns(2)
for column, letter, model in zip(columns, "AB", order):
    shown = explained(model, image_id, picture, source, target, method, selection.cmap, selection.alpha)
    column.image(figures.compact(shown), caption=f"Model {letter}", width="stretch")

key = f"{pair_name}|{image_id}|{method}"
answered = st.session_state.setdefault("trust_answers", {})
with st.form("trust_form"):
    choice = st.radio("Which model would you trust more?", list(CHOICES), index=None, horizontal=True,
                      key=f"trust_choice:{key}", disabled=key in answered)
    if st.form_submit_button("Answer", type="primary", disabled=key in answered) and choice and key not in answered:
        answer = answered[key] = CHOICES[choice]
        picked = dict(zip("AB", order)).get(answer)
        record_answer("stronger" if picked == pair[1] else "weaker" if picked == pair[0] else "unsure",
                      f"{pair_name}|{method}|{image_id}")
if key in answered:
    reveal_ui(pair, order, answered[key])
    class_results_ui()
else:
    st.caption("Answer to see which model is which, and how the class answered.")

show_code(
    f"weaker, stronger = gc.load_model('{pair[0]}'), gc.load_model('{pair[1]}')\n"
    f"maps = [gc.explain(m.module, m.preprocess(picture), target={target}, layers=[m.cam_layer], "
    f"methods=['{method}'])['{method}'] for m in (weaker, stronger)]",
    gc.GuidedGradCAM if method == "guided_grad_cam" else gc.GradCAM,
)
