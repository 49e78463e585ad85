"""Which map to trust? Faithfulness curves, the sanity check, and every method measured."""

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch
from PIL import Image

import gradcam_core as gc
from ui import figures, layout, links, resources, widgets
from ui.source import show_code

DEFAULT_METHODS = ["grad_cam", "grad_cam_plus_plus", "saliency", "guided_backprop"]
SANITY_METHODS = ["grad_cam", "guided_backprop"]
DELETION_SHOWN = [0.0, 0.05, 0.15, 0.3, 0.5]
LIVE_PICTURES = 40


def methods_ui(clf: gc.Classifier) -> tuple[list[str], str]:
    left, right = st.columns([3, 1])
    offered = gc.methods_for(clf.module)
    methods = left.multiselect("Methods", list(offered), key=links.linked(
                                   "trust_methods", list(DEFAULT_METHODS), parse=links.names,
                                   valid=lambda chosen: set(chosen) <= set(offered), label="the methods"),
                               format_func=lambda n: gc.METHODS[n].label,
                               help="The slow methods (" + ", ".join(m.label for m in offered.values() if m.slow)
                               + ") take a while on ImageNet models.")
    with right:
        layer = widgets.layer_ui(clf, "Layer of the layer methods", key="trust_layer")
    return methods, layer


