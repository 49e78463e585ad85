"""What every page draws before it needs a model: the navigation, the page's settings, its lesson.

Nothing here imports torch or the package, so ``app.py`` and the top of the Home page run at once on a
server just started, while the sidebar (:mod:`ui.widgets`) loads the model.
"""

from __future__ import annotations

import streamlit as st

# A markdown table wider than a phone scrolls inside itself, as code blocks and dataframes do, rather
# than making the whole page scroll sideways.
NARROW_SCREEN_STYLE = """<style>
[data-testid="stMarkdownContainer"] table { display: block; max-width: 100%; overflow-x: auto; }
</style>"""

#: Section -> (file, title, icon) of each page, in the order of the lessons.
SECTIONS = {
    "Start": [("pages/home.py", "Home", ":material/home:")],
    "Looking inside": [("pages/activations.py", "1 · Activations", ":material/grid_view:")],
    "CAM and Grad-CAM": [
        ("pages/cam.py", "2 · CAM on a GAP network", ":material/functions:"),
        ("pages/grad_cam.py", "3 · Grad-CAM, layer by layer", ":material/layers:"),
        ("pages/guided.py", "4 · Pixel-space methods", ":material/blur_on:"),
        ("pages/compare.py", "5 · CAM vs Grad-CAM", ":material/compare:"),
        ("pages/shapes_lab.py", "6 · Shapes lab: train it yourself", ":material/school:"),
    ],
    "Compare methods": [("pages/gallery.py", "7 · Method gallery", ":material/view_module:")],
    "Which map to trust?": [("pages/trust.py", "8 · Which map to trust?", ":material/verified:")],
    "Diagnose": [
        ("pages/bias.py", "9 · Bias detective", ":material/search:"),
        ("pages/adversarial.py", "10 · Adversarial examples", ":material/bug_report:"),
        ("pages/failures.py", "11 · Failure modes", ":material/report:"),
        ("pages/weak_strong.py", "12 · Weak or strong model?", ":material/fitness_center:"),
    ],
    "Inside the network": [
        ("pages/units.py", "13 · What a unit wants to see", ":material/visibility:"),
        ("pages/depth.py", "14 · Grad-CAM at every depth", ":material/stacked_line_chart:"),
    ],
    "Classroom": [
        ("pages/quiz.py", "15 · Which class is it? (quiz)", ":material/quiz:"),
        ("pages/where.py", "16 · Where would you look?", ":material/touch_app:"),
        ("pages/class_results.py", "17 · Class results", ":material/leaderboard:"),
        ("pages/spot_difference.py", "18 · Spot the difference", ":material/difference:"),
    ],
    "Beyond CNNs": [("pages/cnn_vs_vit.py", "19 · CNN or transformer?", ":material/compare_arrows:")],
}
#: Every page, in order.
PAGES = [page for pages in SECTIONS.values() for page in pages]


#: Session key, set once this session's runs go through :func:`navigation`.
ROUTED = "navigation_routed"


def navigation() -> st.Page:
    """Every page in the top navigation, one drop-down a section; returns the page the URL names.

    ``app.py`` calls it on every run. Until some run on the server has called ``st.navigation``, Streamlit
    serves a page's own URL in its older ``pages/`` mode, which runs that page alone: on a session's
    first run :func:`ui.widgets.sidebar` then calls this itself and reruns, so a link opened first on a fresh
    server shows the same app. Only a first run: a rerun later would drop the click that started it
    (and Streamlit's AppTest starts every run in the older mode, its pages alone as before).
    """
    st.session_state[ROUTED] = True
    st.set_page_config(page_title="Where does a CNN look?", page_icon=":mag:", layout="wide")
    st.html(NARROW_SCREEN_STYLE)
    return st.navigation(
        {
            section: [st.Page(path, title=title, icon=icon, default=(path, title, icon) == PAGES[0])
                      for path, title, icon in pages]
            for section, pages in SECTIONS.items()
        },
        position="top",
        expanded=True,  # on a phone the top navigation folds into the sidebar: list every page there
    )


def lesson(text: str) -> None:
    """A page's explanation: shown, or folded into an expander in presenter mode."""
    if st.session_state.get("presenter"):
        with st.expander("The lesson, in words"):
            st.markdown(text)
    else:
        st.markdown(text)
