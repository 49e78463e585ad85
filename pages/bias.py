"""Bias detective: a network that scores well for the wrong reason, found by its Grad-CAM, and the fix."""

import pandas as pd
import streamlit as st
import torch

import gradcam_core as gc
from gradcam_core import metrics, shapes
from ui import figures, layout, links, resources, shapes_view, widgets
from ui.source import show_code

NETWORKS = {"shapes_biased": "trained on the biased set", "shapes_debiased": "trained with the tag by chance"}
TAG_STORIES = {"tells the truth (the shape's own tag)": 1.0, "lies (another class's tag)": 0.0}
EVALUATION_PICTURES = 500


def training_set_ui() -> None:
    """Ten training pictures and the five tags: the shortcut in plain sight."""
    batch = shapes.render_biased(10, seed=0, bias=0.95)
    pictures = [(f"{shapes.CLASSES[int(label)]}, tag: {shapes.CLASSES[int(cue)]}", shapes_view.enlarged(picture, 128))
                for picture, label, cue in zip(batch.pictures, batch.labels, batch.cues)]
    figures.show_grid(pictures, columns=5, filename="biased_training_pictures.png")
    tags = [(f"{name} -> {shapes.CLASSES[k]}", figures.colorize(torch.from_numpy(pattern).float(), "gray"))
            for k, (name, pattern) in enumerate(shapes.CUE_PATTERNS.items())]
    st.caption("The five tags, and the class each goes with in the biased training set:")
    for column, (caption, rgb) in zip(st.columns(len(tags)), tags):
        column.image(figures.compact(rgb), caption=caption, width=96)


def picture_ui() -> tuple[int, float]:
    left, right = st.columns([1, 2])
    seed = left.number_input("Held-out picture", 0, 9_999, key=links.linked("bias_seed", 0, range(10_000), int),
                             help="Pictures the networks never saw; each number is another.")
    story = right.radio("The tag on it", list(TAG_STORIES), horizontal=True,
                        key=links.linked("bias_tag", list(TAG_STORIES)[0], TAG_STORIES))
    return int(seed) + shapes.EVALUATION_SEED, TAG_STORIES[story]


def maps_ui(selection: widgets.Selection, seed: int, bias: float) -> None:
    """Grad-CAM of each network's predicted class on one tagged picture, tag and object boxed."""
    batch = resources.biased_sample(seed, bias)
    truth, cue = shapes.CLASSES[int(batch.labels[0])], shapes.CLASSES[int(batch.cues[0])]
    st.caption(f"A **{truth}**, with the tag of **{cue}**. Green box: the object; red box: the tag.")
    for column, (network, how) in zip(st.columns(len(NETWORKS)), NETWORKS.items()):
        clf = resources.classifier(network)
        x = batch.images
        image_id = f"biased-{seed}-{bias}"
        probabilities = resources.probabilities(network, image_id, clf, x)
        predicted = int(probabilities.argmax())
        m = resources.explanation(("grad_cam",), network, image_id, (clf.cam_layer,), predicted, None, clf, x)[
            "grad_cam"].maps[clf.cam_layer]
        on_cue, on_object = (float(metrics.mass_in_masks(m, mask)[0]) for mask in (batch.cue_masks, batch.masks))
        with column:
            st.markdown(f"**{resources.MODEL_LABELS[network]}** ({how})")
            st.image(figures.compact(shapes_view.overlay_with_regions(
                batch.pictures[0], m[0], selection.cmap, selection.alpha,
                [(batch.masks[0], shapes_view.TRUTH_COLOUR), (batch.cue_masks[0], shapes_view.CUE_COLOUR)])),
                caption=f"says '{shapes.CLASSES[predicted]}' ({float(probabilities[predicted]):.0%}); "
                        f"Grad-CAM for that class", width="stretch")
            left, right = st.columns(2)
            left.metric("Map's mass on the tag", f"{on_cue:.0%}", help="Its area is 1.6% of the picture.")
            right.metric("On the object", f"{on_object:.0%}")


