"""Spot the difference: two classes people confuse, the student's guess first, then the maps that tell them apart.

The Grad-CAM paper names three uses of an explanation: finding failures, earning trust and, once the model
is better than we are, teaching people. This page is the third: a guess, then Finer-CAM and contrastive
Grad-CAM, which answer "why this class rather than that one?", then a second round.
"""

from dataclasses import dataclass

import numpy as np
import streamlit as st
from PIL import Image

import gradcam_core as gc
from ui import figures, layout, resources, widgets
from ui.source import show_code

QUESTION = "spot_the_difference"
UNSURE = "I cannot tell"


@dataclass(frozen=True)
class Round:
    """One picture and the two classes the student tells apart."""

    photo: str
    first: int
    second: int
    hint: str


#: The rounds, in order: ImageNet classes that people (and networks) confuse.
ROUNDS = [
    Round("cat_dog.png", 243, 242, "Both are short-haired, heavy-jawed dogs. Look at the muzzle, the folds of the "
          "face, and the ears."),
    Round("chelsea.png", 282, 281, "ImageNet's 'tiger cat' has thin, tiger-like stripes; a 'tabby' has swirls or "
          "spots and an 'M' on its forehead. Look at the pattern of the coat."),
]


def model_ui(selection: widgets.Selection) -> gc.Classifier:
    """The sidebar's model if it reads ImageNet's classes; otherwise EfficientNet-Lite0, said so."""
    if selection.model in resources.IMAGENET_MODELS:
        return selection.clf
    st.info("These rounds are about ImageNet classes, so they use EfficientNet-Lite0 whatever the sidebar's model.")
    return resources.classifier("efficientnet_lite0")


def guess_ui(number: int, round_: Round, clf: gc.Classifier) -> str | None:
    names = [clf.categories[round_.first], clf.categories[round_.second]]
    return st.radio(f"Round {number}: is it a **{names[0]}** or a **{names[1]}**?", [*names, UNSURE], index=None,
                    key=f"spot_guess_{number}", horizontal=True)


def record(number: int, round_: Round, guess: str, model_pick: str) -> None:
    """One answer a round and session into the class tally; a message if the tally cannot take it."""
    recorded = st.session_state.setdefault("spot_recorded", set())
    if number in recorded:
        return
    recorded.add(number)
    agrees = None if guess == UNSURE else guess == model_pick
    problem = resources.record_answer(QUESTION, guess, agrees, f"round {number}|{round_.photo}|model {model_pick}")
    if problem:
        st.warning(problem)


def photo_ui(round_: Round) -> tuple[str, Image.Image]:
    """The round's photo, shown; its cache key and the picture the model reads."""
    data = (gc.evaluation.SAMPLE_IMAGES / round_.photo).read_bytes()
    image_id = resources.digest(data)
    image = resources.display_image(image_id, data, widgets.DISPLAY_SIDE)
    st.image(figures.compact(np.asarray(image)), width=360)
    return image_id, image


