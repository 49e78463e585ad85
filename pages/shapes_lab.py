"""Shapes lab: train a GAP network from labels alone and watch its CAM learn where the object is."""

from dataclasses import dataclass, field

import numpy as np
import streamlit as st
from PIL import Image

import gradcam_core as gc
from gradcam_core import shapes
from ui import figures, layout, links, widgets
from ui.source import show_code

# A held-out picture (its seed lies outside the training seeds) watched while the network trains.
WATCHED_SEED = 987_654


@dataclass
class TrainingLog:
    """What one training run showed, kept in the session so the page can draw it again."""

    epochs: int
    accuracy: list[float] = field(default_factory=list)
    pointing: list[float] = field(default_factory=list)
    snapshots: list[tuple[str, np.ndarray]] = field(default_factory=list)


def settings_ui() -> tuple[int, int, int]:
    left, middle, right = st.columns(3)
    epochs = left.slider("Epochs", 1, 10, key=links.linked("lab_epochs", shapes.DEFAULT_EPOCHS, range(1, 11), int))
    images = middle.select_slider("Training images", [500, 1000, 2000, 4000],
                                  key=links.linked("lab_images", shapes.DEFAULT_TRAIN_SIZE, [500, 1000, 2000, 4000], int))
    seed = right.number_input("Seed", 0, 10_000, key=links.linked("lab_seed", 0, range(10_001), int),
                              help="The same seed trains the same network.")
    return epochs, images, int(seed)


def watched_cam(clf: gc.Classifier, picture: np.ndarray, x, label: int, cmap: str) -> np.ndarray:
    result = gc.CAM(clf.module, layer=clf.cam_layer, fc=clf.fc)(x, target=label)
    big = np.asarray(Image.fromarray(picture).resize((192, 192), Image.NEAREST))
    return gc.overlay(big, result.maps[clf.cam_layer][0], cmap=cmap, alpha=0.5)


def train_ui(epochs: int, images: int, seed: int, cmap: str) -> TrainingLog:
    """Train with a progress bar, redrawing the watched CAM and the curves after each epoch."""
    watched = shapes.render(1, WATCHED_SEED)
    label = int(watched.labels[0])
    log = TrainingLog(epochs)
    bar = st.progress(0.0, text="Training…")
    status = st.empty()
    left, right = st.columns([2, 3])
    snapshot_slot, curve_slot = left.empty(), right.empty()

    def on_epoch(epoch: int, clf: gc.Classifier, scores: dict[str, float]) -> None:
        log.accuracy.append(scores["accuracy"])
        log.pointing.append(scores["pointing_game"])
        log.snapshots.append((f"epoch {epoch}", watched_cam(clf, watched.pictures[0], watched.images, label, cmap)))
        status.markdown(f"After epoch {epoch} of {epochs}: held-out accuracy **{scores['accuracy']:.0%}**, "
                        f"pointing game **{scores['pointing_game']:.0%}** ({scores['seconds']:.0f} s).")
        snapshot_slot.image(figures.compact(log.snapshots[-1][1]),
                            caption=f"CAM for '{shapes.CLASSES[label]}' after epoch {epoch}",
                            width=320)
        curve_slot.plotly_chart(curves(log), key=f"lab_curves_live:{epoch}")

    def on_batch(done: int, total: int) -> None:
        if done % 10 == 0 or done == total:
            bar.progress(done / total, text=f"Training: batch {done} of {total}")

    clf = shapes.train("shapes_gap", epochs=epochs, n_train=images, seed=seed, on_epoch=on_epoch, on_batch=on_batch)
    bar.empty()
    status.empty()
    st.session_state["trained_classifier"] = clf
    st.session_state["trained_run"] = st.session_state.get("trained_run", 0) + 1
    return log


def curves(log: TrainingLog):
    return figures.line_chart({"held-out accuracy": log.accuracy, "CAM pointing game": log.pointing},
                              "Learning what, and learning where", "epoch")


def log_ui(log: TrainingLog) -> None:
    st.plotly_chart(curves(log), key="lab_curves")
    figures.show_grid(log.snapshots, columns=min(len(log.snapshots), 5), filename="cam_while_training.png")
    st.success(
        f"After {log.epochs} epochs: {log.accuracy[-1]:.0%} of held-out pictures classified right, and the CAM's "
        f"peak falls on the object in {log.pointing[-1]:.0%} of them, although the network was only ever told "
        "*which* shape, never *where*. Pick **Shapes: GAP, trained by you** in the sidebar to explore it "
        "on the other pages."
    )


selection = widgets.sidebar()
st.title("Shapes lab: train it yourself")
layout.lesson(
    f"Each picture holds one {', '.join(shapes.CLASSES[:-1])} or {shapes.CLASSES[-1]}, 24 to 40 pixels across, "
    "of any colour and place, on clutter. A small network with a GAP head learns to name the shape from labels alone. "
    "Below, the CAM of one held-out picture is redrawn after every epoch: watch the network learn *where* "
    "the shape is, and see the pointing game (is the map's peak on the object?) climb with the accuracy."
)
epochs, images, seed = settings_ui()
if st.button("Train a fresh GAP network", type="primary", key="lab_train"):
    st.session_state["training_log"] = train_ui(epochs, images, seed, selection.cmap)
    st.rerun()  # so the sidebar lists the new network
if "training_log" in st.session_state:
    log_ui(st.session_state["training_log"])
else:
    st.info(f"About {shapes.DEFAULT_EPOCHS} epochs take under a minute on a laptop's CPU.")

show_code(
    "clf = shapes.train('shapes_gap', epochs=..., n_train=..., seed=..., on_epoch=on_epoch)\n"
    "# after each epoch: gc.CAM(clf.module, layer=clf.cam_layer, fc=clf.fc)(x, target=label)",
    shapes.train,
)
