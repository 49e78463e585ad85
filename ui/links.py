"""Shareable views: a page's choices live in the address bar, so a copied link opens the same view.

A choice is *linked* by its session-state key. On the first run of a session, a value in the URL
(``?model=shapes_gap&class=2``) is checked and becomes the widget's value; a value that no longer
exists (a class out of range, an unknown layer, a removed sample) is dropped, the default is used,
and one notice says so. After that, every run writes the current value back to the URL. Widgets
then take their value from the session state alone, never from a default argument as well.
"""

from __future__ import annotations

from collections.abc import Callable, Container

import streamlit as st

__all__ = ["boolean", "linked", "names", "notices_ui", "optional_int", "publish", "restore", "start_run"]

_LOADED = "_url_loaded"
_NOTICES = "_url_notices"
_SLOT = "_url_notice_slot"


def restore(name: str, key: str, parse: Callable[[str], object], valid: Callable[[object], bool], label: str) -> bool:
    """Once per session: URL parameter ``name``, parsed and checked, becomes ``st.session_state[key]``.
    Returns whether it did."""
    loaded = st.session_state.setdefault(_LOADED, set())
    if name in loaded:
        return False
    loaded.add(name)
    raw = st.query_params.get(name)
    if raw is None:
        return False
    try:
        value = parse(raw)
        ok = valid(value)
    except (TypeError, ValueError):
        ok = False
    if ok:
        st.session_state[key] = value
        return True
    st.session_state.setdefault(_NOTICES, []).append(f"{label} '{raw}'")
    del st.query_params[name]
    _show_notices()
    return False


def publish(name: str, value: object) -> None:
    """Write ``value`` to URL parameter ``name`` (if it changed)."""
    if isinstance(value, (list, tuple)):
        text = ",".join(map(str, value))
    else:
        text = "1" if value is True else "0" if value is False else str(value)
    if st.query_params.get(name) != text:
        st.query_params[name] = text


def linked(key: str, default: object, options: Container | None = None, parse: Callable[[str], object] = str,
           label: str | None = None, valid: Callable[[object], bool] | None = None, context: object = None) -> str:
    """Link the widget of ``key`` to the URL parameter of the same name and return ``key``.

    A URL value is kept if ``valid(value)`` (by default: it is in ``options``); the widget starts at
    ``default`` otherwise, and again whenever ``context`` (what the default depends on, such as the
    picture) changes. Pass no default to the widget itself: it reads ``st.session_state[key]``.
    """
    check = valid or (lambda value: options is None or value in options)
    restored = restore(key, key, parse, check, label or key)
    seen = st.session_state.get(f"{key}:context", context)
    st.session_state[f"{key}:context"] = context
    if key not in st.session_state or not check(st.session_state[key]) or (seen != context and not restored):
        st.session_state[key] = default
    publish(key, st.session_state[key])
    return key


def start_run() -> None:
    """Forget the last run's notice: it is shown on the run that found the bad values only."""
    st.session_state[_NOTICES] = []
    st.session_state.pop(_SLOT, None)


def notices_ui() -> None:
    """A place at the top of the page for the notice about URL values that could not be used: the
    sidebar's, found already, and the page's own, found as its controls are drawn."""
    st.session_state[_SLOT] = st.empty()
    _show_notices()


def _show_notices() -> None:
    notices = st.session_state.get(_NOTICES, [])
    slot = st.session_state.get(_SLOT)
    if notices and slot is not None:
        slot.info(f"This link asked for {', '.join(notices)}, which this version of the app does not have; "
                  "showing the defaults there instead.")


def optional_int(text: str) -> int | None:
    """``"None"`` -> None, else an int."""
    return None if text == "None" else int(text)


def names(text: str) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]`` (a list-valued choice, such as several methods)."""
    return [name for name in text.split(",") if name]


def boolean(text: str) -> bool:
    """``"1"``/``"true"`` or ``"0"``/``"false"`` -> a bool; anything else is not a valid value."""
    if text.lower() in ("1", "true"):
        return True
    if text.lower() in ("0", "false"):
        return False
    raise ValueError(text)
