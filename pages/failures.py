"""Failure modes: the network's mistakes, each with Grad-CAM for what it said and for what was right."""

from dataclasses import dataclass

import numpy as np
import streamlit as st
import torch

import gradcam_core as gc
from gradcam_core import metrics, shapes
from ui import figures, layout, links, resources, shapes_view, widgets
from ui.source import show_code

HELD_OUT = 500
REFLECTIONS = ["I would have hesitated too: the mistake is reasonable",
               "The map is on the right thing, but the class is wrong",
               "The map is on the wrong thing: the network was fooled"]


@dataclass(frozen=True)
class Mistake:
    """One misclassified picture, ready to explain."""

    name: str
    image_id: str
    rgb: np.ndarray
    x: torch.Tensor
    probabilities: torch.Tensor
    right: list[int]
    mask: torch.Tensor | None = None


def shapes_mistake_ui(selection: widgets.Selection) -> Mistake | None:
    wrong, probabilities = resources.shapes_mistakes(selection.model_key, HELD_OUT, selection.clf)
    st.markdown(f"**{len(wrong)} of {HELD_OUT}** held-out pictures are misclassified by "
                f"{resources.MODEL_LABELS.get(selection.model, selection.model)}.")
    if not wrong:
        st.success("No mistakes to study. Pick a weaker network in the sidebar (early in training, say).")
        return None
    number = st.slider("Mistake", 1, len(wrong), key=links.linked("mistake", 1, range(1, len(wrong) + 1), int,
                                                                 "the mistake")) if len(wrong) > 1 else 1
    index = wrong[number - 1]
    batch = resources.held_out_shapes(HELD_OUT)
    return Mistake(f"held-out picture #{index}", f"held-out-{index}", shapes_view.enlarged(batch.pictures[index]),
                   batch.images[index:index + 1], probabilities[index], [int(batch.labels[index])], batch.masks[index])


def photo_mistake_ui(selection: widgets.Selection) -> Mistake | None:
    try:
        labelled = len(gc.evaluation.photo_labels(selection.clf.categories))
    except ValueError:  # a network of one's own, with classes of its own
        st.info("The photos are labelled with ImageNet classes, which this network does not have: choose an "
                "ImageNet model or a shapes network to browse its mistakes.")
        return None
    mistakes = resources.photo_mistakes(selection.model_key, selection.clf)
    st.markdown(f"**{len(mistakes)} of the {labelled}** labelled photos get a wrong top-1 from "
                f"{resources.MODEL_LABELS.get(selection.model, selection.model)} (see `assets/images/labels.json`).")
    if not mistakes:
        st.success("No mistakes on these photos.")
        return None
    names = [path for path, _, _ in mistakes]
    path = st.radio("Photo", names, horizontal=True, key=links.linked("photo", names[0], names, label="the photo"))
    _, right, probabilities = mistakes[names.index(path)]
    data = (gc.evaluation.SAMPLE_IMAGES / path).read_bytes()
    image_id = resources.digest(data)
    image = resources.display_image(image_id, data, widgets.DISPLAY_SIDE)
    return Mistake(path, image_id, np.asarray(image), selection.clf.preprocess(image), probabilities, right)


def explained_ui(selection: widgets.Selection, mistake: Mistake) -> None:
    clf = selection.clf
    predicted = int(mistake.probabilities.argmax())
    if mistake.right:
        other = max(mistake.right, key=lambda c: float(mistake.probabilities[c]))
        other_label = "the right class" if len(mistake.right) == 1 else "the likeliest of the right classes"
    else:
        other = int(mistake.probabilities.topk(2).indices[1])
        other_label = "its second guess (no ImageNet class fits this photo)"
    left, right = st.columns([1, 2])
    with left:
        st.plotly_chart(figures.top_classes(clf.categories, mistake.probabilities,
                                            mistake.probabilities.topk(5).indices.tolist()), key="mistake_top5")
        if mistake.right:
            st.caption("Counted right: " + ", ".join(f"'{clf.categories[c]}'" for c in mistake.right))
    columns = right.columns(2)
    for column, (target, what) in zip(columns, [(predicted, "what it said"), (other, other_label)]):
        m = resources.explanation(("grad_cam",), selection.model_key, mistake.image_id, (clf.cam_layer,), target, None,
                                  clf, mistake.x)["grad_cam"].maps[clf.cam_layer][0]
        caption = f"Grad-CAM for '{clf.categories[target]}' ({float(mistake.probabilities[target]):.0%}), {what}"
        if mistake.mask is not None:
            caption += "; its peak is " + ("on the shape" if metrics.pointing_game(m, mistake.mask) else "off the shape")
        column.image(figures.compact(gc.overlay(mistake.rgb, m, selection.cmap, selection.alpha)),
                     caption=caption, width="stretch")


selection = widgets.sidebar()
clf = selection.clf
st.title("Failure modes")
layout.lesson(
    "The Grad-CAM paper (Section 6.1) looked at the mistakes of a network on ImageNet and found that many "
    "seemingly unreasonable predictions had reasonable explanations: the map lay on something that looks like the "
    "predicted class, or on a second object in the picture. **Look for** where the map of the wrong answer lies, "
    "compared with the map of the right one, and judge the mistake as a teacher would."
)
on_shapes = selection.model.startswith("shapes")
st.caption("The sidebar's model decides which mistakes: a shapes network shows its held-out mistakes, an ImageNet "
           "model its mistakes on the photos.")
mistake = shapes_mistake_ui(selection) if on_shapes else photo_mistake_ui(selection)
if mistake is not None:
    st.subheader(mistake.name)
    explained_ui(selection, mistake)
    verdict = st.radio("What do you make of it?", REFLECTIONS, index=None, key=f"verdict:{mistake.image_id}")
    if verdict:
        st.info("The paper's verdict on many ImageNet failures was the first one. Try the next mistake: how many of "
                "them would you forgive?")

show_code(
    "probabilities = clf.predict(x)\n"
    "predicted = int(probabilities.argmax())\n"
    "maps = gc.GradCAM(clf.module, layers=[clf.cam_layer])(torch.cat([x, x]), target=[predicted, true_class])\n"
    + ("# the held-out pictures: shapes.render(500, shapes.EVALUATION_SEED)" if on_shapes
       else "# the photos and their right classes: gc.evaluation.photo_labels(clf.categories)"),
    gc.evaluation.photo_labels if not on_shapes else shapes.render,
)
