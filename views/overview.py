"""Overview: what calibviz is for, and the selected models' recipes and basic metrics."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from calibviz.app import explain, guarded, predictions, selection
from calibviz.findings import CALIBRATED_BAND, confidence_reading
from calibviz.metrics import basic_metrics
from calibviz.plots.overview import metrics_comparison

st.title("Overview")
explain(
    "A classifier is **calibrated** when its confidence matches how often it is right: of all the "
    "predictions it makes with 80% confidence, about 80% should be correct. Modern networks are often "
    "**over-confident** (Guo et al. 2017). calibviz runs trained checkpoints over real data and shows "
    "why a model is over- or under-confident (reliability, logits, penultimate features), what its soft "
    "labels look like on mixed inputs, and which re-calibration method fixes it. Pick a dataset, models and "
    "a split in the sidebar; every page uses that selection. The table below measures each selected model "
    "live on the chosen split: accuracy, negative log-likelihood (NLL), the Brier score and the expected "
    "calibration error (ECE, 15 equal-width bins closed on the right)."
)


def body() -> None:
    sel = selection(need_models=True)
    if sel is None:
        return
    rows, metrics = [], []
    for e in sel.models:
        p = predictions(e, sel.spec)
        probs = p.probabilities()
        m = basic_metrics(probs, p.labels)
        metrics.append(m)
        conf = float(probs.max(1).mean())
        r = e.card.get("recipe", {})
        rows.append({
            "model": e.title, "recipe": e.recipe, "arch": e.arch or "—",
            "loss": r.get("loss", ""), "teacher": r.get("kd_teacher") or "",
            "KD T": r.get("kd_temperature") if r.get("kd_teacher") else "", "epochs": r.get("epochs", ""),
            "n": p.n, "accuracy": m["accuracy"], "nll": m["nll"], "brier": m["brier"], "ece": m["ece"],
            "conf − acc": conf - m["accuracy"], "reads as": confidence_reading(conf, m["accuracy"]),
        })
    st.subheader(f"Selected models on {sel.dataset} · {sel.data.label}")
    df = pd.DataFrame(rows)
    fmt = {k: "{:.4f}" for k in ("accuracy", "nll", "brier", "ece")} | {"conf − acc": "{:+.4f}"}
    st.table(df.style.format(fmt).hide(axis="index"))
    st.plotly_chart(metrics_comparison([e.title for e in sel.models], metrics), width="stretch")
    st.caption("**conf − acc** is mean confidence minus accuracy: positive means over-confident on average, "
               f"negative under-confident (within ±{CALIBRATED_BAND:g} reads as calibrated on average; the "
               "Reliability page shows where in the confidence range the gap lies). "
               "Each card also records the metrics measured when the zoo was built; see `python -m calibviz "
               "zoo list`. The numbers here are recomputed from the checkpoint on this machine.")


guarded(body)
