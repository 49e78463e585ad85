"""The sidebar every page shares: model, image, class, colours. Each ``*_ui``
returns its value.

Each page draws the sidebar first (``selection = widgets.sidebar()``). Streamlit forgets a page's
widget state when the user leaves the page, so every sidebar choice is also kept under a plain
session key (see :func:`remembered`) and follows the user from page to page. Session state is per
user: each user's choices are their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st
import torch
from PIL import Image

import gradcam_core as gc
from gradcam_core import shapes

from . import figures, layout, links, resources

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "images"

#: Sample label -> (file, what the model should see in it).
SAMPLES = {
    "Bulldog and tabby cat": ("cat_dog.png", "'bull mastiff' and 'tiger cat': one picture, two animals"),
    "Chelsea the cat": ("chelsea.png", "an 'Egyptian cat' / 'tabby'"),
    "Espresso": ("coffee.png", "an 'espresso' in a 'cup'"),
    "Grace Hopper": ("grace_hopper.jpg", "a 'military uniform'"),
    "Falcon 9 launch": ("rocket.jpg", "a 'missile', or a 'drilling platform'?"),
    "Photographer (grey-level)": ("camera.png", "a 'tripod'"),
    "Astronaut Eileen Collins": ("astronaut.png", "a hard one: no ImageNet class for astronauts"),
}
DEFAULT_SAMPLE = "Bulldog and tabby cat"
BULL_MASTIFF, TIGER_CAT = 243, 282
UPLOAD_TYPES = ["png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp"]
COLORMAPS = ["jet", "turbo", "inferno", "viridis", "magma", "coolwarm"]
DISPLAY_SIDE = 640
# Presenter mode: larger type for a projector (the code views are left out by ui.source).
PRESENTER_STYLE = """<style>
html, .stMarkdown p, .stMarkdown li { font-size: 1.25rem !important; }
h1 { font-size: 3.2rem !important; }
[data-testid="stMetricValue"] { font-size: 2.6rem !important; }
</style>"""
SHAPES_DISPLAY_SIDE = 256


@dataclass(frozen=True)
class Picture:
    """An image as the pages use it: what is shown, what the model reads, and its cache key.

    Both are the whole picture, so a map upsampled to ``image``'s size lines up with it.
    """

    image: Image.Image
    image_id: str
    name: str
    model_input: Image.Image


@dataclass(frozen=True)
class Selection:
    """Everything a page needs from the sidebar."""

    model: str
    clf: gc.Classifier
    picture: Picture
    x: torch.Tensor
    probabilities: torch.Tensor
    target: int
    cmap: str
    alpha: float
    presenter: bool = False

    @property
    def model_key(self) -> str:
        return resources.model_key(self.model)

    @property
    def rgb(self) -> np.ndarray:
        return np.asarray(self.picture.image)

    @property
    def family(self) -> str:
        """``"CNN"``, ``"ViT"`` or ``"Swin"``: which lessons apply to this network."""
        return gc.tokens.family(self.clf.module)

    @property
    def class_name(self) -> str:
        return self.clf.categories[self.target]

    def explain(self, methods: Sequence[str], layers: Sequence[str], target: int | None = None,
                options: dict[str, dict] | None = None) -> dict[str, gc.Result]:
        """The cached ``gc.explain`` of this image (for the sidebar's class unless ``target`` is given).

        CAM is told the classifier's head, so that its refusal of another head names the right layer.
        """
        if "cam" in methods:
            options = {**(options or {}), "cam": {"fc": self.clf.fc}}
        return resources.explanation(
            tuple(methods), self.model_key, self.picture.image_id, tuple(layers),
            self.target if target is None else target, options, self.clf, self.x,
        )

    def label(self, target: int) -> str:
        return f"{target} · {self.clf.categories[target]} ({float(self.probabilities[target]):.1%})"


def remembered(key: str, default: object = None) -> dict:
    """Widget arguments that keep its value under ``key`` across pages.

    The widget itself uses ``widget:<key>``; a change is copied to ``key`` before the rerun, and
    ``key`` is copied back to the widget on every page.
    """
    widget_key = f"widget:{key}"
    if default is not None:
        st.session_state.setdefault(key, default)
    if key in st.session_state:
        st.session_state[widget_key] = st.session_state[key]
    return {"key": widget_key, "on_change": _store, "args": (key,)}


def _store(key: str) -> None:
    st.session_state[key] = st.session_state[f"widget:{key}"]


def sidebar() -> Selection:
    """Set up the page and draw the shared sidebar; every page starts with it. Its choices travel in
    the URL (see :mod:`ui.links`), so a copied address opens the same view."""
    if layout.ROUTED not in st.session_state:  # a first page run alone, in Streamlit's older mode (see navigation)
        layout.navigation()
        st.rerun()
    links.start_run()
    with st.sidebar:
        model = model_ui()
        clf = resources.current_classifier(model)
        picture = shapes_picture_ui() if model.startswith("shapes") else picture_ui()
        x = clf.preprocess(picture.model_input)
        probabilities = resources.probabilities(resources.model_key(model), picture.image_id, clf, x)
        target = class_ui(clf, probabilities, key=f"class:{resources.model_key(model)}:{picture.image_id}")
        cmap, alpha = display_ui()
        presenter = presenter_ui()
    links.notices_ui()
    return Selection(model, clf, picture, x, probabilities, target, cmap, alpha, presenter)


def model_ui() -> str:
    names = [name for name in ("efficientnet_lite0", "efficientnet_lite2", "resnet34") if resources.model_ready(name)]
    names += [*shapes.NETWORKS, *shapes.TRANSFORMERS]
    if "trained_classifier" in st.session_state:
        names.append("shapes_gap_trained")
    if "your_classifier" in st.session_state:
        names.append(resources.YOUR_NETWORK)
    # a session's own network cannot travel in a link
    session_only = ("shapes_gap_trained", resources.YOUR_NETWORK)
    links.restore("model", "model", str, lambda name: name in names and name not in session_only, "the model")
    if st.session_state.get("model") not in names:
        st.session_state["model"] = names[0]
    model = st.selectbox(
        "Model", names, format_func=resources.MODEL_LABELS.get, **remembered("model"),
        help="ResNet34 appears once its ImageNet weights are downloaded (Home page); Your network once you "
             "load it below.",
    )
    links.publish("model", model)
    your_network_ui()
    return model


#: The largest picture an uploader takes, in megabytes.
IMAGE_UPLOAD_MB = 20
#: The largest state dict the "Your network" panel takes, in megabytes (the server's maxUploadSize).
YOUR_NETWORK_MB = 200


def your_network_ui() -> None:
    """A torchvision or timm architecture with the student's own weights and class names.

    The state dict is read from memory with ``weights_only=True`` (never written to disk; a file
    that would run code is refused) and the network lives in this session only: another student
    never sees it, and it is gone with the session.
    """
    with st.expander("Your network", expanded=False):
        source = st.radio("Architectures of", ["torchvision", "timm"], horizontal=True,
                          **remembered("your_source", "torchvision"))
        query = st.text_input("Filter", placeholder="e.g. resnet", **remembered("your_filter", ""))
        matching = [name for name in resources.architectures(source) if query.strip().lower() in name.lower()]
        if not matching:
            st.caption(f"No {source} architecture contains {query!r}.")
            return
        if st.session_state.get("your_arch") not in matching:
            st.session_state["your_arch"] = matching[0]
        arch = st.selectbox("Architecture", matching, help=f"{len(matching)} architectures match.",
                            **remembered("your_arch"))
        weights = st.file_uploader(
            f"Its weights (up to {YOUR_NETWORK_MB} MB)", type=["pth", "pt", "bin", "ckpt"], key="your_weights",
            max_upload_size=YOUR_NETWORK_MB,
            help="A file saved with torch.save(model.state_dict(), path). Without one: random weights "
                 "(or the pretrained ones if this server already has them; nothing is downloaded).",
        )
        names = st.file_uploader("Class names (optional: a text file, one name a line)", type=["txt"], max_upload_size=1,
                                 key="your_categories")
        if st.button("Load", key="your_load"):
            label = weights.name if weights is not None else arch
            try:
                if weights is not None and weights.size > YOUR_NETWORK_MB * 2**20:
                    raise ValueError(f"the file is larger than {YOUR_NETWORK_MB} MB.")
                # the server builds the network in memory: none larger than the weights it would take
                if gc.models.parameter_count(f"{source}:{arch}") * 4 > YOUR_NETWORK_MB * 2**20:
                    raise ValueError(f"{arch} is too large for this server: its weights take more than "
                                     f"{YOUR_NETWORK_MB} MB.")
                with st.spinner(f"Loading {arch}…"):
                    clf = gc.load_model(
                        f"{source}:{arch}", weights=None if weights is None else weights.getvalue(),
                        categories=None if names is None else gc.models.read_categories(names.getvalue()),
                    )
            except (ValueError, RuntimeError) as error:
                st.error(f"{label}: {error}")
                return
            st.session_state["your_classifier"] = clf
            st.session_state["your_run"] = st.session_state.get("your_run", 0) + 1
            st.session_state["model"] = resources.YOUR_NETWORK
            st.rerun()
        if "your_classifier" in st.session_state:
            clf = st.session_state["your_classifier"]
            st.caption(f"Loaded: {clf.description}; {len(clf.categories)} classes; stages {', '.join(clf.stages)}.")


def picture_ui() -> Picture:
    if links.restore("sample", "sample", str, lambda name: name in SAMPLES, "the sample"):
        st.session_state["image_source"] = "Samples"
    source = st.radio("Image", ["Samples", "Upload", "Camera"], horizontal=True, **remembered("image_source", "Samples"))
    if source == "Samples":
        name = st.selectbox("Sample", list(SAMPLES), **remembered("sample", DEFAULT_SAMPLE),
                            help="Freely licensed photos; see assets/images/ATTRIBUTION.md.")
        st.caption(f"Look for {SAMPLES[name][1]}.")
        links.publish("sample", name)
        return _sample(name)
    st.query_params.pop("sample", None)
    st.caption("Your own picture cannot travel in a link: a copied address opens this view with a sample.")
    if source == "Upload":
        st.file_uploader("Upload an image", type=UPLOAD_TYPES, key="widget:upload", on_change=_store_file,
                         max_upload_size=IMAGE_UPLOAD_MB,
                         args=("upload",))
    else:
        st.camera_input("Take a picture", key="widget:camera", on_change=_store_file, args=("camera",))
    if source.lower() in st.session_state:
        name, data = st.session_state[source.lower()]
        st.caption(f"Explaining {name}.")
        return _decoded_or_default(data, name)
    st.caption("Nothing yet: showing a sample.")
    return _sample(DEFAULT_SAMPLE)


def _store_file(key: str) -> None:
    """Keep an uploaded file or a camera shot for the other pages (their uploader starts empty)."""
    file = st.session_state[f"widget:{key}"]
    if file is None:
        st.session_state.pop(key, None)
    else:
        st.session_state[key] = (file.name if key == "upload" else "camera picture", file.getvalue())


def _sample(name: str) -> Picture:
    data = (ASSETS / SAMPLES[name][0]).read_bytes()
    return _photo(data, name)


def _photo(data: bytes, name: str) -> Picture:
    image_id = resources.digest(data)
    image = resources.display_image(image_id, data, DISPLAY_SIDE)
    return Picture(image, image_id, name, model_input=image)


def _decoded_or_default(data: bytes, name: str) -> Picture:
    try:
        return _photo(data, name)
    except ValueError as error:
        st.error(f"{name}: {error} Showing a sample instead.")
        return _sample(DEFAULT_SAMPLE)


def shapes_picture_ui() -> Picture:
    links.restore("seed", "shapes_seed", int, lambda seed: 0 <= seed < 10**6, "the shapes picture")
    seed = st.session_state.setdefault("shapes_seed", 0)
    if st.button("New image", key="new_shapes_image", help="Draw another random shape on clutter."):
        seed = st.session_state["shapes_seed"] = seed + 1
    links.publish("seed", seed)
    batch = resources.shapes_sample(seed)
    small = Image.fromarray(batch.pictures[0])
    st.caption(f"Shapes image #{seed}: a {shapes.CLASSES[int(batch.labels[0])]}.")
    big = small.resize((SHAPES_DISPLAY_SIDE,) * 2, Image.NEAREST)
    return Picture(big, f"shapes-{seed}", f"shapes #{seed}", model_input=small)


def class_ui(clf: gc.Classifier, probabilities: torch.Tensor, key: str) -> int:
    """The class to explain: the top-5 as a chart, then any class by typing its name."""
    top = probabilities.topk(min(5, len(clf.categories))).indices.tolist()
    st.plotly_chart(figures.top_classes(clf.categories, probabilities, top), key=f"top5:{key}")
    order = top + [c for c in range(len(clf.categories)) if c not in top]
    links.restore("class", key, int, lambda c: 0 <= c < len(clf.categories), "the class")
    target = st.selectbox(
        "Class to explain", order, **remembered(key),
        format_func=lambda c: f"{clf.categories[c]} ({float(probabilities[c]):.1%})",
        help="The model's top-5 come first; type to search all classes.",
    )
    links.publish("class", target)
    return target


def display_ui() -> tuple[str, float]:
    links.restore("cmap", "cmap", str, lambda name: name in COLORMAPS, "the colormap")
    links.restore("alpha", "alpha", float, lambda a: 0.0 <= a <= 1.0 and abs(a * 20 - round(a * 20)) < 1e-9, "the opacity")
    cmap = st.selectbox("Colormap", COLORMAPS, **remembered("cmap", COLORMAPS[0]))
    alpha = st.slider("Map opacity", 0.0, 1.0, step=0.05, **remembered("alpha", 0.5))
    links.publish("cmap", cmap)
    links.publish("alpha", alpha)
    return cmap, alpha


def presenter_ui() -> bool:
    """Presenter mode: larger text and figures, explanations folded away, the code views hidden."""
    links.restore("present", "presenter", links.boolean, lambda value: isinstance(value, bool), "presenter mode")
    presenter = st.toggle("Presenter mode", **remembered("presenter", False),
                          help="For a projector: larger text, explanations folded, only the controls that matter.")
    links.publish("present", presenter)
    if presenter:
        st.html(PRESENTER_STYLE)
    return presenter


def second_class_ui(selection: Selection, key: str) -> int:
    """A class to set against the sidebar's: on the two-animal sample, the other animal."""
    clf, first = selection.clf, selection.target
    if selection.picture.name == DEFAULT_SAMPLE and selection.model in resources.IMAGENET_MODELS:
        default = TIGER_CAT if first != TIGER_CAT else BULL_MASTIFF
    else:
        default = next(c for c in selection.probabilities.argsort(descending=True).tolist() if c != first)
    order = [default] + [c for c in range(len(clf.categories)) if c != default]
    links.linked(key, default, parse=int, valid=lambda c: 0 <= c < len(clf.categories) and c != first,
                 label="the class to set against", context=(selection.model_key, selection.picture.image_id, first))
    return st.selectbox("Against the class", order, key=key,
                        format_func=lambda c: f"{clf.categories[c]} ({float(selection.probabilities[c]):.1%})")


def layer_ui(clf: gc.Classifier, label: str = "Layer", default: int = -1, key: str = "layer") -> str:
    """One of the model's stages, all of them in sight; in the URL under ``key``."""
    links.linked(key, clf.stages[default], clf.stages, label=f"the layer ({label.lower()})")
    return st.segmented_control(label, clf.stages, key=key) or clf.stages[default]
