"""Row-order check of the equal-mass metrics: the same predictions in 20 seeded row orders, and the range of each
metric across them (issue 15: ties must share a bin, so shuffling rows changes nothing).

Data: "all ties" is 1,000 rows that all predict (0.6, 0.3, 0.1) with labels drawn from those probabilities;
"rounded" is a seeded miscalibrated 4-class model rounded to 2 decimals; "continuous" is the same unrounded.

Usage:
    .venv/bin/python bench/row_order.py [--orders 20] [--metrics-module calibviz.metrics]
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

METRICS = ("ece_mass", "rmsce_mass", "mce_mass", "debiased_l2_ce")


def datasets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The three kinds of data, seeded."""
    rng = np.random.default_rng(0)
    ties = np.tile([0.6, 0.3, 0.1], (1000, 1))
    out = {"all ties": (ties, rng.choice(3, 1000, p=[0.6, 0.3, 0.1]))}
    logits = rng.normal(size=(2000, 4)) * 2.5
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(4, p=np.sqrt(r) / np.sqrt(r).sum()) for r in p])  # over-confident
    out["rounded"] = (np.round(p, 2), y)
    out["continuous"] = (p, y)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=20)
    ap.add_argument("--metrics-module", default="calibviz.metrics", help="module to test (an older copy, say)")
    a = ap.parse_args(argv)
    m = importlib.import_module(a.metrics_module)
    mass = m.Binning(15, "mass")
    fns = {"ece_mass": lambda p, y: m.ece(p, y, mass), "rmsce_mass": lambda p, y: m.rmsce(p, y, mass),
           "mce_mass": lambda p, y: m.mce(p, y, mass), "debiased_l2_ce": lambda p, y: m.debiased_l2_ce(p, y, mass)}
    print(f"{a.orders} seeded row orders, 15 equal-mass bins, module {a.metrics_module}\n")
    print("| data | " + " | ".join(f"{k} min-max" for k in METRICS) + " |")
    print("|---|" + "---|" * len(METRICS))
    for name, (p, y) in datasets().items():
        vals = {k: [] for k in METRICS}
        for seed in range(a.orders):
            perm = np.random.default_rng(seed).permutation(len(y))
            for k, f in fns.items():
                vals[k].append(f(p[perm], y[perm]))
        cells = [f"{min(v):.6f}-{max(v):.6f} (spread {max(v) - min(v):.1e})" for v in vals.values()]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