def measurement_ui(rows: list[shapes.BiasEvaluation]) -> None:
    table = pd.DataFrame([{
        "network": r.network, "test set": r.test_set, "accuracy": r.accuracy,
        "follows a tag that lies": r.follows_cue, "map's mass on the tag": r.mass_on_cue,
        "on the object": r.mass_on_object, "map's peak on the tag": r.pointing_cue,
        "peak on the object": r.pointing_object,
    } for r in rows])
    numbers = [c for c in table.columns if c not in ("network", "test set")]
    table[numbers] = table[numbers] * 100
    percent = st.column_config.NumberColumn(format="%.1f%%")
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={c: percent for c in table.columns if c not in ("network", "test set")})
    st.caption(f"{EVALUATION_PICTURES} held-out pictures per test set; Grad-CAM at layer4 for the predicted class. "
               "A map spread evenly would put 1.6% of its mass on the tag.")


selection = widgets.sidebar()
st.title("Bias detective")
layout.lesson(
    "The Grad-CAM paper (Section 6.3) trained a doctor-vs-nurse classifier on image-search results in which most "
    "doctors were men and most nurses women. It scored well on its own kind of data and badly on a gender-balanced "
    "test set, and Grad-CAM showed why: it looked at faces and hair, not at stethoscopes or coats. Retrained on a "
    "balanced set, it looked at the right things and generalized better. **Look for** a map that sits on something "
    "that should not matter."
)
st.subheader("1 · A training set with a shortcut")
st.markdown(
    "Here each training picture carries a small tag, like a photographer's watermark. In 95% of them the tag's "
    "pattern goes with the shape's class. The network `shapes_biased` learned from these pictures; "
    "`shapes_debiased` from the same pictures with the tag drawn at random, as the paper's fix added the missing "
    "examples."
)
training_set_ui()

rows = resources.bias_evaluations(EVALUATION_PICTURES)
biased_like, biased_fair = rows[0], rows[1]
st.subheader("2 · High accuracy…")
left, right = st.columns(2)
left.metric("shapes_biased on pictures tagged like its training set", f"{biased_like.accuracy:.1%}")
right.metric("…and on pictures whose tag is random", f"{biased_fair.accuracy:.1%}",
             f"{100 * (biased_fair.accuracy - biased_like.accuracy):+.1f} points", delta_color="normal")

st.subheader("3 · …but look at the maps")
st.markdown("Choose a picture, and whether its tag tells the truth. Which network looks at the shape?")
seed, bias = picture_ui()
maps_ui(selection, seed, bias)

st.subheader(f"4 · Measured on {EVALUATION_PICTURES} pictures per test set")
measurement_ui(rows)
st.success(
    f"`shapes_biased` follows a lying tag {biased_fair.follows_cue:.0%} of the time, and its map's peak is on the tag "
    f"in {biased_fair.pointing_cue:.0%} of the pictures: the map gives the shortcut away before any fair test set "
    f"exists. With the tag made independent of the class, `shapes_debiased` ignores it "
    f"({rows[3].accuracy:.0%} accurate on the fair set, its peak on the object in {rows[3].pointing_object:.0%})."
)

show_code(
    "batch = shapes.render_biased(500, seed, bias=shapes.CHANCE_BIAS)   # the fair test set\n"
    "clf = gc.load_model('shapes_biased')\n"
    "predicted = clf.predict(batch.images).argmax(1)\n"
    "m = gc.GradCAM(clf.module, layers=['layer4'])(batch.images, target=predicted).maps['layer4']\n"
    "gc.metrics.mass_in_masks(m, batch.cue_masks), gc.metrics.pointing_game_hits(m, batch.cue_masks)",
    shapes.evaluate_bias,
    gc.metrics.mass_in_masks,
)
