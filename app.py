"""Entry point: page settings and the route to the chosen page (each page draws the shared sidebar).

    streamlit run app.py
"""

import logging

import streamlit as st

st.set_page_config(page_title="Where does a CNN look?", page_icon=":mag:", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/activations.py", title="1 · Activations", icon=":material/grid_view:"),
    st.Page("pages/cam.py", title="2 · CAM on a GAP network", icon=":material/functions:"),
    st.Page("pages/grad_cam.py", title="3 · Grad-CAM, layer by layer", icon=":material/layers:"),
    st.Page("pages/guided.py", title="4 · Guided Grad-CAM", icon=":material/blur_on:"),
    st.Page("pages/compare.py", title="5 · CAM vs Grad-CAM", icon=":material/compare:"),
    st.Page("pages/shapes_lab.py", title="6 · Shapes lab: train it yourself", icon=":material/school:"),
]

page = st.navigation(PAGES)
try:
    page.run()
except Exception as error:  # the last line of defence: a message on the page, the traceback in the log
    logging.getLogger("gradcam_app").exception("page %s failed", page.title)
    st.error(f"Something went wrong while drawing this page: {error}. Try another image or class.")