def reveal_ui(round_: Round, clf: gc.Classifier, model: str, guess: str, selection: widgets.Selection,
              image_id: str, image: Image.Image) -> None:
    rgb, x = np.asarray(image), clf.preprocess(image)
    probabilities = resources.probabilities(model, image_id, clf, x)
    a, b = round_.first, round_.second
    names = {a: clf.categories[a], b: clf.categories[b]}
    pick = a if probabilities[a] >= probabilities[b] else b
    left, right = st.columns(2)
    left.metric(f"The model: '{names[a]}'", f"{float(probabilities[a]):.1%}")
    right.metric(f"The model: '{names[b]}'", f"{float(probabilities[b]):.1%}")
    if guess == UNSURE:
        st.info(f"You could not tell. The model says '{names[pick]}'; the maps below show what it goes by.")
    elif guess == names[pick]:
        st.success(f"You and the model agree: '{names[pick]}'. Do you also agree on why? Look below.")
    else:
        st.warning(f"The model says '{names[pick]}'. Before you decide who is right, look at what it goes by.")
    record(ROUNDS.index(round_) + 1, round_, guess, names[pick])

    layer = clf.cam_layer
    plain = {c: resources.explanation(("grad_cam",), model, image_id, (layer,), c, None, clf, x)["grad_cam"]
             for c in (a, b)}
    contrast = {c: resources.explanation(("contrastive_grad_cam",), model, image_id, (layer,), c,
                                         {"contrastive_grad_cam": {"versus": other}}, clf, x)["contrastive_grad_cam"]
                for c, other in ((a, b), (b, a))}
    finer = resources.explanation(("finer_cam",), model, image_id, (layer,), pick, None, clf, x)["finer_cam"]
    similar = gc.FinerCAM.nearest(finer.logits, finer.targets, 3)[0].tolist()

    def shown(result: gc.Result) -> np.ndarray:
        return gc.overlay(rgb, result.maps[layer][0], selection.cmap, selection.alpha)

    st.markdown("**Grad-CAM of each class:** where the evidence for each one is. The two maps cover much the same "
                f"dog, or cat: correlation r = {gc.maps.correlation(plain[a].maps[layer][0], plain[b].maps[layer][0]):.2f}.")
    figures.show_grid([(f"Grad-CAM: '{names[c]}'", shown(plain[c])) for c in (a, b)], columns=2,
                      filename=f"spot_grad_cam_{a}_{b}.png")
    st.markdown("**Contrastive Grad-CAM:** the gradient of one score minus the other. What both classes share "
                "cancels; what is left tells them apart.")
    figures.show_grid([(f"'{names[c]}' rather than '{names[other]}'", shown(contrast[c]))
                       for c, other in ((a, b), (b, a))], columns=2, filename=f"spot_contrast_{a}_{b}.png")
    st.markdown(f"**Finer-CAM** (Zhang et al., CVPR 2025): '{names[pick]}' against the classes the model finds most "
                f"alike, {', '.join(repr(clf.categories[c]) for c in similar)}.")
    figures.show_grid([(f"Finer-CAM: '{names[pick]}'", shown(finer)), ("the picture", rgb)], columns=2,
                      filename=f"spot_finer_cam_{pick}.png")
    st.caption(f"What to look for: {round_.hint}")


selection = widgets.sidebar()
st.title("Spot the difference")
layout.lesson(
    "A network trained on a million labelled pictures tells apart classes that most people confuse. Once a model "
    "is better than we are, its explanations can **teach** (the Grad-CAM paper's third use of an explanation). "
    "Guess first; then see what the model goes by. The plain Grad-CAM of two similar classes lights up the same "
    "animal; **contrastive Grad-CAM** (the gradient of one class's score minus the other's) and **Finer-CAM** (the "
    "class against its most similar classes) keep only what tells them apart."
)
clf = model_ui(selection)
model = selection.model_key if clf is selection.clf else "efficientnet_lite0"
for number, round_ in enumerate(ROUNDS, start=1):
    st.subheader(f"Round {number}")
    image_id, image = photo_ui(round_)
    guess = guess_ui(number, round_, clf)
    if guess is None:
        st.info("Answer to see what the model goes by" + (" and to open the next round." if number < len(ROUNDS) else "."))
        break
    reveal_ui(round_, clf, model, guess, selection, image_id, image)

st.page_link("pages/class_results.py", label="The class's answers, round by round: 17 · Class results",
             icon=":material/leaderboard:")

show_code(
    f"gc.explain(clf.module, x, target={ROUNDS[0].first}, layers=['{clf.cam_layer}'], methods=['contrastive_grad_cam'],\n"
    f"           options={{'contrastive_grad_cam': {{'versus': {ROUNDS[0].second}}}}})   # why a, not b?\n"
    f"gc.explain(clf.module, x, target={ROUNDS[0].first}, layers=['{clf.cam_layer}'], methods=['finer_cam'])",
    gc.ContrastiveGradCAM,
    gc.FinerCAM,
)
