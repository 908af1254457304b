"""What every view does around its body: the explanation for students, and the guard that keeps the app running."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import TypeVar

import streamlit as st

T = TypeVar("T")


def guarded(fn: Callable[[], T]) -> T | None:
    """Run a page body; show any exception as an error in the page instead of crashing the app."""
    try:
        return fn()
    except Exception as e:  # the page must keep running whatever went wrong
        st.error(f"{type(e).__name__}: {e}")
        with st.expander("Details"):
            st.code("".join(traceback.format_exception(e)))
        return None


def explain(text: str) -> None:
    """The plain one-paragraph explanation every view carries, for students."""
    st.info(text, icon=":material/school:")