def rgb_of(clf: gc.Classifier, x: torch.Tensor) -> np.ndarray:
    """A model input ``(3, H, W)`` back to the picture it was made from."""
    mean, std = torch.tensor(clf.mean).view(3, 1, 1), torch.tensor(clf.std).view(3, 1, 1)
    return (((x * std + mean).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())


def curves_ui(curves: dict, kind: int, title: str) -> go.Figure:
    figure = go.Figure()
    for method, entry in curves.items():
        curve = entry[kind]
        figure.add_trace(go.Scatter(x=curve.fractions.numpy(), y=curve.probabilities[0].numpy(), mode="lines",
                                    name=f"{gc.METHODS[method].label} (AUC {float(curve.auc[0]):.3f})"))
    figure.update_layout(title=title, height=360, xaxis=dict(title="share of the pixels", tickformat=".0%"),
                         yaxis=dict(title="probability of the class", range=[0, 1.02]), **figures.COMPACT)
    return figure


def deletion_strip_ui(selection: widgets.Selection, methods: list[str], layer: str) -> None:
    shown = st.selectbox("Watch one method delete", methods, format_func=lambda n: gc.METHODS[n].label,
                         key=links.linked("deleting", methods[0], methods, label="the method"))
    result = selection.explain([shown], [layer])[shown]
    images = gc.metrics.deletion_steps(selection.x, resources.pixel_map(result, layer), DELETION_SHOWN)
    probabilities = selection.clf.predict(images)[:, selection.target]
    pictures = [(f"{f:.0%} deleted: p = {float(p):.2f}", rgb_of(selection.clf, image))
                for f, image, p in zip(DELETION_SHOWN, images, probabilities)]
    side = selection.rgb.shape[:2]
    pictures = [(t, np.asarray(Image.fromarray(p).resize(side[::-1], Image.NEAREST))) for t, p in pictures]
    figures.show_grid(pictures, columns=len(pictures), filename=f"deletion_{shown}_{selection.target}.png")


def sanity_ui(selection: widgets.Selection, layer: str) -> None:
    clf = selection.clf
    fast = [name for name, method in gc.methods_for(clf.module).items() if not method.slow]
    methods = st.multiselect("Methods to check", fast, key=links.linked(
                                 "sanity_methods", list(SANITY_METHODS), parse=links.names,
                                 valid=lambda chosen: set(chosen) <= set(fast) and len(chosen) <= 4, label="the methods"),
                             format_func=lambda n: gc.METHODS[n].label,
                             max_selections=4, help="Each needs one map per randomization step; the slow "
                             "methods are left out here, they would need hundreds of passes per step.")
    if not methods:
        return
    randomized = (clf.fc, *reversed(clf.stages))
    checks = resources.sanity_check(tuple(methods), selection.model_key, selection.picture.image_id, layer,
                                    selection.target, randomized, clf, selection.x)
    steps = next(iter(checks.values())).steps
    st.caption("Columns: the original map, then the network with its top re-initialized, one stage more each "
               f"column ({', '.join(randomized)}). Each map on its own scale, |value| shown.")
    pictures = []
    for method, check in checks.items():
        for step, m in zip(steps, check.maps):
            label = "original" if step == "original" else f"random to {step.split(' + ')[-1]}"
            pictures.append((f"{gc.METHODS[method].label}: {label}", gc.maps.heat_image(m[0].abs(), "gray")))
    figures.show_grid(pictures, columns=len(steps), filename=f"sanity_{selection.target}.png")
    columns = st.columns(len(gc.sanity.MEASURES))
    for column, (measure, name) in zip(columns, gc.sanity.MEASURES.items()):
        figure = go.Figure([go.Scatter(x=[s.split(" + ")[-1] for s in steps], y=check.similarity[measure],
                                       mode="lines+markers", name=gc.METHODS[method].label)
                            for method, check in checks.items()])
        figure.update_layout(title=name, height=300, yaxis=dict(range=[-1.05, 1.05]), showlegend=column is columns[0],
                             legend=dict(orientation="h", y=-0.3), **figures.COMPACT)
        column.plotly_chart(figure, key=f"sanity_{measure}")
    after_top = {gc.METHODS[m].label: c.similarity["spearman_abs"][2] for m, c in checks.items() if len(steps) > 2}
    if after_top:
        st.info("With the classifier and the last stage re-initialized, the rank correlation of |map| with the "
                "original is " + ", ".join(f"**{k}: {v:.2f}**" for k, v in after_top.items()) + ". A map that still "
                "looks like the original explains the image, not the trained network.")


def evaluation_ui(selection: widgets.Selection) -> list[gc.evaluation.MethodScores] | None:
    shipped = gc.evaluation.load_scores(selection.model)
    if shipped is not None:
        meta, rows = shipped
        st.caption(f"Shipped with the app: `python -m gradcam_core evaluate --model {selection.model}` on "
                   f"{meta['description']}; layer methods at {meta['layer']}.")
        located = meta["located"]
    else:
        # Not in the URL: a shared link must not start minutes of work in every student's browser.
        if not st.toggle(f"Measure every method live on {LIVE_PICTURES} pictures (minutes)", key="trust_live"):
            st.caption("No shipped table for this model. The toggle runs a small one here, with a progress bar.")
            return None
        rows = resources.evaluation_table(selection.model_key, LIVE_PICTURES, selection.clf)
        located = selection.model.startswith("shapes")
    st.markdown(gc.evaluation.markdown_table(rows, located=located))
    return rows


selection = widgets.sidebar()
clf = selection.clf
st.title("Which map to trust?")
layout.lesson(
    "The gallery shows maps that disagree. Three kinds of evidence help choose. **Faithfulness**: delete the "
    "pixels a map calls important and the class should fade fast; put them back into a blurred copy and it "
    "should return fast (Petsiuk et al. 2018). **Sanity**: re-initialize the network's weights and a map that "
    "explains the *network* must change (Adebayo et al. 2018). **Measurement**: every method scored on many "
    "pictures, on ground truth where we have it."
)
methods, layer = methods_ui(clf)
if not methods:
    st.info("Pick at least one method.")
    st.stop()

st.header("Deletion and insertion")
st.latex(r"\text{AUC}_{\text{deletion}} = \int_0^1 p^c(x \setminus \text{top-}f)\,df \;(\text{lower is better}),\qquad "
         r"\text{AUC}_{\text{insertion}} = \int_0^1 p^c(\text{blur}(x) \cup \text{top-}f)\,df \;(\text{higher})")
try:
    curves = resources.faithfulness(tuple(methods), selection.model_key, selection.picture.image_id, layer,
                                    selection.target, 50, clf, selection.x)
except ValueError as refusal:  # CAM at a layer or on a head it does not apply to
    st.error(f"{refusal} Leave that method out, or pick another layer.")
    st.stop()
left, right = st.columns(2)
left.plotly_chart(curves_ui(curves, 0, f"Deletion: '{selection.class_name}' fades as pixels go"), key="deletion")
right.plotly_chart(curves_ui(curves, 1, "Insertion: it returns as pixels come back"), key="insertion")
deletion_strip_ui(selection, methods, layer)
st.dataframe(
    {"method": [gc.METHODS[m].label for m in curves],
     "Average Drop % (lower is better)": [round(v[2][0], 1) for v in curves.values()],
     "probability rose (Increase in Confidence)": ["yes" if v[2][1] > 0 else "no" for v in curves.values()]},
    hide_index=True,
)
st.caption("Average Drop: the image multiplied by the map scaled to [0, 1]; how much of the class's probability "
           "is lost (Chattopadhyay et al. 2018).")

st.header("The sanity check")
sanity_ui(selection, layer)

st.header(f"Every method measured on {clf.name}")
rows = evaluation_ui(selection)
st.markdown(
    "**The trade-off the Grad-CAM paper names: faithfulness against interpretability.** The pixel-space rows "
    "(saliency, guided backprop, deconvnet) are sharp and easy to read, yet the sanity check above shows that "
    "guided backprop's picture survives the randomization of the top of the network, and their pointing game "
    "and mask IoU (where there is ground truth) trail the CAM rows: they draw the image more than the decision. "
    "The CAM family follows the network, but at its layer's coarse resolution. Compare the insertion and "
    "deletion columns of the two groups, and the rank correlation with occlusion, the Grad-CAM paper's own "
    "measure of faithfulness."
)

show_code(
    f"m = gc.explain(clf.module, x, {selection.target}, ['{layer}'], ['{methods[0]}'])['{methods[0]}'].maps['{layer}']\n"
    f"gc.metrics.deletion(clf.module, x, m, {selection.target}).auc, gc.metrics.insertion(clf.module, x, m, "
    f"{selection.target}).auc\n"
    f"gc.metrics.average_drop(clf.module, x, m, {selection.target})\n"
    f"gc.sanity.cascading_randomization(clf.module, x, {selection.target}, 'guided_backprop', "
    f"['{clf.fc}', *reversed({clf.stages})], '{layer}')",
    gc.metrics.deletion,
    gc.sanity.cascading_randomization,
    gc.sanity.similarity,
)
