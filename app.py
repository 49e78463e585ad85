"""Entry point: the route to the chosen page. Each page sets itself up and draws the shared sidebar
(``ui.widgets.sidebar``), the page links included.

    streamlit run app.py
"""

import logging

import streamlit as st

from ui.widgets import PAGES, SECTIONS

page = st.navigation(
    {
        section: [st.Page(path, title=title, icon=icon, default=(path, title, icon) == PAGES[0])
                  for path, title, icon in pages]
        for section, pages in SECTIONS.items()
    },
    position="hidden",
)
try:
    page.run()
except Exception as error:  # the last line of defence: a message on the page, the traceback in the log
    logging.getLogger("gradcam_app").exception("page %s failed", page.title)
    st.error(f"Something went wrong while drawing this page: {error}. Try another image or class.")
