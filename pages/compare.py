"""CAM vs Grad-CAM: the same map where both apply, and only Grad-CAM elsewhere."""

import streamlit as st
import torch

import gradcam_core as gc
from gradcam_core.explainers.cam import CAM
from ui import figures, layout, widgets
from ui.source import show_code


def agreement(cam: torch.Tensor, grad_cam: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """The difference of the normalized maps, its largest size, and their correlation."""
    difference = gc.normalize(cam) - gc.normalize(grad_cam)
    return difference, float(difference.abs().max()), gc.maps.correlation(cam, grad_cam)


selection = widgets.sidebar()
clf = selection.clf
st.title("CAM vs Grad-CAM")
layout.lesson(
    "At the last convolutional layer of a network whose head is global average pooling and one linear "
    "layer, $y^c = \\sum_k w_k^c \\frac{1}{Z}\\sum_{ij} A^k_{ij}$, so "
    "$\\partial y^c / \\partial A^k_{ij} = w_k^c / Z$ everywhere and Grad-CAM's $\\alpha_k^c$ is CAM's "
    "$w_k^c$ divided by $Z$: after normalization the two maps are the same. At any other layer only "
    "Grad-CAM applies."
)
st.latex(r"\alpha_k^c = \frac{1}{Z}\sum_{ij}\frac{\partial y^c}{\partial A^k_{ij}} = \frac{w_k^c}{Z}"
         r"\quad\Rightarrow\quad L^c_{\text{Grad-CAM}} = \frac{1}{Z}\,L^c_{\text{CAM}}")
layer = widgets.layer_ui(clf, key="compare_layer")
grad_cam = selection.explain(["grad_cam"], clf.stages)["grad_cam"].maps[layer][0]
try:
    cam = selection.explain(["cam"], [layer])["cam"].maps[layer][0]
except ValueError as refusal:
    cam = None
    if selection.family != "CNN":
        st.info(f"**This comparison needs a CNN with a GAP head.** {refusal} Page 3 (Grad-CAM, layer by layer) does "
                "so for this network, and page 19 (CNN or transformer?) sets it against a GAP network.")
    else:
        st.warning(f"**CAM does not apply at {layer}.** It says: {refusal}")

columns = st.columns(3)
columns[1].image(figures.compact(gc.overlay(selection.rgb, grad_cam, selection.cmap, selection.alpha)),
                 caption=f"Grad-CAM at {layer}", width="stretch")
if cam is None and selection.family != "CNN":
    figures.download(lambda: gc.overlay(selection.rgb, grad_cam, selection.cmap, selection.alpha),
                     f"grad_cam_{layer}_{selection.target}.png")
elif cam is None:
    columns[0].markdown(
        f"CAM needs the layer right before global average pooling ({clf.cam_layer}). From {layer}, more "
        "convolutions lie between the map and the score, so no weight $w_k^c$ links a channel to the class. "
        "Grad-CAM gets its weights from gradients instead, so it still gives a map."
    )
    figures.download(lambda: gc.overlay(selection.rgb, grad_cam, selection.cmap, selection.alpha),
                     f"grad_cam_{layer}_{selection.target}.png")
else:
    difference, largest, r = agreement(cam, grad_cam)
    columns[0].image(figures.compact(gc.overlay(selection.rgb, cam, selection.cmap, selection.alpha)),
                     caption=f"CAM at {layer}", width="stretch")
    columns[2].plotly_chart(
        figures.heatmap(difference, "normalized CAM minus normalized Grad-CAM", "coolwarm", height=300,
                        label="difference", value_range=(-1.0, 1.0)),
        key="compare_difference", width="content",
    )
    st.metric("Correlation of the two maps", f"{r:.6f}")
    st.metric("Largest difference after normalization", f"{largest:.2e}")
    st.success(
        f"At {layer} CAM and Grad-CAM agree to {largest:.1e} (floating-point rounding): Grad-CAM generalizes CAM. "
        "Pick an earlier layer to see where only Grad-CAM gives a map."
    )
    figures.download(
        lambda: figures.grid_png([("CAM", gc.overlay(selection.rgb, cam, selection.cmap, selection.alpha)),
                                  ("Grad-CAM", gc.overlay(selection.rgb, grad_cam, selection.cmap, selection.alpha))], 2),
        f"cam_vs_grad_cam_{layer}_{selection.target}.png",
    )

show_code(
    f"cam = gc.CAM(clf.module, layer='{layer}', fc='{clf.fc}')(x, target={selection.target}).maps['{layer}'][0]\n"
    f"grad_cam = gc.GradCAM(clf.module, layers={clf.stages})(x, target={selection.target}).maps['{layer}'][0]\n"
    "difference = gc.normalize(cam) - gc.normalize(grad_cam)",
    CAM._check_head,
    gc.GradCAM.channel_weights,
)
