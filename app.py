"""Entry point: the top navigation (``ui.layout.navigation``) routes to the chosen page. Each page sets
itself up and draws the shared sidebar (``ui.widgets.sidebar``).

    streamlit run app.py
"""

import logging

import streamlit as st

from ui.layout import navigation

page = navigation()
try:
    page.run()
except Exception as error:  # the last line of defence: a message on the page, the traceback in the log
    logging.getLogger("gradcam_app").exception("page %s failed", page.title)
    st.error(f"Something went wrong while drawing this page: {error}. Try another image or class.")
