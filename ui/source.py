"""'Show the code': the package source behind a figure, so students see what made the picture."""

from __future__ import annotations

import inspect

import streamlit as st


def show_code(call: str, *objects: object) -> None:
    """An expander with the call the page made, then the source of each package object it used
    (hidden in presenter mode)."""
    if st.session_state.get("presenter"):
        return
    with st.expander("Show the code"):
        st.caption("The call this page makes (the page caches its result):")
        st.code(call, language="python")
        for obj in objects:
            st.caption(f"`{obj.__module__}.{obj.__qualname__}`:")
            st.code(inspect.getsource(obj), language="python")
