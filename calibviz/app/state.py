"""Session state that outlives a page: each page's widget values across visits, and the sidebar's selection.

Streamlit drops the state of widgets a run does not draw, so without this every visit to another page would reset
them. (The URL state of shareable links joins here.)
"""

from __future__ import annotations

import streamlit as st

SIDEBAR_KEYS = ("dataset", "models_", "spec_")


def _saved_key(prefix: str) -> str:
    return f"_{prefix}_saved"


def restore_page_state(prefix: str, defaults: dict[str, object]) -> None:
    """Bring back a page's widget values (keys starting with `prefix_`) from its last visit, then fill in the
    defaults. The copy lives in a plain session-state entry, which survives pages that do not draw the widgets."""
    for k, v in st.session_state.get(_saved_key(prefix), {}).items():
        st.session_state.setdefault(k, v)
    for k, v in defaults.items():
        st.session_state.setdefault(k, v)


def save_page_state(prefix: str, exclude: tuple[str, ...] = ("_btn_",)) -> None:
    """Remember a page's widget values for its next visit (buttons, whose state cannot be set, are left out)."""
    saved = st.session_state.setdefault(_saved_key(prefix), {})
    saved.update({k: st.session_state[k] for k in st.session_state
                  if isinstance(k, str) and k.startswith(f"{prefix}_") and not any(x in k for x in exclude)})


def keep_sidebar_state() -> None:
    """Re-assert the sidebar widgets' values, so that each page (which draws the sidebar itself) keeps them."""
    for k in [k for k in st.session_state if isinstance(k, str) and (k == "dataset" or k.startswith(SIDEBAR_KEYS[1:]))]:
        st.session_state[k] = st.session_state[k]
