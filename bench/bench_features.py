"""Measure UMAP cost (cold / warm / disk-cache hit at 5k and 20k points) and the feature and logit
numbers of the zoo checkpoints. Prints markdown.

    python bench/bench_features.py umap [--sizes 5000 20000]
    python bench/bench_features.py zoo  [--datasets digits mnist1d] [--json out.json]

`umap` runs each size in a fresh subprocess (so "cold" includes importing umap-learn and numba's
compilation), with its own empty cache folder. Features are the zoo's mnist1d CE model's penultimate
features (train + test) when that checkpoint exists, else a seeded synthetic 10-class mixture.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RECIPES = ("ce", "ls", "mixup", "focal", "kd_ce_t1", "kd_ce_t4", "kd_ls_t1", "kd_ls_t4", "dm", "mdt")


# ------------------------------------------------------------------------------------------ UMAP

def _bench_features(n: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(features, labels, description) with at least n rows."""
    ck = REPO / "checkpoints" / "mnist1d" / "ce.safetensors"
    if ck.is_file():
        from calibviz.backend import predict

        parts = [predict(ck, f"mnist1d:{s}") for s in ("train", "test", "val")]
        x = np.concatenate([p.features for p in parts])
        y = np.concatenate([p.labels for p in parts])
        if len(x) >= n:
            return x[:n], y[:n], f"zoo mnist1d/ce penultimate features (D={x.shape[1]})"
    rng = np.random.default_rng(0)
    d = 64
    centres = rng.normal(0, 3, (10, d))
    y = rng.integers(0, 10, n)
    x = (centres[y] + rng.normal(0, 1, (n, d))).astype(np.float32)
    return x, y, f"synthetic 10-class Gaussian mixture (D={d})"


def umap_once(n: int) -> dict:
    """One fresh-process measurement: import, cold fit, warm fit, cache store and cache hit."""
    t0 = time.perf_counter()
    from calibviz import features as F

    x, y, what = _bench_features(n)
    params = F.UmapParams(sample_size=None)
    t_import = time.perf_counter()
    import umap  # noqa: F401

    t_imported = time.perf_counter()
    F.fit_umap(x, params)
    t_cold = time.perf_counter()
    F.fit_umap(x, params)
    t_warm = time.perf_counter()
    stored = F.umap_embedding(x, y, source_digest="bench", params=params)
    hit = F.umap_embedding(x, y, source_digest="bench", params=params)
    assert hit.from_cache and not stored.from_cache

    from calibviz.plots.features import embedding_figure
    from calibviz.predictions import Predictions

    preds = Predictions(labels=y, logits=np.eye(10, dtype=np.float32)[y] * 3, sample_id=np.arange(n))
    t_fig0 = time.perf_counter()
    fig = embedding_figure(hit.coords, preds, "class")
    payload = fig.to_json()
    t_fig = time.perf_counter()
    return {"n": n, "features": what, "prepare_s": t_import - t0, "import_umap_s": t_imported - t_import,
            "cold_fit_s": t_cold - t_imported, "warm_fit_s": t_warm - t_cold,
            "store_fit_s": stored.seconds, "cache_hit_s": hit.seconds,
            "figure_from_cache_s": t_fig - t_fig0, "figure_json_mb": len(payload) / 1e6}


def warm_once(n: int) -> dict:
    """Fresh process: warm_umap_jit() first, then one fit of n points."""
    from calibviz import features as F

    x, _, what = _bench_features(n)
    t0 = time.perf_counter()
    import umap  # noqa: F401

    t1 = time.perf_counter()
    warm_s = F.warm_umap_jit()
    t2 = time.perf_counter()
    F.fit_umap(x, F.UmapParams(sample_size=None))
    t3 = time.perf_counter()
    return {"n": n, "features": what, "import_umap_s": t1 - t0, "warm_jit_s": warm_s, "fit_after_warm_s": t3 - t2}


def _fresh_process(mode: str, n: int, empty_numba_cache: bool) -> dict:
    """Run one measurement in a new interpreter with an empty calibviz cache; with
    empty_numba_cache, NUMBA_CACHE_DIR points at an empty folder so nothing compiled is reused."""
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as numba_cache:
        env = {**os.environ, "CALIBVIZ_CACHE": cache}
        if empty_numba_cache:
            env["NUMBA_CACHE_DIR"] = numba_cache
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, __file__, mode, "--n", str(n)], env=env, check=True,
                             capture_output=True, text=True)
        row = json.loads(res.stdout.strip().splitlines()[-1])
        row["process_s"] = time.perf_counter() - t0
        row["empty_numba_cache"] = empty_numba_cache
        print(json.dumps(row), file=sys.stderr)
        return row


