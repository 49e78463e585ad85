"""Home: what the app shows, a path through the pages, and which models are ready.

The title, the lesson and the plans need no model: they are drawn first, and torch, the package and
the model are imported only after them, so a student on a server just started reads the page while
the sidebar and the models panel fill in.
"""

import streamlit as st

from ui import layout

#: The 45-minute class: (minutes, page, what to do and what to ask).
CLASS_PLAN = [
    ("0-5", "pages/home.py", "Project this page with Presenter mode on (sidebar). Ask: where would *you* look to "
     "tell a dog from a cat?"),
    ("5-10", "pages/activations.py", "layer1 on the bulldog-and-cat photo: edges and colours. Ask: can a network "
     "decide from edges alone?"),
    ("10-17", "pages/cam.py", "The GAP head and the CAM map; then the weights taken apart. Ask: which channels "
     "vote for 'bull mastiff'?"),
    ("17-22", "pages/grad_cam.py", "layer1 to layer4 side by side; click a cell to see its receptive field. Ask: "
     "why is layer4 coarse?"),
    ("22-30", "pages/quiz.py", "Everyone answers ten questions on their own device. Ask: which visualizations made "
     "the class easy to name?"),
    ("30-37", "pages/bias.py", "Make the tag lie. Ask: would the accuracy alone have warned you?"),
    ("37-42", "pages/weak_strong.py", "Everyone votes on a few pictures. Ask: what made one map look more trustworthy?"),
    ("42-45", "pages/class_results.py", "The class's answers against the paper's. Export them as CSV if you want."),
]
#: The self-study path: (page, what to try).
SELF_STUDY = [
    ("pages/activations.py", "what each layer responds to"),
    ("pages/cam.py", "the map a GAP network gives for free, and global average against max pooling"),
    ("pages/grad_cam.py", "Grad-CAM from layer1 to layer4, and what one cell sees"),
    ("pages/depth.py", "every block, and where the map finds the object"),
    ("pages/guided.py", "saliency, guided backprop, the deconvnet and Guided Grad-CAM for two classes"),
    ("pages/compare.py", "CAM and Grad-CAM: the same map where both apply"),
    ("pages/shapes_lab.py", "train a network in a minute and watch its CAM learn where"),
    ("pages/gallery.py", "all the methods side by side"),
    ("pages/trust.py", "which map to trust: deletion, insertion and sanity checks"),
    ("pages/units.py", "what a unit wants to see"),
    ("pages/cnn_vs_vit.py", "a CNN and a Vision Transformer: where each looks"),
    ("pages/bias.py", "a network that learned a shortcut"),
    ("pages/adversarial.py", "an invisible change that flips the answer"),
    ("pages/failures.py", "a network's mistakes, judged"),
    ("pages/quiz.py", "the paper's quiz: which class is it?"),
]
TITLES = {path: (title, icon) for path, title, icon in layout.PAGES}

st.title("Where does a CNN look when it decides?")
layout.lesson(
    """
A convolutional network turns a picture into a class. These pages open it up and show **where** it
looked: the feature maps it computes, the maps of CAM, Grad-CAM and the methods that followed it,
which weigh those feature maps by how much they raise the score of one class, and the pictures of
the methods that send the score back to the pixels. The gallery sets them all side by side.

Pick a model, an image and a class in the sidebar; your choice follows you from page to page.
"""
)
left, right = st.columns([3, 2])
with left:
    teach, learn = st.tabs(["A 45-minute class", "On your own"])
    with teach:
        st.caption("For a teacher with a projector; students open the same pages on their laptops. Copy a page's "
                   "address from the browser and paste it in the class chat: the link opens the same model, "
                   "picture, class and settings on every student's screen.")
        for minutes, path, what in CLASS_PLAN:
            title, icon = TITLES[path]
            st.page_link(path, label=f"{minutes} min · {title}", icon=icon)
            st.caption(what)
    with learn:
        st.caption("Each page names its paper, what to look for, and ends with the code that made its pictures.")
        for path, what in SELF_STUDY:
            title, icon = TITLES[path]
            st.page_link(path, label=f"{title}: {what}", icon=icon)

# Everything below needs torch and a model (see the docstring).
import gradcam_core as gc  # noqa: E402
from gradcam_core import shapes  # noqa: E402
from ui import resources, widgets  # noqa: E402


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
with right:
    st.subheader("Models")
    st.success("**EfficientNet-Lite0 and Lite2** are ready: their ImageNet weights come with pip, no network needed.")
    download_ui()
    st.success(f"**{len(shapes.NETWORKS)} shapes networks** (average pooling, MLP and max pooling heads; biased "
               "and early checkpoints) are ready: trained here, shipped in `assets/models/`.")
    st.caption(f"Now explaining with: {selection.clf.description}.")
