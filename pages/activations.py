"""Activations: the feature maps of one layer, most active channels first."""

import streamlit as st
import torch

import gradcam_core as gc
from ui import figures, layout, links, resources, widgets
from ui.source import show_code

EXPLANATION = {
    "early": "Early layers see small patches of the picture: each channel answers to an edge of one "
    "direction, a colour, a fine texture, wherever it appears, on the object and on the background alike.",
    "deep": "Deep layers see most of the picture at once: their channels answer to parts and whole "
    "objects (an eye, a snout, fur), so they light up on few, object-shaped regions.",
    "tokens": "A Vision Transformer's block gives one token per patch, not maps: each of the C numbers of a token "
    "is shown here as a channel over the patch grid. The grid never shrinks, and self-attention lets every token "
    "mix in any other patch, so from the first block on a channel can fire far from what it answers to.",
}


def controls_ui(clf: gc.Classifier, channels: int) -> tuple[int, int]:
    left, right = st.columns(2)
    most = min(48, channels)
    shown = left.slider("Channels in the grid", 4, most, step=4, key=links.linked(
        "activations_count", min(16, channels), parse=int, valid=lambda n: 4 <= n <= most and n % 4 == 0,
        label="the number of channels"))
    zoom = right.number_input("Channel to zoom into", 0, channels - 1, placeholder="the most active one",
                              key=links.linked("activations_channel", None, parse=links.optional_int,
                                               valid=lambda c: c is None or 0 <= c < channels, label="the channel"))
    return shown, zoom


selection = widgets.sidebar()
clf = selection.clf
st.title("Activations: what each layer responds to")
layout.lesson(
    "A convolutional layer computes $K$ feature maps $A^k$, one a channel. Each cell $A^k_{ij}$ says "
    "how strongly channel $k$ responds at position $(i, j)$ of the picture. These maps are what CAM and "
    "Grad-CAM weigh and add up."
)
layer = widgets.layer_ui(clf, default=0, key="activations_layer")
activations = resources.feature_maps(selection.model_key, selection.picture.image_id, layer, clf, selection.x)
channels, height, width = activations.shape
means = activations.mean(dim=(1, 2))
order = torch.argsort(means, descending=True).tolist()
shown, zoom = controls_ui(clf, channels)
zoom = order[0] if zoom is None else int(zoom)

depth = "early" if clf.stages.index(layer) < len(clf.stages) / 2 else "deep"
depth = "tokens" if selection.family == "ViT" else depth
st.info(f"**{layer}**: {channels} channels of {height}x{width}. {EXPLANATION[depth]}")
st.latex(r"A^k = f^{(\ell)}_k(x) \in \mathbb{R}^{h \times w}, \qquad \bar A^k = \frac{1}{hw}\sum_{i,j} A^k_{ij}")

st.subheader(f"The {shown} most active channels of {layer}")
tiles = [(f"#{k} · mean {means[k]:.3f}", figures.colorize(activations[k], selection.cmap)) for k in order[:shown]]
figures.show_grid(tiles, columns=8, filename=f"activations_{layer}.png")

st.subheader(f"Channel {zoom} up close")
left, right = st.columns(2)
left.plotly_chart(
    figures.heatmap(activations[zoom], f"{layer}, channel {zoom}: mean {means[zoom]:.3f}", selection.cmap,
                    label="activation"),
    key="activation_zoom", width="content",
)
on_picture = gc.overlay(selection.rgb, activations[zoom], cmap=selection.cmap, alpha=selection.alpha)
right.plotly_chart(figures.picture(on_picture, "Where it fires on the picture"), key="activation_overlay")
figures.download(lambda: on_picture, f"activation_{layer}_{zoom}.png")

show_code(
    f'activations = gc.FeatureMaps(clf.module, ["{layer}"])(x)["{layer}"][0]   # ({channels}, {height}, {width})\n'
    "order = activations.mean(dim=(1, 2)).argsort(descending=True)",
    gc.FeatureMaps,
    gc.hooks.capture_outputs,
)
