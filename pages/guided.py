"""Guided Grad-CAM: guided backpropagation, Grad-CAM and their product, for two classes."""

import numpy as np
import streamlit as st
from PIL import Image

import gradcam_core as gc
from gradcam_core.explainers.base import Result
from ui import figures, resources, widgets
from ui.source import show_code


def options_ui(selection: widgets.Selection) -> tuple[str, int, bool]:
    left, middle, right = st.columns([2, 2, 1])
    with left:
        layer = widgets.layer_ui(selection.clf, "Grad-CAM layer", key="guided_layer")
    with middle:
        other = widgets.second_class_ui(selection, key="guided_other")
    with right:
        counterfactual = st.toggle("Counterfactual", key="guided_counterfactual",
                                   help="Negate the gradients: show what speaks AGAINST each class.")
    return layer, other, counterfactual


def class_column(selection: widgets.Selection, result: Result, layer: str, target: int) -> None:
    name = selection.clf.categories[target]
    size = selection.rgb.shape[:2]
    pictures = [
        ("Guided Backprop", _at(gc.to_image(result.guided[0]), size)),
        (f"Grad-CAM ({layer})", gc.overlay(selection.rgb, result.cams[layer][0], selection.cmap, selection.alpha)),
        ("Guided Grad-CAM", _at(gc.to_image(result.maps[layer][0]), size)),
    ]
    st.markdown(f"#### {selection.label(target)}")
    figures.show_grid(pictures, columns=3, filename=f"guided_grad_cam_{layer}_{target}.png")
    st.plotly_chart(figures.picture(pictures[2][1], f"Guided Grad-CAM for '{name}': zoom in"), key=f"guided_zoom:{target}")


def _at(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A model-resolution picture resized to the shown image, so the three sit side by side alike."""
    return np.asarray(Image.fromarray(rgb).resize(size[::-1], Image.BILINEAR))


selection = widgets.sidebar()
clf = selection.clf
st.title("Guided Grad-CAM: sharp and class-discriminative")
st.markdown(
    "**Guided Backpropagation** follows the gradient back to the pixels, letting through ReLUs only "
    "positive gradients where the input was positive: sharp edges, but nearly the same for every class. "
    "**Grad-CAM** knows the class but is as coarse as its layer. Their product has both."
)
st.latex(
    r"R^{\ell} = \mathbb{1}[x^{\ell} > 0]\cdot\max(R^{\ell+1}, 0) \qquad "
    r"\text{Guided Grad-CAM}^c = R^c_{\text{guided}} \odot \mathrm{upsample}(L^c_{\text{Grad-CAM}})"
)
layer, other, counterfactual = options_ui(selection)
if counterfactual:
    st.info("Counterfactual maps use $-\\alpha_k^c$: the regions whose removal would make the network "
            "*more* sure of the class, the evidence against it.")
targets = [selection.target, other]
results = [
    resources.guided_grad_cam(selection.model_key, selection.picture.image_id, (layer,), t, counterfactual,
                              clf, selection.x)
    for t in targets
]
for column, result, target in zip(st.columns(2), results, targets):
    with column:
        class_column(selection, result, layer, target)

guided_r = gc.maps.correlation(results[0].guided[0], results[1].guided[0])
cam_r = gc.maps.correlation(results[0].cams[layer][0], results[1].cams[layer][0])
st.info(
    f"Between the two classes, the guided backprop pictures correlate at **r = {guided_r:.2f}**, the Grad-CAM "
    f"maps at **r = {cam_r:.2f}**. Guided backprop alone hardly tells the classes apart; "
    "multiplying by Grad-CAM keeps only the edges inside each class's own region."
)

show_code(
    f"result = gc.GuidedGradCAM(clf.module, layers=['{layer}'], counterfactual={counterfactual})(x, target={selection.target})\n"
    f"result.guided     # guided backprop (1, 3, H, W)\n"
    f"result.cams['{layer}']   # Grad-CAM at the layer's resolution\n"
    f"result.maps['{layer}']   # their product, guided * upsample(cam)\n"
    "picture = gc.to_image(result.maps[...][0])",
    gc.GuidedGradCAM,
    gc.GuidedBackprop,
    gc.hooks.guided_gradients,
)
