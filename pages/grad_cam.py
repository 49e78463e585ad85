"""Grad-CAM at every stage of the network, from one forward and one backward pass."""

import streamlit as st
import torch

import gradcam_core as gc
from gradcam_core.explainers.base import LayerExplainer, weighted_sum
from ui import figures, layout, links, receptive_view, widgets
from ui.source import show_code


def weights_ui(stages: list[str]) -> str:
    key = links.linked("weights_layer", stages[-1], stages, label="the layer")
    return st.segmented_control("Show the weights of", stages, key=key) or stages[-1]


selection = widgets.sidebar()
clf = selection.clf
st.title("Grad-CAM, layer by layer")
layout.lesson(
    f"Grad-CAM weighs each feature map $A^k$ of a layer by how much the score of **{selection.class_name}** "
    "rises when that map rises, averaged over the map, then keeps the positive part of the sum. "
    "It needs no special architecture: any convolutional layer will do, and a transformer's block too, its "
    "tokens laid out on the grid of patches they stand for."
)
st.latex(
    r"\alpha_k^c = \frac{1}{Z}\sum_{i}\sum_{j} \frac{\partial y^c}{\partial A^k_{ij}}"
    r"\qquad L^c_{\text{Grad-CAM}} = \mathrm{ReLU}\Big(\sum_k \alpha_k^c A^k\Big)"
)

result = selection.explain(["grad_cam"], clf.stages)["grad_cam"]
maps = {layer: result.maps[layer][0] for layer in clf.stages}
pictures = [
    (f"{layer} · {m.shape[0]}x{m.shape[1]}", gc.overlay(selection.rgb, m, cmap=selection.cmap, alpha=selection.alpha))
    for layer, m in maps.items()
]
st.subheader(f"'{selection.class_name}' at {', '.join(clf.stages)}: one forward and one backward pass")
figures.show_grid(pictures, columns=len(pictures), filename=f"grad_cam_layers_{selection.target}.png")

first, last = clf.stages[0], clf.stages[-1]
if selection.family == "ViT":
    st.info(
        "Read the row from left to right. A Vision Transformer keeps one grid of "
        f"{maps[last].shape[0]}x{maps[last].shape[1]} patch tokens from **{first}** to **{last}**: no layer trades resolution for a wider view, since "
        "self-attention lets every token read the whole picture from the first block on. What changes with depth "
        "is what the tokens have gathered, and a late token may carry the class's evidence away from its own "
        "patch: page 19 sets Grad-CAM against the attention methods made for transformers."
    )
else:
    st.info(
        f"Read the row from left to right. At **{first}** the map is a speckle over the whole picture: each cell "
        "there sees a small patch, and its gradient answers to edges and textures on the background as much as on "
        f"the object. Layer after layer the cells see more of the picture, and by **{last}** the map gathers on "
        f"the parts that make a '{selection.class_name}'. The price is resolution: {last} has only "
        f"{maps[last].shape[0]}x{maps[last].shape[1]} cells, which is why its map is blurry (page 4 sharpens it)."
    )

st.subheader("The weights $\\alpha_k^c$")
layer = weights_ui(clf.stages)
alphas = result.weights[layer][0]
strongest = torch.argsort(alphas.abs(), descending=True)[:24].tolist()
left, right = st.columns([3, 2])
left.plotly_chart(
    figures.bars([float(alphas[k]) for k in strongest], [f"#{k}" for k in strongest],
                 f"{layer}: the 24 largest of {alphas.numel()} weights", axis="alpha"),
    key="grad_cam_alphas",
)
positive = int((alphas > 0).sum())
right.markdown(
    f"**{positive} of {alphas.numel()}** channels of {layer} speak for '{selection.class_name}' "
    f"($\\alpha_k^c > 0$), {alphas.numel() - positive} against it. Green bars add their map to the "
    "picture above, red bars subtract theirs. The ReLU then keeps only what is left in favour."
)
right.plotly_chart(
    figures.heatmap(maps[layer], f"{layer}: the map cell by cell", selection.cmap, height=320, label="L"),
    key="grad_cam_zoom", width="content",
)

st.subheader(f"What one token of {layer} sees" if selection.family == "ViT" else
             f"Why {first} is sharp and {last} is coarse: what one cell sees")
receptive_view.receptive_field_ui(selection, layer, maps[layer], key="grad_cam_field")

show_code(
    f"result = gc.GradCAM(clf.module, layers={clf.stages})(x, target={selection.target})\n"
    f'result.maps["{layer}"], result.weights["{layer}"]   # (1, h, w) maps and (1, K) alphas\n'
    f'picture = gc.overlay(rgb, result.maps["{layer}"][0], cmap="{selection.cmap}", alpha={selection.alpha})',
    gc.GradCAM,
    LayerExplainer.layer_map,
    weighted_sum,
)
