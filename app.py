"""calibviz dashboard entry point: `streamlit run app.py` (or `make run`).

Navigates over the views in views/. Each page draws the shared sidebar (dataset, models, split, device) itself
through `calibviz.app.selection()`, so the selection is the same on every page.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from calibviz.app import warm_umap_in_background

HERE = Path(__file__).parent

# (file, title, icon) in navigation order; a page whose file is absent is skipped.
PAGES = [
    ("views/overview.py", "Overview", ":material/home:"),
    ("views/reliability.py", "Reliability", ":material/show_chart:"),
    ("views/recalibration.py", "Re-calibration", ":material/thermostat:"),
    ("views/logits.py", "Logits", ":material/bar_chart:"),
    ("views/features.py", "Features", ":material/scatter_plot:"),
    ("views/soft_labels.py", "Soft labels", ":material/shuffle:"),
    ("views/shift.py", "Shift", ":material/waves:"),
    ("views/distillation.py", "Distillation", ":material/school:"),
]

st.set_page_config(page_title="calibviz", page_icon=":material/straighten:", layout="wide")
nav = st.navigation([st.Page(f, title=t, icon=i, default=(f == PAGES[0][0]))
                     for f, t, i in PAGES if (HERE / f).is_file()])
st.sidebar.title("calibviz")
nav.run()
warm_umap_in_background()  # after the first page has drawn, so the JIT compile does not delay it
