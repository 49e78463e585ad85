"""What a unit wants to see: activation maximization for a class or a channel, DeepVis's three views of a unit,
and the concepts a whole layer splits the picture into (Deep Feature Factorization)."""

from html import escape

import numpy as np
import streamlit as st
import torch

import gradcam_core as gc
from gradcam_core import synthesis
from ui import figures, layout, links, resources, shapes_view, widgets
from ui.source import show_code

STRONGEST = 3
KINDS = ["a class", "a channel of a layer"]
CONCEPT_COUNTS = range(2, 9)
# Eight colours told apart at a glance (matplotlib's tab10 without its grey and olive).
CONCEPT_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def class_ui(selection: widgets.Selection) -> int:
    """A class: the shipped gallery's first, then every other class by name."""
    clf = selection.clf
    shipped = [entry["target"] for entry in resources.synthesis_gallery()
               if entry["model"] == selection.model and "target" in entry]
    order = shipped + [c for c in range(len(clf.categories)) if c not in shipped]
    return st.selectbox("Class", order, format_func=lambda c: clf.categories[c] + (" (ready)" if c in shipped else ""),
                        key=links.linked("unit_class", order[0], order, int, "the class"),
                        help="The ready ones ship with the app; any other takes a few seconds to compute.")


def channel_ui(selection: widgets.Selection) -> tuple[str, int]:
    """A layer and a channel: by default the channel most active on the sidebar's picture."""
    clf = selection.clf
    left, right = st.columns(2)
    with left:
        layer = widgets.layer_ui(clf, key="unit_layer")
    maps = resources.feature_maps(selection.model_key, selection.picture.image_id, layer, clf, selection.x)
    most_active = int(maps.mean(dim=(1, 2)).argmax())
    channel = right.number_input(f"Channel (0 to {len(maps) - 1})", 0, len(maps) - 1,
                                 key=links.linked("unit_channel", most_active, range(len(maps)), int, "the channel",
                                                  context=(selection.model_key, selection.picture.image_id, layer)),
                                 help=f"Starts at the channel most active on your picture (#{most_active}).")
    return layer, int(channel)


def shown(selection: widgets.Selection, rgb):
    """A shapes network's 64x64 picture blown up with crisp pixels; a photo as it is."""
    return shapes_view.enlarged(rgb) if selection.model.startswith("shapes") else rgb


def synthesized_ui(selection: widgets.Selection, picture, what: str) -> None:
    clf = selection.clf
    st.image(figures.compact(shown(selection, picture)),
             caption=f"The picture that excites {what} most", width="stretch")
    probabilities = resources.probabilities(selection.model_key, f"synthesized-{resources.digest(picture.tobytes())}",
                                            clf, clf.preprocess(picture))
    top = probabilities.topk(3).indices.tolist()
    st.caption("The network calls it: " + ", ".join(f"'{clf.categories[c]}' ({float(probabilities[c]):.0%})"
                                                  for c in top))


def concept_controls_ui(clf: gc.Classifier) -> tuple[str, int]:
    """A stage of the model and how many concepts to split it into."""
    left, right = st.columns(2)
    with left:
        layer = widgets.layer_ui(clf, key="concept_layer")
    count = right.slider("Concepts", CONCEPT_COUNTS[0], CONCEPT_COUNTS[-1],
                         key=links.linked("concepts", 4, CONCEPT_COUNTS, int, "the number of concepts"),
                         help="How many parts the factorization splits the layer's activations into.")
    return layer, int(count)


def painted(rgb: np.ndarray, maps: torch.Tensor, alpha: float) -> tuple[np.ndarray, list[float]]:
    """Each pixel in the colour of its strongest concept, as opaque as that concept is strong there (each
    concept's map scaled to [0, 1], as pytorch-grad-cam shows them); and each concept's share of the pixels."""
    height, width = rgb.shape[:2]
    strength, winner = gc.upsample(gc.normalize(maps), (height, width)).max(dim=0)
    colours = torch.tensor([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in CONCEPT_COLOURS], dtype=torch.float32)
    opacity = (alpha * strength)[..., None]
    picture = torch.from_numpy(rgb[..., :3]).float() * (1 - opacity) + colours[winner] * opacity
    shares = (torch.bincount(winner.flatten(), minlength=len(maps)) / winner.numel()).tolist()
    return picture.round().byte().numpy(), shares


def legend_ui(clf: gc.Classifier, scores: torch.Tensor | None, shares: list[float]) -> None:
    """One line per concept: its colour, its share of the picture and, when the head can score it, its top
    classes."""
    lines = []
    for j, share in enumerate(shares):
        swatch = (f'<span style="display:inline-block;width:0.9em;height:0.9em;border-radius:2px;'
                  f'background:{CONCEPT_COLOURS[j]};vertical-align:middle"></span>')
        line = f"{swatch} **Concept {j + 1}**: {share:.0%} of the picture"
        if scores is not None:
            line += " · " + ", ".join(f"'{escape(clf.categories[c])}'" for c in scores[j].topk(3).indices.tolist())
        lines.append(line)
    st.markdown("  \n".join(lines), unsafe_allow_html=True)


