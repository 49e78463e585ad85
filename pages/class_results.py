"""Class results: the class tally, live, per question and method; CSV export and reset for the teacher."""

import os

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import gradcam_core as gc
from ui import figures, layout, quiz, resources, tally, widgets
from ui.source import show_code

REFRESH_SECONDS = 5


def quiz_figure(answers: list[tally.Answer]) -> go.Figure:
    """Share of right answers per method, with the paper's people where it measured them."""
    rows = quiz.scores((a.detail, bool(a.correct)) for a in answers)
    labels = [gc.METHODS[m].label if m in gc.METHODS else m for m in rows]
    figure = go.Figure(go.Bar(x=labels, y=[100 * r / n for r, n in rows.values()], name="this class",
                              text=[f"{r}/{n}" for r, n in rows.values()], textposition="auto"))
    figure.add_trace(go.Scatter(x=[gc.METHODS[m].label for m in quiz.PAPER], y=list(quiz.PAPER.values()),
                                mode="markers", marker=dict(size=14, symbol="diamond", color="#d62728"),
                                name="the paper's people"))
    figure.update_layout(title="Which class is it? Right answers per method", yaxis=dict(range=[0, 100],
                         title="% right"), xaxis_type="category", height=360, **figures.COMPACT)
    return figure


def where_table(answers: list[tally.Answer]) -> pd.DataFrame:
    shapes = [a for a in answers if a.choice in ("hit", "miss")]
    photos = [a for a in answers if a.choice in ("agree", "differ")]
    return pd.DataFrame([
        {"pictures": "shapes (the object is known)", "answers": len(shapes),
         "students on the object": _share(a.choice == "hit" for a in shapes),
         "the model on the object": _share(a.detail.endswith("model hit") for a in shapes)},
        {"pictures": "photos", "answers": len(photos),
         "students where the map is at least half its peak": _share(a.choice == "agree" for a in photos)},
    ])


def trust_table(answers: list[tally.Answer]) -> pd.DataFrame:
    table = pd.DataFrame([{"pair": a.detail.split("|")[0], "trusted": a.choice} for a in answers])
    return table.groupby(["pair", "trusted"]).size().unstack(fill_value=0)


def spot_table(answers: list[tally.Answer]) -> pd.DataFrame:
    table = pd.DataFrame([{"round": a.detail.split("|")[0], "answer": {True: "as the model", False: "not as the model"}
                           .get(a.correct, "could not tell")} for a in answers])
    return table.groupby(["round", "answer"]).size().unstack(fill_value=0)


def _share(flags) -> float | None:
    flags = list(flags)
    return 100 * sum(flags) / len(flags) if flags else None


@st.fragment(run_every=REFRESH_SECONDS)
def results_ui() -> None:
    store, problem = resources.class_tally()
    try:
        if store is None:
            raise tally.TallyUnavailable(problem)
        answers = store.answers()
    except tally.TallyUnavailable as error:
        st.warning(str(error))
        return
    by_question = {name: [a for a in answers if a.question == name] for name in ("quiz", "where", "weak_vs_strong",
                                                                              "spot_the_difference")}
    sessions = len({a.session for a in answers})
    st.caption(f"{len(answers)} answers from {sessions} browser sessions; refreshed every {REFRESH_SECONDS} s.")
    st.subheader("15 · Which class is it?")
    if by_question["quiz"]:
        st.plotly_chart(quiz_figure(by_question["quiz"]), key="results_quiz")
    else:
        st.caption("No quiz answers yet.")
    st.subheader("16 · Where would you look?")
    percent = st.column_config.NumberColumn(format="%.0f%%")
    st.dataframe(where_table(by_question["where"]), hide_index=True,
                 column_config={c: percent for c in ("students on the object", "the model on the object",
                                                     "students where the map is at least half its peak")})
    st.subheader("12 · Weak or strong model?")
    if by_question["weak_vs_strong"]:
        st.dataframe(trust_table(by_question["weak_vs_strong"]))
    else:
        st.caption("No votes yet.")
    st.subheader("18 · Spot the difference")
    if by_question["spot_the_difference"]:
        st.dataframe(spot_table(by_question["spot_the_difference"]))
    else:
        st.caption("No guesses yet.")


def teacher_ui() -> None:
    store, _ = resources.class_tally()
    if store is None:
        return
    left, right = st.columns(2)
    try:
        left.download_button("Export every answer (CSV)", store.csv(), file_name="class_tally.csv", mime="text/csv",
                             icon=":material/download:", key="results_csv", on_click="ignore")
    except tally.TallyUnavailable as error:
        left.warning(str(error))
    with right.popover("Reset the tally", icon=":material/delete:"):
        st.write("This deletes every answer of every student, for good.")
        code = os.environ.get("GRADCAM_TEACHER_CODE", "")
        typed = st.text_input("The teacher's code (GRADCAM_TEACHER_CODE)" if code else "Type DELETE to confirm",
                              type="password" if code else "default", key="results_reset_code")
        if st.button("Delete all answers", type="primary", key="results_reset", disabled=typed != (code or "DELETE")):
            try:
                st.success(f"Deleted {store.reset()} answers.")
            except tally.TallyUnavailable as error:
                st.warning(str(error))


widgets.sidebar()
st.title("Class results")
opened_tally, _ = resources.class_tally()
layout.lesson(
    "Every answer given on pages 12, 15, 16 and 18 in this classroom, anonymously (a random id per browser session, "
    f"no names), from the tally{f' in `{opened_tally.where}`' if opened_tally else ''}. Leave this page on the "
    "projector: it refreshes itself."
)
teacher_ui()
results_ui()
show_code("store = tally.Tally()  # $GRADCAM_TALLY_URL: PostgreSQL, or SQLite in $GRADCAM_DATA_DIR by default\n"
          "store.answers('quiz'), store.csv(), store.reset()",
          tally.Tally.record)
