"""The metrics report behind `calibviz report`: every calibration metric with bootstrap intervals, as a JSON-ready
dict with stable snake_case keys; and the texts made from it: the metrics table of the Reliability page, its captions,
and the generated table of docs/metrics.md (`python -m calibviz.report` rewrites it).

Keys: METRIC_KEYS (one per entry of `calibviz.metrics.METRICS`, see docs/metrics.md); plus convention,
mass_convention, n_bins, n, n_boot, seed, interval_level and intervals {key: [lo, hi]}. Undefined values are null.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from calibviz.metrics import METRIC_KEYS, METRICS, Binning, Bootstrap, SmoothCalibration, calibration_metrics
from calibviz.predictions import Predictions

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from calibviz.data import DataSpec

View = Literal["top", "classwise", "smooth"]
DOCS_BEGIN = ("<!-- BEGIN metrics table: generated from calibviz.metrics.METRICS by `python -m calibviz.report`; "
              "edit the registry, not this table -->")
DOCS_END = "<!-- END metrics table -->"
DOCS_PATH = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"


def _plain(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def metrics_report(preds: Predictions, n_bins: int = 15, n_boot: int = 200, seed: int = 0,
                   device: str | torch.device | None = None) -> dict[str, Any]:
    """Every calibration metric of `preds` (all rows) with seeded percentile-bootstrap intervals.

    Plain floats only (None where undefined, e.g. AUROC when every prediction is correct), so the
    dict dumps to JSON as is. n_boot = 0 skips the intervals. Runs on `device` (a torch.device is used
    as is; a name or None goes through `calibviz.devices.pick_device`: $CALIBVIZ_DEVICE, else CUDA, else CPU).
    """
    import torch

    if isinstance(device, torch.device):
        dev = device
    else:  # the one default the whole package shares, so the CLI and the pages run where inference runs
        from calibviz.devices import pick_device

        dev = pick_device(device)
    probs = torch.from_numpy(np.ascontiguousarray(preds.probabilities())).to(dev)
    labels = torch.from_numpy(np.ascontiguousarray(preds.labels)).to(dev)
    boot = Bootstrap(n_boot=n_boot, seed=seed) if n_boot > 0 else None
    ms = calibration_metrics(probs, labels, n_bins=n_bins, bootstrap=boot)
    out: dict[str, Any] = {k: _plain(ms.values[k]) for k in METRIC_KEYS}
    out.update(convention=f"top-label, {ms.convention}", n_bins=int(n_bins), n=ms.n,
               n_boot=int(n_boot), seed=int(seed),
               interval_level=boot.level if boot else None,
               mass_convention=Binning(n_bins, "mass").convention,
               intervals={k: [_plain(lo), _plain(hi)] for k, (lo, hi) in ms.intervals.items()})
    return out


# ---------------------------------------------------------------------------------------------
# The report as text: table cells, the metrics table, captions


def interval_text(value: float | None, interval: Sequence[float | None] | None, space: str = "\u00a0") -> str:
    """'value [low, high]' to 4 decimals; '—' if None. The spaces are no-break spaces by default, so a narrow table
    column never splits a cell; a figure note, which wraps by itself, passes a plain space."""
    if value is None:
        return "—"
    if not interval or None in interval:
        return f"{value:.4f}"
    return f"{value:.4f}{space}[{interval[0]:.4f},{space}{interval[1]:.4f}]"


def metrics_table(reports: Mapping[str, Mapping[str, Any]], n_bins: int) -> pd.DataFrame:
    """Rows: the metrics of METRICS, by label; columns: one per report ('value [low, high]'), then what it measures."""
    import pandas as pd

    rows = []
    for m in METRICS:
        row = {"metric": m.label}
        row.update({name: interval_text(rep[m.key], rep["intervals"].get(m.key)) for name, rep in reports.items()})
        row["what it measures"] = m.describe(n_bins)
        rows.append(row)
    return pd.DataFrame(rows).set_index("metric")


def conventions_note(report: Mapping[str, Any], view: View, scheme: Literal["width", "mass"]) -> str:
    """Markdown saying exactly which convention the diagrams of `view` and the metrics table of `report` use."""
    n_bins, n_boot = report["n_bins"], report["n_boot"]
    if view == "smooth":
        diagrams = (f"top-label confidence (the largest probability), smoothed by a {SmoothCalibration.convention}; "
                    f"the band is a pointwise 95% percentile bootstrap over {n_boot} resamples (seed 0)")
    else:
        what = ("top-label: confidence is the largest probability, a prediction is right when the label has it"
                if view == "top" else "classwise: the predicted probability p_k of the chosen class k against "
                "the share of rows whose label is k")
        diagrams = (f"{what}; {Binning(n_bins, scheme).convention}; bars with 95% Wilson intervals of "
                    "each bin's accuracy (a binomial interval given the bin's count)")
    return (f"**Diagrams:** {diagrams}. **Table:** `ece`, `rmsce`, `mce` and classwise ECE use {report['convention']} "
            f"(the `ece` of `calibviz report --bins {n_bins}`); the equal-mass rows and debiased L2 use "
            f"{report['mass_convention']}. Intervals: 95% percentile bootstrap, {n_boot} resamples of the "
            f"{report['n']:,} rows, seed {report['seed']}. Binned errors are biased upward, so for a nearly calibrated "
            "model the interval can lie above the estimate.")


def report_command(data: DataSpec, n_bins: int, n_boot: int) -> str:
    """The `calibviz report` command line that prints the same numbers as JSON, for the rows `data` selects."""
    split = f" --split {data}" if data.builtin else ("" if data.split == "all" else f" --split {data.split}")
    return f"python -m calibviz report MODEL{split} --bins {n_bins} --boot {n_boot} --json"


def table_note(data: DataSpec, n_bins: int, n_boot: int) -> str:
    """Markdown under the metrics table: how to read a cell, which way is better, and the same numbers as JSON."""
    higher = " and ".join(m.label for m in METRICS if not m.lower_is_better)
    return ("Each cell is the estimate on all rows, then [low, high] of its bootstrap interval. Lower is better "
            f"for every row except {higher}. When a model errs the same way across the whole confidence "
            "range (every bin's gap, and the smoothed curve, on one side of the diagonal), the top-label ECE, "
            "equal-width or equal-mass, and smooth ECE all equal |mean confidence − accuracy|, whatever the "
            "binning; the binning matters where over- and under-confident regions sit side by side, or where "
            f"bins hold few predictions. The same numbers, as JSON: `{report_command(data, n_bins, n_boot)}`.")


# ---------------------------------------------------------------------------------------------
# The generated table of docs/metrics.md


def metrics_doc_table() -> str:
    """The Markdown table of every metric of METRICS: key, label on the page, bins, better direction, definition."""
    bins = {"width": "equal-width", "mass": "equal-mass", None: "none"}
    lines = ["| key | label | bins | better | definition |", "|---|---|---|---|---|"]
    for m in METRICS:
        better = "lower" if m.lower_is_better else "higher"
        lines.append(f"| `{m.key}` | {m.label} | {bins[m.binning]} | {better} | {m.definition} |")
    return "\n".join(lines)


def regenerate_metrics_doc(text: str) -> str:
    """`text` (docs/metrics.md) with the part between DOCS_BEGIN and DOCS_END replaced by `metrics_doc_table()`."""
    start, end = text.find(DOCS_BEGIN), text.find(DOCS_END)
    if start < 0 or end < start:
        raise ValueError(f"no generated section: expected the lines {DOCS_BEGIN!r} and {DOCS_END!r}")
    return f"{text[:start]}{DOCS_BEGIN}\n{metrics_doc_table()}\n{text[end:]}"


def _main(argv: list[str]) -> int:
    """`python -m calibviz.report [--check] [PATH]`: rewrite the generated table of PATH (docs/metrics.md), or with
    --check only say whether it is up to date (exit status 1 if not)."""
    check = "--check" in argv
    paths = [a for a in argv if a != "--check"]
    path = Path(paths[0]) if paths else DOCS_PATH
    text = path.read_text(encoding="utf-8")
    new = regenerate_metrics_doc(text)
    if check:
        print(f"{path}: " + ("up to date" if new == text else "out of date; run python -m calibviz.report"))
        return int(new != text)
    if new != text:
        path.write_text(new, encoding="utf-8")
    print(f"{path}: {'rewritten' if new != text else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
