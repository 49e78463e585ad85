"""Which class is it? The Grad-CAM paper's class-discrimination experiment as a quiz, scored per method."""

import numpy as np
import pandas as pd
import streamlit as st

import gradcam_core as gc
from ui import figures, layout, quiz, resources, shapes_view, widgets
from ui.source import show_code

QUESTION = "quiz"


def question_inputs(q: quiz.Question) -> tuple[str, gc.Classifier, str, np.ndarray, object, list[int]]:
    """(model, classifier, image id, picture shown, model input, the picture's two classes)."""
    if q.source == "photo":
        model = "efficientnet_lite0"
        clf = resources.classifier(model)
        data = (widgets.ASSETS / widgets.SAMPLES[widgets.DEFAULT_SAMPLE][0]).read_bytes()
        image = gc.load_image(data)
        return model, clf, resources.digest(data), np.asarray(image), clf.preprocess(image), [
            widgets.BULL_MASTIFF, widgets.TIGER_CAT]
    model = "shapes_gap"
    batch = resources.shapes_pair(q.seed)
    return model, resources.classifier(model), f"pair-{q.seed}", shapes_view.enlarged(batch.pictures[0]), \
        batch.images, batch.labels[0].tolist()


def visualization(q: quiz.Question, model: str, clf: gc.Classifier, image_id: str, rgb: np.ndarray, x,
                  target: int, cmap: str) -> np.ndarray:
    options = {"cam": {"fc": clf.fc}} if q.method == "cam" else None
    result = resources.explanation((q.method,), model, image_id, (clf.cam_layer,), target, options, clf, x)[q.method]
    m = result.maps[clf.cam_layer] if clf.cam_layer in result.maps else result.maps["input"]
    return figures.method_picture(q.method, m[0], rgb, cmap, 0.6)


def record(state: dict, q: quiz.Question, choice: str, right: bool) -> None:
    state["answers"].append((q.method, right))
    # Shown after the rerun that follows an answer.
    state["tally_problem"] = resources.record_answer(QUESTION, choice, right, q.method)


def score_table(answers: list[tuple[str, bool]]) -> pd.DataFrame:
    rows = [{"method": gc.METHODS[m].label, "right": right, "questions": total, "your score": 100 * right / total,
             "the paper's people": quiz.PAPER.get(m)} for m, (right, total) in quiz.scores(answers).items()]
    return pd.DataFrame(rows)


def final_ui(state: dict) -> None:
    st.subheader("Your round")
    table = score_table(state["answers"])
    percent = st.column_config.NumberColumn(format="%.1f%%")
    st.dataframe(table, hide_index=True, column_config={"your score": percent, "the paper's people": percent})
    st.markdown(
        f"In the paper, 43 people looked at PASCAL VOC pictures with two objects. Shown **Guided Backprop**, they "
        f"named the right class **{quiz.PAPER['guided_backprop']}%** of the time; shown **Guided Grad-CAM**, "
        f"**{quiz.PAPER['guided_grad_cam']}%**. Guided Backprop's picture is almost the same whatever the class "
        "(it shows the edges the network responds to, not which class they serve); multiplying it by Grad-CAM's "
        "class map keeps only the object of the class. Compare your own rows: the maps that change with the class "
        "(the CAM family) should be easy, the pixel-space gradients hard."
    )
    if st.button("Start a new round", type="primary", key="quiz_new_round"):
        state.update(round=state["round"] + 1, number=0, answers=[], answered=None)
        st.rerun()


def question_ui(state: dict, q: quiz.Question, cmap: str) -> None:
    model, clf, image_id, rgb, x, classes = question_inputs(q)
    target = classes[q.shown]
    st.subheader(f"Question {q.number + 1} of {quiz.QUESTIONS}")
    left, right = st.columns(2)
    left.image(figures.compact(rgb), caption="The picture: two objects, two classes", width="stretch")
    right.image(figures.compact(visualization(q, model, clf, image_id, rgb, x, target, cmap)), width="stretch",
                caption="A visualization of ONE of the two classes" + (
                    f": {gc.METHODS[q.method].label}" if state.get("answered") else " (the method is revealed after)"))
    names = sorted(clf.categories[c] for c in classes)
    with st.form(f"quiz_form:{state['round']}:{q.number}"):
        choice = st.radio("Which class does it explain?", names, index=None, horizontal=True,
                          key=f"quiz_choice:{state['round']}:{q.number}", disabled=bool(state.get("answered")))
        if st.form_submit_button("Answer", type="primary", disabled=bool(state.get("answered"))) and choice:
            right_answer = choice == clf.categories[target]
            state["answered"] = (choice, right_answer)
            record(state, q, choice, right_answer)
            st.rerun()
    if state.get("tally_problem"):
        st.warning(state["tally_problem"])
    if state.get("answered"):
        choice, right_answer = state["answered"]
        (st.success if right_answer else st.error)(
            f"{'Right' if right_answer else 'Not this time'}: it explained **{clf.categories[target]}**, drawn by "
            f"**{gc.METHODS[q.method].label}** ({gc.METHODS[q.method].summary})")
        if st.button("Next question", type="primary", key=f"quiz_next:{state['round']}:{q.number}"):
            state.update(number=state["number"] + 1, answered=None)
            st.rerun()
    if state["answers"]:
        st.caption("Your answers so far:")
        st.dataframe(score_table(state["answers"]), hide_index=True,
                     column_config={"your score": st.column_config.NumberColumn(format="%.0f%%"),
                                    "the paper's people": st.column_config.NumberColumn(format="%.2f%%")})


selection = widgets.sidebar()
st.title("Which class is it?")
layout.lesson(
    "The Grad-CAM paper (Section 5.1) tested whether its maps let a person tell *which* class a network is "
    "explaining: people saw a picture with two objects and one visualization, and named the class. **Look for** "
    "whether the visualization singles out one object, or lights up both."
)
state = st.session_state.setdefault("quiz", {"round": 0, "number": 0, "answers": [], "answered": None})
methods = quiz.quiz_methods(gc.methods_for(resources.classifier("shapes_gap").module))
photo_methods = [m for m in methods if not gc.METHODS[m].slow]
if state["number"] >= quiz.QUESTIONS:
    final_ui(state)
else:
    question = quiz.draw_question(state["number"], f"{resources.session_id()}:{state['round']}", methods,
                                  photo_methods)
    question_ui(state, question, selection.cmap)

show_code(
    "batch = shapes.render_pairs(1, seed)      # two shapes, labels (1, 2), masks (1, 2, H, W)\n"
    "result = gc.explain(clf.module, batch.images, target=batch.labels[0, k], layers=['layer4'], "
    "methods=[method])",
    quiz.draw_question,
)
