"""CAM on a GAP network: the head drawn out, the map, and the map taken apart channel by channel."""

import streamlit as st
import torch

import gradcam_core as gc
from gradcam_core import metrics, shapes
from gradcam_core.explainers.base import Result
from ui import figures, layout, resources, shapes_view, widgets
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
        if selection.family != "CNN":
            st.info(
                f"**This lesson needs a CNN.** {refusal} Page 3 (Grad-CAM, layer by layer) does so for this "
                "network, and page 19 (CNN or transformer?) sets it against a GAP network; the pooling lesson "
                "below uses two shapes CNNs whatever the sidebar's model."
            )
        else:
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
        st.image(figures.compact(picture),
                 caption=f"Grad-CAM at {clf.cam_layer} for '{selection.class_name}'", width="stretch")
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


POOLING_NETWORKS = {"shapes_gap": "global AVERAGE pooling", "shapes_gmp": "global MAX pooling"}
POOLING_PICTURES = 500


def pooling_ui(selection: widgets.Selection) -> None:
    """CAM of the GAP and the GMP network on one shapes picture, then both measured on held-out pictures."""
    seed = st.session_state.get("shapes_seed", 0)
    batch = resources.shapes_sample(seed)
    columns = st.columns(len(POOLING_NETWORKS))
    for column, (network, pooling) in zip(columns, POOLING_NETWORKS.items()):
        clf = resources.classifier(network)
        target = int(batch.labels[0])
        m = resources.explanation(("cam",), network, f"shapes-{seed}", (clf.cam_layer,), target, {"cam": {"fc": clf.fc}},
                                  clf, batch.images)["cam"].maps[clf.cam_layer]
        covered = float(metrics.mask_coverages(m, batch.masks, shapes.TIGHT_THRESHOLD)[0])
        iou = float(metrics.mask_ious(m, batch.masks, shapes.TIGHT_THRESHOLD)[0])
        with column:
            picture = shapes_view.overlay_with_regions(batch.pictures[0], m[0], selection.cmap, selection.alpha,
                                                       [(batch.masks[0], shapes_view.TRUTH_COLOUR)])
            st.image(figures.compact(picture),
                     caption=f"{network}: {pooling}. CAM for '{shapes.CLASSES[target]}'", width="stretch")
            left, right = st.columns(2)
            left.metric("Shape covered", f"{covered:.0%}",
                        help="The share of the shape's pixels where the map is above half its peak.")
            right.metric("Mask IoU", f"{iou:.2f}", help="That region against the shape: overlap over union.")
    rows = resources.cam_evaluations(tuple(POOLING_NETWORKS), POOLING_PICTURES)
    st.dataframe(
        {"network": [r.name for r in rows], "accuracy": [100 * r.accuracy for r in rows],
         **{label: [100 * getattr(r.localizations[0], field) for r in rows] for label, field in
            [("pointing game", "pointing_game"), ("box IoU > 0.5 (15%)", "box_iou"),
             ("box IoU > 0.5 (50%)", "box_iou_tight"), ("shape covered (50%)", "coverage"),
             ("mask IoU (50%)", "mask_iou"), ("mass on the shape", "mass_on_object")]}},
        hide_index=True, width="stretch",
        column_config={c: st.column_config.NumberColumn(format="%.1f%%") for c in
                       ["accuracy", "pointing game", "box IoU > 0.5 (15%)", "box IoU > 0.5 (50%)",
                        "shape covered (50%)", "mask IoU (50%)", "mass on the shape"]},
    )
    gap, gmp = (r.localizations[0] for r in rows)
    st.caption(f"CAM at layer4 for the true class, on {POOLING_PICTURES} held-out pictures "
               "(`python -m gradcam_core.shapes evaluate` prints the same for every network).")
    st.info(f"Measured: above half its peak, the GAP network's map covers **{gap.coverage:.0%}** of the shape, the GMP "
            f"network's **{gmp.coverage:.0%}**: average pooling finds more of the object, as the paper says. But the "
            f"GAP map also spills past these small shapes, so the loose 15% box fits the GMP map better "
            f"({gmp.box_iou:.0%} against {gap.box_iou:.0%}), while at 50% the GAP box wins ({gap.box_iou_tight:.0%} "
            f"against {gmp.box_iou_tight:.0%}). Which pooling 'localizes better' depends on how you threshold.")


selection = widgets.sidebar()
clf = selection.clf
layer = clf.cam_layer
st.title("CAM: the map a GAP network gives for free")
layout.lesson(
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

st.subheader("Average or max? Why CAM's networks end in global average pooling")
st.markdown(
    "CAM's paper (Section 2) compares global average pooling with global max pooling. With the max, each channel's "
    "score is its single strongest cell, so training rewards one discriminative part; with the average, every cell "
    "of the object adds to the score, so training rewards finding *all* of it. Both heads give CAM's map "
    "$\\sum_k w_k^c A^k$. Two shapes networks, trained alike but for the pooling, on one shapes picture (the green "
    "box is the shape; with a shapes model in the sidebar, its 'New image' draws another). **Look for** how much of the shape each map covers."
)
pooling_ui(selection)

show_code(
    f"result = gc.CAM(clf.module, layer='{layer}', fc='{clf.fc}')(x, target={selection.target})\n"
    f"result.maps['{layer}']      # ReLU(sum_k w_k^c A^k), at the layer's resolution\n"
    f"result.weights['{layer}']   # w_k^c, the row of fc.weight for the class\n"
    f"result.activations['{layer}']   # A^k",
    gc.CAM,
)
