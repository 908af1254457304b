"""What every view does around its body: the explanation for students, and the guard that keeps the app running
and keeps the page's widget values across visits."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from typing import TypeVar

import streamlit as st

from calibviz.app.state import restore_page_state, save_page_state

T = TypeVar("T")


def guarded(fn: Callable[[], T], *, state: str | None = None, defaults: Mapping[str, object] | None = None
            ) -> T | None:
    """Run a page body; show any exception as an error in the page instead of crashing the app. With `state` (the
    page's widget-key prefix), the page's widget values are restored from its last visit (else `defaults`) before
    the body runs and saved after it."""
    if state is not None:
        restore_page_state(state, dict(defaults or {}))
    try:
        out = fn()
    except Exception as e:  # the page must keep running whatever went wrong
        st.error(f"{type(e).__name__}: {e}")
        with st.expander("Details"):
            st.code("".join(traceback.format_exception(e)))
        out = None
    if state is not None:
        save_page_state(state)
    return out


def explain(text: str) -> None:
    """The plain one-paragraph explanation every view carries, for students."""
    st.info(text, icon=":material/school:")
