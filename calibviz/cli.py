"""The command line: `python -m calibviz report|recalibrate|extract|zoo ...` (also installed as `calibviz`).

JSON output keys are stable and snake_case. Errors in inputs exit with status 2 and one line naming the problem.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from calibviz.formats import FormatError, is_checkpoint, load_bundle, read_card
from calibviz.predictions import Predictions


def _spec_for(card: dict[str, Any], split: str) -> str:
    """A dataset spec for a checkpoint: `split` may be a bare split name or a full spec."""
    return split if ":" in split else f"{card['dataset']}:{split}"


def load_predictions(path: str | Path, split: str | None, device: str | None = None,
                     default_split: str | None = "test", mask_ratio: float = 0.0) -> Predictions:
    """Predictions of a checkpoint (run through the backend) or of a bundle (optionally one split)."""
    from calibviz.backend import predict

    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: no such file")
    if is_checkpoint(path):
        card = read_card(path)
        return predict(path, _spec_for(card, split or default_split or "test"), device=device, mask_ratio=mask_ratio)
    preds = load_bundle(path)
    if split:
        preds = preds.select_split(split)
    return preds


def _print_table(rows: dict[str, Any]) -> None:
    width = max(len(k) for k in rows)
    for k, v in rows.items():
        if isinstance(v, float):
            v = f"{v:.6f}"
        print(f"{k:<{width}}  {v}")


def cmd_report(args: argparse.Namespace) -> int:
    """Metrics of a checkpoint or bundle."""
    from calibviz.report import metrics_report

    preds = load_predictions(args.path, args.split, args.device)
    out = {"name": preds.name, "data": preds.meta.get("data_spec", args.split or "all"),
           **metrics_report(preds, n_bins=args.bins, n_boot=args.boot, seed=args.seed)}
    if args.json:
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        _print_table({k: v for k, v in out.items() if not isinstance(v, dict | list)})
    return 0


def cmd_recalibrate(args: argparse.Namespace) -> int:
    """Fit a calibrator on one split and report before/after on another."""
    from calibviz.calibrators import calibrator_info, save_calibrator
    from calibviz.recalibration import fit_and_report

    info = calibrator_info(args.method)
    if info.needs_model and not is_checkpoint(args.path):
        raise ValueError(f"method {args.method!r} ({info.label}) {info.model_use}, so it needs a checkpoint, not a "
                         "predictions bundle")
    mask = args.mask_ratio if info.needs_model else 0.0
    fit = load_predictions(args.path, args.fit_split, args.device, mask_ratio=mask)
    ev = load_predictions(args.path, args.eval_split, args.device)
    out, cal = fit_and_report(fit, ev, args.method, n_bins=args.bins, n_boot=args.boot)
    if args.save:
        save_calibrator(cal, args.save)
        out["saved_to"] = str(args.save)
    if args.json:
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        b, a = out["before"], out["after"]
        print(f"method {args.method}: fitted on {args.fit_split}, evaluated on {args.eval_split}")
        print(f"parameters: {json.dumps(out['parameters'])}")
        for k in ("accuracy", "nll", "brier", "ece"):
            print(f"{k:<9} {b[k]:.6f} -> {a[k]:.6f}")
        for w in out.get("warnings", []):
            print(f"warning: {w}")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    """Run the backend once over a dataset spec and write a predictions bundle."""
    from calibviz.backend import predict
    from calibviz.formats import save_bundle

    if not is_checkpoint(args.checkpoint):
        raise FormatError(f"{args.checkpoint}: not a calibviz checkpoint (.safetensors with a card)")
    t0 = time.perf_counter()
    preds = predict(args.checkpoint, args.data, device=args.device, mask_ratio=args.mask_ratio)
    save_bundle(preds, args.out)
    print(f"wrote {args.out}: {preds.n} rows x {preds.n_classes} classes "
          f"({time.perf_counter() - t0:.2f} s)")
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    """Build or list the shipped model zoo."""
    from calibviz import zoo

    if args.zoo_cmd == "build":
        out = Path(args.out) if args.out else zoo.default_zoo_dir()
        t0 = time.perf_counter()
        paths = zoo.build_zoo(out, quick=args.quick, only=args.only or None, progress=print)
        print(f"built {len(paths)} checkpoints in {time.perf_counter() - t0:.1f} s under {out}")
        return 0
    entries = zoo.list_zoo(Path(args.root) if args.root else None)
    if args.json:
        rows = [{"name": e.name, "dataset": e.dataset, "recipe": e.recipe, "title": e.title,
                 "arch": e.arch, "path": str(e.path), "metrics": e.card.get("metrics", {}),
                 "recipe_params": e.card.get("recipe", {})} for e in entries]
        print(json.dumps(rows, indent=2, sort_keys=True))
    else:
        for e in entries:
            m = e.card.get("metrics", {}).get("test", {})
            print(f"{e.name:<24} {e.title:<36} acc {m.get('accuracy', float('nan')):.4f}  "
                  f"ece {m.get('ece', float('nan')):.4f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the command line."""
    p = argparse.ArgumentParser(prog="calibviz", description=__doc__)
    p.add_argument("--device", default=None, help="torch device (default: $CALIBVIZ_DEVICE, else cuda, else cpu)")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("report", help="calibration metrics of a checkpoint or bundle")
    r.add_argument("path")
    r.add_argument("--split", default=None,
                   help="split name (train/val/test) or, for checkpoints, a full spec like digits-noise-3:test")
    r.add_argument("--bins", type=int, default=15)
    r.add_argument("--boot", type=int, default=200, help="bootstrap resamples for the intervals (0: none)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_report)

    c = sub.add_parser("recalibrate", help="fit a calibrator on one split, report before/after on another")
    c.add_argument("path")
    c.add_argument("--method", required=True,
                   help="a calibrator key from calibviz.calibrators.REGISTRY, e.g. ts or mts (an unknown key is an "
                        "error that lists them all)")
    c.add_argument("--fit-split", default="val")
    c.add_argument("--eval-split", default="test")
    c.add_argument("--bins", type=int, default=15)
    c.add_argument("--save", default=None, help="write the fitted calibrator as JSON here")
    c.add_argument("--mask-ratio", type=float, default=0.1,
                   help="input mask ratio r for a method that needs the model (mts)")
    c.add_argument("--boot", type=int, default=200, help="bootstrap resamples for the intervals (0: none)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_recalibrate)

    e = sub.add_parser("extract", help="run a checkpoint over a dataset spec and write a predictions bundle")
    e.add_argument("checkpoint")
    e.add_argument("--data", required=True, help="dataset spec, e.g. digits:test or mnist1d-noise-3:test")
    e.add_argument("--out", required=True, help="bundle path ending in .npz or .safetensors")
    e.add_argument("--mask-ratio", type=float, default=0.0)
    e.set_defaults(func=cmd_extract)

    z = sub.add_parser("zoo", help="build or list the shipped checkpoints")
    zsub = z.add_subparsers(dest="zoo_cmd", required=True)
    zb = zsub.add_parser("build")
    zb.add_argument("--quick", action="store_true", help="a tiny build, for tests")
    zb.add_argument("--out", default=None)
    zb.add_argument("--only", nargs="*", default=None, help="names like digits/ce to build only those")
    zl = zsub.add_parser("list")
    zl.add_argument("--json", action="store_true")
    zl.add_argument("--root", default=None)
    z.set_defaults(func=cmd_zoo)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FormatError, ValueError, FileNotFoundError) as e:
        print(f"calibviz: error: {e}", file=sys.stderr)
        return 2