def concepts_ui(selection: widgets.Selection) -> str:
    """Deep Feature Factorization of a stage on the sidebar's picture; returns the call it makes."""
    clf = selection.clf
    st.subheader("Concepts in a layer (Deep Feature Factorization)")
    layout.lesson(
        "A channel is one unit; a whole layer says more. Deep Feature Factorization (Collins et al. 2018) splits "
        "the layer's activations, every position of the picture at once, into a few non-negative parts: each "
        "part is a mix of channels (a *concept*) and a map of where it is. **Look for** concepts that follow "
        "objects and their parts in the late stages, and colours and textures in the early ones."
    )
    st.latex(r"A \approx W H,\quad W \ge 0 \text{ (channels} \times \text{concepts)},\quad "
             r"H \ge 0 \text{ (concepts} \times \text{positions)}")
    layer, count = concept_controls_ui(clf)
    found, no_names = resources.concepts(selection.model_key, selection.picture.image_id, layer, count, clf,
                                         selection.x)
    picture, shares = painted(selection.rgb, found.maps[0], selection.alpha)
    left, right = st.columns(2)
    left.image(figures.compact(picture), width="stretch",
               caption=f"{count} concepts of {layer}: each pixel in the colour of its strongest concept")
    with right:
        legend_ui(clf, found.scores, shares)
        if no_names:
            st.caption(f"No class names: {no_names}")
        else:
            st.caption("Classes: the head applied to each concept's channel mix, as if the picture held only that "
                       "concept.")
    fc = "" if no_names else f", fc='{clf.fc}'"
    return f"gc.deep_feature_factorization(clf.module, x, '{layer}', concepts={count}{fc})"


selection = widgets.sidebar()
clf = selection.clf
st.title("What a unit wants to see")
layout.lesson(
    "Grad-CAM shows where a network looked; this shows what it looks *for*. DeepVis (Yosinski et al. 2015) starts "
    "from noise and changes the picture, step by step, to excite one unit as much as possible; kept natural by a few "
    "regularizers (here Olah et al.'s 2017 recipe: a Fourier-space picture, natural colour axes, random jitter, "
    "scale and rotation at every step), the result shows the unit's favourite colours, textures and parts. "
    "**Look for** the class's colours and textures, repeated everywhere: the unit does not care where they are."
)
st.latex(r"x^* = \arg\max_x\; a_{\text{unit}}(x) \quad\text{by}\quad x \leftarrow x + \eta\,"
         r"\nabla_x\, a_{\text{unit}}\big(T(x)\big),\; T \text{ a random jitter, scale and rotation}")
kind = st.segmented_control("Excite", KINDS, key=links.linked("excite", KINDS[0], KINDS, label="what to excite")) \
    or KINDS[0]
if kind == "a class":
    target = class_ui(selection)
    left, right = st.columns([3, 2])
    with left:
        picture = resources.synthesized(selection.model_key, target, None, None, clf)
        synthesized_ui(selection, picture, f"'{clf.categories[target]}'")
    with right:
        st.markdown(f"For comparison: Grad-CAM of **'{clf.categories[target]}'** on the sidebar's picture.")
        m = selection.explain(["grad_cam"], [clf.cam_layer], target=target)["grad_cam"].maps[clf.cam_layer][0]
        st.image(figures.compact(gc.overlay(selection.rgb, m, selection.cmap, selection.alpha)), width="stretch")
    call = f"synthesis.visualize(clf, target={target})   # (3, H, W) in [0, 1]"
else:
    layer, channel = channel_ui(selection)
    st.markdown("DeepVis's three views of one unit: what excites it most, where it fires on your picture, and which "
                "real pictures excite it most.")
    columns = st.columns(3)
    with columns[0]:
        picture = resources.synthesized(selection.model_key, None, layer, channel, clf)
        synthesized_ui(selection, picture, f"channel {channel} of {layer}")
    with columns[1]:
        maps = resources.feature_maps(selection.model_key, selection.picture.image_id, layer, clf, selection.x)
        st.image(figures.compact(gc.overlay(selection.rgb, maps[channel], selection.cmap, selection.alpha)),
                 width="stretch",
                 caption=f"Channel {channel} on your picture (mean {float(maps[channel].mean()):.3g})")
    with columns[2]:
        for name, rgb, m, mean in resources.strongest_pictures(selection.model_key, layer, channel, STRONGEST, clf):
            st.image(figures.compact(gc.overlay(shown(selection, rgb), m, selection.cmap, selection.alpha)),
                     width="stretch",
                     caption=f"{name}: mean {mean:.3g}")
    call = f"synthesis.visualize(clf, layer='{layer}', channel={channel})"

concepts_call = concepts_ui(selection)
show_code(call + "\n" + concepts_call, synthesis.visualize, gc.deep_feature_factorization)
