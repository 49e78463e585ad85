"""Home: what the app shows, a path through the pages, and which models are ready."""

import streamlit as st

import gradcam_core as gc
from gradcam_core import shapes
from ui import resources, widgets


def download_ui() -> None:
    """ResNet34's weights: a button with a real progress bar, and a plain note when offline."""
    if resources.resnet34_ready():
        st.success(f"**ResNet34** is ready ({gc.models.weights_path('resnet34')}).")
        return
    st.info(
        "**ResNet34** needs its ImageNet weights (83 MB), downloaded once into the torch cache. "
        "Until then the pages use EfficientNet-Lite0, and every page works."
    )
    if st.button("Download ResNet34's ImageNet weights", key="download_resnet34"):
        bar = st.progress(0.0, text="Connecting…")
        shown = {"percent": -1}

        def progress(done: int, total: int) -> None:
            percent = int(100 * done / total) if total else 0
            if percent != shown["percent"]:
                shown["percent"] = percent
                bar.progress(percent / 100, text=f"{done / 1e6:.0f} of {total / 1e6:.0f} MB" if total else f"{done / 1e6:.0f} MB")

        try:
            gc.download_weights("resnet34", progress=progress)
        except gc.WeightsUnavailableError as error:
            bar.empty()
            st.warning(f"No download: {error}")
        else:
            st.rerun()


selection = widgets.sidebar()
st.title("Where does a CNN look when it decides?")
widgets.lesson(
    f"""
A convolutional network turns a picture into a class. These pages open it up and show **where** it
looked: the feature maps it computes, the maps of CAM, Grad-CAM and the methods that followed it,
which weigh those feature maps by how much they raise the score of one class, and the pictures of
the methods that send the score back to the pixels. The gallery sets all {len(gc.METHODS)} side by side.

Pick a model, an image and a class in the sidebar; your choice follows you from page to page.
"""
)
left, right = st.columns([3, 2])
with left:
    st.subheader("A path through the pages")
    st.page_link("pages/activations.py", label="1 · Activations: what each layer responds to", icon=":material/grid_view:")
    st.page_link("pages/cam.py", label="2 · CAM: the map a GAP network gives for free", icon=":material/functions:")
    st.page_link("pages/grad_cam.py", label="3 · Grad-CAM from layer1 to layer4", icon=":material/layers:")
    st.page_link("pages/guided.py", label="4 · Saliency, guided backprop, deconvnet, and Guided Grad-CAM", icon=":material/blur_on:")
    st.page_link("pages/compare.py", label="5 · CAM vs Grad-CAM: the same map, where both apply", icon=":material/compare:")
    st.page_link("pages/shapes_lab.py", label="6 · Train a GAP network and watch it learn where", icon=":material/school:")
    st.page_link("pages/gallery.py", label="7 · Every method side by side: the gallery", icon=":material/view_module:")
    st.page_link("pages/trust.py", label="8 · Which map to trust? Faithfulness and sanity checks", icon=":material/verified:")
    st.caption("DIAGNOSE: what the maps are for, after the Grad-CAM paper's second half")
    st.page_link("pages/bias.py", label="9 · Catch a network that learned a shortcut", icon=":material/search:")
    st.page_link("pages/adversarial.py", label="10 · Fool a network, and see Grad-CAM still find the object",
                 icon=":material/bug_report:")
    st.page_link("pages/failures.py", label="11 · Judge a network's mistakes", icon=":material/report:")
    st.page_link("pages/weak_strong.py", label="12 · Tell the stronger of two models by their maps",
                 icon=":material/fitness_center:")
    st.markdown(
        """
**For a class:** start with the bulldog-and-cat picture. On page 3, compare `layer1` (edges and
background everywhere) with `layer4` (on the animal); on page 4, switch the class between
'bull mastiff' and 'tiger cat' and watch the map move from one animal to the other.
"""
    )
with right:
    st.subheader("Models")
    st.success("**EfficientNet-Lite0 and Lite2** are ready: their ImageNet weights come with pip, no network needed.")
    download_ui()
    st.success(f"**{len(shapes.NETWORKS)} shapes networks** (average pooling, MLP and max pooling heads; biased "
               "and early checkpoints) are ready: trained here, shipped in `assets/models/`.")
    st.caption(f"Now explaining with: {selection.clf.description}.")
