"""The pixel-space methods (saliency, guided backprop, deconvnet), and each one gated by Grad-CAM."""

import numpy as np
import streamlit as st
import torch
from PIL import Image

import gradcam_core as gc
from ui import figures, layout, links, widgets
from ui.source import show_code

PIXEL_METHODS = ["saliency", "guided_backprop", "deconvnet"]


def options_ui(selection: widgets.Selection) -> tuple[str, int, bool]:
    left, middle, right = st.columns([2, 2, 1])
    with left:
        layer = widgets.layer_ui(selection.clf, "Grad-CAM layer", key="guided_layer")
    with middle:
        other = widgets.second_class_ui(selection, key="guided_other")
    with right:
        counterfactual = st.toggle("Counterfactual", key=links.linked("counterfactual", False, (True, False), links.boolean),
                                   help="Negate the gradients: show what speaks AGAINST each class.")
    return layer, other, counterfactual


def pixel_picture(method: str, picture, size: tuple[int, int]) -> np.ndarray:
    """Saliency as its strength (max over colours of |gradient|), the others centred on grey."""
    if method == "saliency":
        rgb = gc.maps.heat_image(gc.Saliency.strength(picture[0]))
    else:
        rgb = gc.to_image(picture[0])
    return np.asarray(Image.fromarray(rgb).resize(size[::-1], Image.BILINEAR))


def class_block(selection: widgets.Selection, results: dict[str, gc.Result], layer: str, target: int) -> None:
    size = selection.rgb.shape[:2]
    cam = results["grad_cam"].maps[layer]
    pixels = {m: results[m].maps["input"] for m in PIXEL_METHODS}
    pixels["guided_grad_cam"] = results["guided_grad_cam"].maps[layer]
    pictures = [(gc.METHODS[m].label, pixel_picture(m, pixels[m], size)) for m in PIXEL_METHODS]
    pictures.append((f"Grad-CAM ({layer})", gc.overlay(selection.rgb, cam[0], selection.cmap, selection.alpha)))
    pictures += [
        ("Saliency × Grad-CAM", pixel_picture("saliency", gc.maps.gate(pixels["saliency"], cam), size)),
        ("Guided Grad-CAM", pixel_picture("guided_grad_cam", pixels["guided_grad_cam"], size)),
        ("Deconvnet × Grad-CAM", pixel_picture("deconvnet", gc.maps.gate(pixels["deconvnet"], cam), size)),
    ]
    st.markdown(f"#### {selection.label(target)}")
    figures.show_grid(pictures, columns=4, filename=f"pixel_methods_{layer}_{target}.png")
    with st.expander(f"Guided Grad-CAM for '{selection.clf.categories[target]}' up close"):
        st.plotly_chart(figures.picture(pictures[5][1], "zoom in with the mouse"), key=f"guided_zoom:{target}")


selection = widgets.sidebar()
clf = selection.clf
st.title("Pixel-space methods, and Guided Grad-CAM")
layout.lesson(
    "Three ways to send the score back to the pixels. **Saliency** is the plain gradient. "
    "**Guided Backpropagation** lets through each ReLU only positive gradients, and only where the input was "
    "positive. The **deconvnet** lets through positive gradients wherever they arrive. All three are sharp, "
    "but nearly the same for every class. **Grad-CAM** knows the class but is as coarse as its layer; "
    "multiplying a pixel-space picture by it keeps only the edges inside the class's region."
)
st.latex(
    r"\text{saliency: } R^{\ell} = \mathbb{1}[x^{\ell} > 0]\cdot R^{\ell+1} \quad "
    r"\text{guided: } R^{\ell} = \mathbb{1}[x^{\ell} > 0]\cdot\max(R^{\ell+1}, 0) \quad "
    r"\text{deconvnet: } R^{\ell} = \max(R^{\ell+1}, 0)"
)
st.latex(r"\text{Guided Grad-CAM}^c = R^c_{\text{guided}} \odot \mathrm{upsample}(L^c_{\text{Grad-CAM}})")
layer, other, counterfactual = options_ui(selection)
if counterfactual:
    st.info("Counterfactual maps use $-\\alpha_k^c$: the regions whose removal would make the network "
            "*more* sure of the class, the evidence against it.")
methods = [*PIXEL_METHODS, "grad_cam", "guided_grad_cam"]
options = {"grad_cam": {"counterfactual": counterfactual}, "guided_grad_cam": {"counterfactual": counterfactual}}
targets = [selection.target, other]
results = [selection.explain(methods, [layer], target=t, options=options) for t in targets]
for result, target in zip(results, targets):
    class_block(selection, result, layer, target)

st.subheader("How much does each picture depend on the class?")
rows = {
    gc.METHODS[m].label: gc.maps.correlation(results[0][m].maps["input"][0], results[1][m].maps["input"][0])
    for m in PIXEL_METHODS
}
rows["Grad-CAM"] = gc.maps.correlation(results[0]["grad_cam"].maps[layer][0], results[1]["grad_cam"].maps[layer][0])
rows["Guided Grad-CAM"] = gc.maps.correlation(results[0]["guided_grad_cam"].maps[layer][0],
                                              results[1]["guided_grad_cam"].maps[layer][0])
st.dataframe({"picture": list(rows), "correlation between the two classes": [f"{r:.2f}" for r in rows.values()]},
             hide_index=True)
st.info(
    "A correlation near 1 means the picture hardly changes with the class: it shows the image, not the decision. "
    f"Here the deconvnet's pictures correlate at r = {rows['Deconvnet']:.2f} and guided backprop's at "
    f"r = {rows['Guided Backprop']:.2f}, against r = {rows['Grad-CAM']:.2f} for Grad-CAM: gating by Grad-CAM is what "
    "makes the sharp pictures class-discriminative."
)
# a transformer's softmax and layer norms depend on the image on the way back, max pooling or not
if selection.family == "CNN" and not any(isinstance(m, torch.nn.MaxPool2d) for m in clf.module.modules()):
    st.warning(
        f"{clf.description.split(',')[0]} has no max pooling, so on the way back the deconvnet meets nothing that "
        "depends on the image: its ReLUs ignore their inputs, and convolutions and batch norm are linear. Its "
        "picture is the same for every image you choose. Try another sample and see."
    )

show_code(
    f"results = gc.explain(clf.module, x, target={selection.target}, layers=['{layer}'],\n"
    f"                     methods={methods})   # one forward pass for all five\n"
    f"results['saliency'].maps['input']          # d y^c / d x, (1, 3, H, W)\n"
    f"results['guided_grad_cam'].maps['{layer}']  # guided backprop * upsample(Grad-CAM)\n"
    f"gc.maps.gate(results['deconvnet'].maps['input'], results['grad_cam'].maps['{layer}'])",
    gc.hooks.rectified_gradients,
    gc.GuidedGradCAM,
    gc.maps.gate,
)
