"""ImageNet-sized predictions in the dashboard: a synthetic bundle of N x C logits with D-d features (default
50,000 x 1,000 x 2,048, as an ImageNet validation set), named in a config, drawn by every page under AppTest.

    .venv/bin/python bench/bench_scale.py [--n 50000] [--classes 1000] [--dim 2048]

For each page: the first draw (computing what it caches) and a redraw from cache, beside the floor of a bare
Streamlit page drawn by the same AppTest, and the peak resident memory of the process. Reported as measured,
whatever the numbers are.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PAGES = ("overview", "reliability", "recalibration", "logits", "features")


def synthetic_bundle(path: Path, n: int, c: int, d: int) -> None:
    """Logits of a mildly over-confident classifier whose features determine them through a linear head."""
    from calibviz.formats import save_bundle
    from calibviz.predictions import Predictions

    rng = np.random.default_rng(0)
    labels = rng.integers(0, c, n)
    feats = rng.normal(size=(n, d)).astype(np.float32)
    w = (rng.normal(size=(c, d)) / np.sqrt(d)).astype(np.float32)
    logits = feats @ w.T
    logits[np.arange(n), labels] += 4.0
    split = np.where(np.arange(n) < n // 2, 1, 2)  # half val, half test
    save_bundle(Predictions(labels=labels, logits=(1.5 * logits).astype(np.float32), features=feats,
                            head_weight=w, head_bias=np.zeros(c, np.float32), split=split,
                            meta={"name": "synthetic", "dataset": "synthetic"}), path)


def timed_run(at: object) -> float:
    t0 = time.perf_counter()
    at.run()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=2048)
    args = ap.parse_args()
    from streamlit.testing.v1 import AppTest

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        synthetic_bundle(tmp / "big.npz", args.n, args.classes, args.dim)
        size = (tmp / "big.npz").stat().st_size / 2**20
        print(f"bundle {args.n:,} x {args.classes:,}, {args.dim}-d features: {size:,.0f} MB, written in "
              f"{time.perf_counter() - t0:.1f} s")
        (tmp / "big.toml").write_text('[[models]]\nname = "big"\nbundle = "big.npz"\n')
        os.environ.update(CALIBVIZ_CONFIG=str(tmp / "big.toml"), CALIBVIZ_CACHE=str(tmp / "cache"),
                          CALIBVIZ_WARM_UMAP="0")
        (tmp / "bare.py").write_text("import streamlit as st\nst.title('bare')\nst.slider('x', 0, 10, 5)\n")
        bare = AppTest.from_file(str(tmp / "bare.py"), default_timeout=600)
        timed_run(bare)
        floor = min(timed_run(bare) for _ in range(3))
        print(f"floor: a bare Streamlit page redraws in {floor * 1000:.0f} ms under AppTest")
        print("| page | first draw (s) | redraw from cache (s) | redraw / floor | errors |")
        print("|---|---|---|---|---|")
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=600)
        at.run()
        group = next(o for o in at.sidebar.radio(key="dataset").options if o not in ("digits", "mnist1d"))
        at.sidebar.radio(key="dataset").set_value(group).run()
        for page in PAGES:
            at.switch_page(f"views/{page}.py")
            first = timed_run(at)
            again = min(timed_run(at) for _ in range(2))
            errors = "; ".join(e.value[:60] for e in at.error) or ("exception" if at.exception else "")
            print(f"| {page} | {first:.2f} | {again:.2f} | {again / floor:.1f} | {errors} |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak resident memory of this process: {peak:.2f} GB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
