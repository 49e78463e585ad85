"""Grad-CAM at every depth: every block from one forward and one backward pass, and what changes with depth."""

import plotly.graph_objects as go
import streamlit as st
import torch
from plotly.subplots import make_subplots

import gradcam_core as gc
from gradcam_core import metrics
from ui import figures, layout, links, receptive_view, resources, widgets
from ui.source import show_code

TOP_SHARE = 0.1


def concentration(m: torch.Tensor) -> float:
    """The share of the map's total in its strongest 10% of cells (0.1 for a flat map, 1 for a point)."""
    values = m.flatten().clamp(min=0).sort(descending=True).values
    total = float(values.sum())
    return float(values[: max(1, round(TOP_SHARE * values.numel()))].sum()) / total if total > 0 else float("nan")


def curves(blocks: list[str], rows: dict[str, list[float]]) -> go.Figure:
    figure = make_subplots(rows=1, cols=len(rows), subplot_titles=list(rows))
    for column, values in enumerate(rows.values(), start=1):
        figure.add_trace(go.Scatter(x=list(range(1, len(blocks) + 1)), y=values, mode="lines+markers",
                                    text=blocks, hovertemplate="%{text}: %{y:.3g}<extra></extra>", showlegend=False),
                         row=1, col=column)
        figure.update_xaxes(title_text="block", row=1, col=column)
    figure.update_layout(height=300, **figures.COMPACT)
    return figure


selection = widgets.sidebar()
clf = selection.clf
blocks = clf.blocks
st.title("Grad-CAM at every depth")
layout.lesson(
    f"The Grad-CAM paper explains the last convolutional layer, where the maps are coarse and on the object; "
    f"earlier layers give sharper maps that light up edges everywhere. Here are all {len(blocks)} blocks of "
    f"{resources.MODEL_LABELS.get(selection.model, selection.model)}, from one forward and one backward pass. "
    "**Look for** the depth where the map stops following edges and starts following the object, and see why: "
    "each block's cells see more of the picture."
    + (" A Vision Transformer is the exception: its tokens keep one grid and can read the whole picture from the "
       "first attention on, so only what they have gathered changes with depth." if selection.family == "ViT" else "")
)
result = selection.explain(["grad_cam"], blocks)["grad_cam"]
try:
    fields = resources.receptive_fields(selection.model_key, tuple(blocks), clf)
except ValueError as error:  # a network of one's own may mix cells (channel shuffle, squeeze-and-excitation)
    fields = None
    if selection.family == "CNN":  # a transformer's: said once, under 'What does one cell see?'
        st.info(f"No receptive fields for this network: {error}")

depth = st.select_slider("Depth", options=blocks, key=links.linked("depth", blocks[-1], blocks, label="the block"))
left, right = st.columns(2)
m = result.maps[depth][0]
left.image(figures.compact(gc.overlay(selection.rgb, m, selection.cmap, selection.alpha)), width="stretch",
           caption=f"Grad-CAM for '{selection.class_name}' at {depth} (block {blocks.index(depth) + 1} of {len(blocks)})")
with right:
    st.metric("Cells", f"{m.shape[0]}x{m.shape[1]}")
    if fields is not None:
        st.metric("What one cell can see", f"{fields[depth].size}x{fields[depth].size} pixels",
                  help="The theoretical receptive field, padding included; the picture is "
                       f"{clf.input_size[0]}x{clf.input_size[1]}.")
    share = concentration(m)
    st.metric("Share of the map in its strongest 10% of cells", "no map (zero everywhere)" if share != share
              else f"{share:.0%}")

st.subheader("Every depth")
strip = [(f"{i + 1} · {block}", gc.overlay(selection.rgb, result.maps[block][0], selection.cmap, selection.alpha))
         for i, block in enumerate(blocks)]
figures.show_grid(strip, columns=min(8, len(strip)), filename=f"grad_cam_every_block_{selection.model}.png")

rows = {"cells a side": [result.maps[b].shape[-2] for b in blocks]}
if fields is not None:
    rows["receptive field (pixels a side)"] = [fields[b].size for b in blocks]
rows["mass in the strongest 10% of cells"] = [concentration(result.maps[b][0]) for b in blocks]
if selection.model.startswith("shapes"):
    mask = resources.shapes_sample(st.session_state["shapes_seed"]).masks[0]
    rows["on the shape? (pointing game)"] = [float(metrics.pointing_game(result.maps[b][0], mask)) for b in blocks]
st.plotly_chart(curves(blocks, rows), key="depth_curves")

st.subheader("What does one cell see?")
receptive_view.receptive_field_ui(selection, depth, m, key="depth_field")

st.caption(f"{len(blocks)} blocks explained in {1000 * result.pass_seconds:.0f} ms: one forward pass with every block "
           "hooked, then one backward pass to all of them at once.")
show_code(
    f"result = gc.GradCAM(clf.module, layers=clf.blocks)(x, target={selection.target})   # {len(blocks)} blocks\n"
    f"rf = gc.receptive_field(clf.module, '{depth}', {tuple(clf.input_size)})\n"
    "rf.size, rf.jump, rf.region(i, j)\n"
    f"gc.effective_receptive_field(clf.module, x, '{depth}', (i, j))",
    gc.receptive_field,
)