def run_umap(sizes: list[int]) -> None:
    rows = [_fresh_process("umap-once", n, empty) for empty in (True, False) for n in sizes]
    warm_rows = [_fresh_process("warm-once", n, True) for n in sizes]
    print(f"features: {rows[0]['features']}\n")
    print("| points | numba disk cache | fresh process total | import umap | cold fit | warm fit (same process) | "
          "disk-cache hit | figure from cache (build + to_json) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        numba = "empty (full compile)" if r["empty_numba_cache"] else "present"
        print(f"| {r['n']:,} | {numba} | {r['process_s']:.1f} s | {r['import_umap_s']:.1f} s | "
              f"{r['cold_fit_s']:.1f} s | {r['warm_fit_s']:.1f} s | {r['cache_hit_s'] * 1e3:.1f} ms | "
              f"{r['figure_from_cache_s'] * 1e3:.0f} ms ({r['figure_json_mb']:.2f} MB) |")
    print("\n| points | import umap | warm_umap_jit() (empty numba cache) | first real fit after warming |")
    print("|---:|---:|---:|---:|")
    for r in warm_rows:
        print(f"| {r['n']:,} | {r['import_umap_s']:.1f} s | {r['warm_jit_s']:.1f} s | {r['fit_after_warm_s']:.1f} s |")


# ------------------------------------------------------------------------------------------- zoo

def zoo_numbers(datasets: list[str], mask_ratios: list[float]) -> dict:
    """Per dataset and recipe: accuracy, ECE, max-logit concentration, and R² on train and test;
    plus CKA between the teachers and their students on test."""
    from calibviz.backend import predict
    from calibviz.features import class_separation, linear_cka
    from calibviz.logit_stats import compute_logit_stats, summarize_statistic
    from calibviz.metrics import basic_metrics

    out: dict = {}
    for ds in datasets:
        present = [r for r in RECIPES if (REPO / "checkpoints" / ds / f"{r}.safetensors").is_file()]
        res: dict = {}
        test_feats = {}
        for r in present:
            ck = REPO / "checkpoints" / ds / f"{r}.safetensors"
            row: dict = {}
            for split in ("train", "test"):
                p = predict(ck, f"{ds}:{split}")
                s = compute_logit_stats(p)
                d = summarize_statistic({r: s}, "max_logit").by_model[r]
                m = basic_metrics(p.probabilities(), p.labels)
                row[split] = {"accuracy": m["accuracy"], "ece": m["ece"], "nll": m["nll"],
                              "max_logit_median": d["all"].median, "max_logit_std": d["all"].std,
                              "max_logit_iqr": d["all"].iqr,
                              "max_logit_std_correct": d["correct"].std, "max_logit_iqr_correct": d["correct"].iqr,
                              "r2": class_separation(p.features, p.labels)}
                if split == "test":
                    test_feats[r] = p.features
            res[r] = row
        pairs = [("ce", "ls"), ("ce", "kd_ce_t1"), ("ce", "kd_ce_t4"), ("ls", "kd_ls_t1"), ("ls", "kd_ls_t4"),
                 ("ce", "dm"), ("ce", "mdt")]
        cka = {f"{a}~{b}": linear_cka(test_feats[a], test_feats[b]) for a, b in pairs
               if a in test_feats and b in test_feats}
        masked: dict = {}
        for r in ("ce", "ls", "dm", "mdt"):
            if r not in present:
                continue
            ck = REPO / "checkpoints" / ds / f"{r}.safetensors"
            for ratio in [0.0, *mask_ratios]:
                p = predict(ck, f"{ds}:test", mask_ratio=ratio)
                d = summarize_statistic({r: compute_logit_stats(p)}, "max_logit").by_model[r]["all"]
                masked[f"{r}@{ratio:g}"] = {"median": d.median, "std": d.std, "iqr": d.iqr,
                                           "ece": basic_metrics(p.probabilities(), p.labels)["ece"]}
        out[ds] = {"recipes": res, "cka_test": cka, "masked_test": masked}
    return out


def print_zoo(nums: dict) -> None:
    for ds, block in nums.items():
        print(f"\n### {ds}\n")
        print("| recipe | acc (test) | ECE (test) | max-logit median | std | IQR | std (correct) | "
              "R² train | R² test |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r, row in block["recipes"].items():
            te, tr = row["test"], row["train"]
            print(f"| {r} | {te['accuracy']:.3f} | {te['ece']:.3f} | {te['max_logit_median']:.2f} | "
                  f"{te['max_logit_std']:.2f} | {te['max_logit_iqr']:.2f} | {te['max_logit_std_correct']:.2f} | "
                  f"{tr['r2']:.3f} | {te['r2']:.3f} |")
        if block["cka_test"]:
            print("\nlinear CKA on test features: " + ", ".join(f"{k} {v:.3f}" for k, v in block["cka_test"].items()))
        if block.get("masked_test"):
            print("\n| model @ mask ratio (test inputs) | max-logit median | std | IQR | ECE |")
            print("|---|---:|---:|---:|---:|")
            for k, v in block["masked_test"].items():
                print(f"| {k} | {v['median']:.2f} | {v['std']:.2f} | {v['iqr']:.2f} | {v['ece']:.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["umap", "zoo", "umap-once", "warm-once"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--datasets", nargs="+", default=["digits", "mnist1d"])
    ap.add_argument("--mask-ratios", type=float, nargs="*", default=[0.25, 0.5])
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    if a.mode == "umap-once":
        print(json.dumps(umap_once(a.n)))
    elif a.mode == "warm-once":
        print(json.dumps(warm_once(a.n)))
    elif a.mode == "umap":
        run_umap(a.sizes)
    else:
        nums = zoo_numbers(a.datasets, a.mask_ratios)
        print_zoo(nums)
        if a.json:
            a.json.write_text(json.dumps(nums, indent=2))


if __name__ == "__main__":
    main()
