"""CAM on a GAP network: the head drawn out, the map, and the map taken apart channel by channel."""

import streamlit as st
import torch

import gradcam_core as gc
from gradcam_core.explainers.base import Result
from ui import figures, shapes_view, widgets
from ui.source import show_code

TOP_CHANNELS = 8


def head_diagram(layer: str, fc: str, channels: int, height: int, width: int, classes: int) -> str:
    return f"""digraph {{
        rankdir=LR; node [shape=box, style="rounded,filled", fillcolor="#f4f6f8", fontname="Helvetica"];
        A [label="{layer}\\n{channels} feature maps, {height}x{width} each"];
        G [label="global average pooling\\n{channels} numbers, one per map"];
        F [label="{fc}: one linear layer\\n{classes}x{channels} weights"];
        Y [label="{classes} class scores"];
        A -> G -> F -> Y;
    }}"""


def refusal_ui(selection: widgets.Selection, refusal: ValueError) -> None:
    """CAM's refusal as a lesson, with the Grad-CAM map that needs no special head beside it."""
    clf = selection.clf
    left, right = st.columns(2)
    with left:
        st.error(f"**CAM refuses this network.** {refusal}")
        st.markdown(
            f"CAM needs **{clf.cam_layer} -> global average pooling -> one linear layer**, so that each "
            f"channel $k$ reaches the score of a class through one number, $w_k^c$. This network's head is "
            f"different (here `{clf.fc}` is not fed by one average per channel), so there is no $w_k^c$ to "
            "weigh the maps with. Grad-CAM measures the weights as gradients instead, whatever the head."
        )
    result = selection.explain(["grad_cam"], [clf.cam_layer])["grad_cam"]
    with right:
        picture = gc.overlay(selection.rgb, result.maps[clf.cam_layer][0], selection.cmap, selection.alpha)
        st.image(picture, caption=f"Grad-CAM at {clf.cam_layer} for '{selection.class_name}'", width="stretch")
        figures.download(lambda: picture, f"grad_cam_{selection.model}_{selection.target}.png")


def decomposition_ui(selection: widgets.Selection, result: Result, layer: str) -> None:
    """The top channels' weights and maps, and how they add up to the CAM and to the score."""
    weights = result.weights[layer][0]
    activations = result.activations[layer][0]
    means = activations.mean(dim=(1, 2))
    contributions = weights * means
    top = torch.argsort(contributions, descending=True)[:TOP_CHANNELS].tolist()
    score = float(result.logits[0, selection.target])
    fc = selection.clf.module.get_submodule(selection.clf.fc)
    bias = 0.0 if fc.bias is None else float(fc.bias.detach()[selection.target])
    st.markdown(
        f"The score is the weighted sum of the channel averages: $y^c = \\sum_k w_k^c \\bar A^k + b^c$ = "
        f"{float(contributions.sum()):.3f} + ({bias:.3f}) = **{score:.3f}**. The {TOP_CHANNELS} channels that add "
        f"the most are below; each term $w_k^c A^k$ is one picture (all {TOP_CHANNELS} on one colour scale), and "
        f"all {weights.numel()} of them added up give the CAM."
    )
    left, right = st.columns([2, 3])
    left.plotly_chart(
        figures.bars([float(weights[k]) for k in top], [f"#{k}" for k in top],
                     "The weight of each top channel for the class", axis="weight"),
        key="cam_weights",
    )
    left.plotly_chart(
        figures.bars([float(contributions[k]) for k in top], [f"#{k}" for k in top],
                     "Its share of the score: weight × the map's mean", axis="weight × mean"),
        key="cam_contributions",
    )
    with right:
        full_sum = torch.einsum("k,khw->hw", weights, activations).clamp(min=0)
        products = [weights[k] * activations[k] for k in top]
        shared = (0.0, float(max(p.max() for p in products)))
        terms = [(f"#{k}: weight {float(weights[k]):.3f}", figures.colorize(p, selection.cmap, shared))
                 for k, p in zip(top, products)]
        terms.append(("all terms added: the CAM (own scale)", figures.colorize(full_sum, selection.cmap)))
        figures.show_grid(terms, columns=3, filename=f"cam_terms_{selection.target}.png")


selection = widgets.sidebar()
clf = selection.clf
layer = clf.cam_layer
st.title("CAM: the map a GAP network gives for free")
st.markdown(
    "Some networks end with **global average pooling** (GAP): each feature map of the last convolutional "
    "layer is averaged to one number, and one linear layer turns those numbers into class scores. Then the "
    "weight $w_k^c$ says how much map $k$ counts for class $c$, and the same weights, applied to the maps "
    "themselves rather than to their averages, show *where* the evidence lies (Zhou et al., 2016)."
)
st.latex(r"y^c = \sum_k w_k^c \,\frac{1}{Z}\sum_{i,j} A^k_{ij} \qquad\Longrightarrow\qquad "
         r"L^c_{\text{CAM}}(i,j) = \sum_k w_k^c A^k_{ij}")

try:
    result = selection.explain(["cam"], [layer])["cam"]
except ValueError as refusal:
    refusal_ui(selection, refusal)
else:
    cam_map = result.maps[layer][0]
    activations = result.activations[layer][0]
    st.graphviz_chart(head_diagram(layer, clf.fc, *activations.shape, len(clf.categories)))
    picture = gc.overlay(selection.rgb, cam_map, selection.cmap, selection.alpha)
    left, right = st.columns(2)
    with left:
        st.plotly_chart(figures.picture(picture, f"CAM for '{selection.class_name}' at {layer}"), key="cam_picture")
        figures.download(lambda: picture, f"cam_{selection.model}_{selection.target}.png")
    with right:
        if selection.model.startswith("shapes"):
            shapes_view.localization_ui(selection, cam_map)
        else:
            st.plotly_chart(figures.heatmap(cam_map, f"The map itself: {tuple(cam_map.shape)} cells", selection.cmap,
                                            label="L"), key="cam_heatmap", width="content")
    st.subheader("Taking the map apart")
    decomposition_ui(selection, result, layer)

show_code(
    f"result = gc.CAM(clf.module, layer='{layer}', fc='{clf.fc}')(x, target={selection.target})\n"
    f"result.maps['{layer}']      # ReLU(sum_k w_k^c A^k), at the layer's resolution\n"
    f"result.weights['{layer}']   # w_k^c, the row of fc.weight for the class\n"
    f"result.activations['{layer}']   # A^k",
    gc.CAM,
)
