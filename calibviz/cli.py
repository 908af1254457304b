"""The command line: `python -m calibviz report|recalibrate|shift-report|distill-report|extract|serve|zoo ...` (also
installed as `calibviz`).

JSON output keys are stable and snake_case. Errors in inputs exit with status 2 and one line naming the problem.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calibviz.data import DataSpec
from calibviz.formats import FormatError, is_checkpoint, load_bundle, read_card
from calibviz.predictions import Predictions

if TYPE_CHECKING:
    from calibviz.model_sources import ModelSource


def _spec_for(card: dict[str, Any], split: str) -> str:
    """A dataset spec for a checkpoint: `split` may be a bare split name or a full spec."""
    return split if ":" in split else f"{card['dataset']}:{split}"


def user_source(args: argparse.Namespace) -> ModelSource | None:
    """The user's own model named by --arch/--weights or --program (None for a zoo checkpoint or a bundle)."""
    from calibviz.model_sources import ModelSource

    arch, weights, program = getattr(args, "arch", None), getattr(args, "weights", None), getattr(args, "program", None)
    if not (arch or weights or program):
        return None
    if getattr(args, "path", None):
        raise ValueError(f"give either a checkpoint/bundle path ({args.path}) or --arch/--weights/--program, not both")
    if program and (arch or weights):
        raise ValueError("--program runs a TorchScript or torch.export file by itself; leave out --arch and --weights")
    if program:
        return ModelSource.program(program, head=args.head or "")
    if not (arch and weights):
        raise ValueError("an architecture needs both --arch MODULE:CALLABLE (or FILE.py:CALLABLE) and --weights FILE")
    return ModelSource.module(weights, arch, args.arch_kwargs or "{}", head=args.head or "")


def _user_spec(args: argparse.Namespace, split: str | None) -> DataSpec:
    """The data spec a user's model runs on: --data, with `split` (a split name) replacing its split."""
    if not getattr(args, "data", None):
        raise ValueError("the user's own model needs --data folder:PATH or tensors:PATH (an image folder or a "
                         ".npz/.safetensors file with x and y)")
    spec = DataSpec.of(args.data)
    return spec.with_split(split) if split else spec


def load_predictions(path: str | Path | None, split: str | None, device: str | None = None,
                     default_split: str | None = "test", mask_ratio: float = 0.0,
                     args: argparse.Namespace | None = None) -> Predictions:
    """Predictions of a checkpoint (run through the backend), of a bundle (optionally one split), or of the user's
    own model named in `args` (--arch/--weights or --program, on --data)."""
    from calibviz.backend import predict, predict_model

    source = user_source(args) if args is not None else None
    if source is not None:
        from calibviz.data_sources import Preprocess

        pre = Preprocess.from_json(args.transform) if getattr(args, "transform", None) else None
        return predict_model(source, _user_spec(args, split or default_split), preprocess=pre, device=device,
                             batch_size=getattr(args, "batch_size", 256), num_workers=getattr(args, "workers", 0),
                             mask_ratio=mask_ratio)
    if path is None:
        raise ValueError("name a checkpoint or bundle, or the user's own model with --arch/--weights or --program")
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

    preds = load_predictions(args.path, args.split, args.device, args=args)
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
    runnable = user_source(args) is not None or (args.path is not None and is_checkpoint(args.path))
    if info.needs_model and not runnable:
        raise ValueError(f"method {args.method!r} ({info.label}) {info.model_use}, so it needs a checkpoint, not a "
                         "predictions bundle")
    mask = args.mask_ratio if info.needs_model else 0.0
    fit = load_predictions(args.path, args.fit_split, args.device, mask_ratio=mask, args=args)
    ev = load_predictions(args.path, args.eval_split, args.device, args=args)
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


def model_path(name: str, dataset: str | None = None) -> Path:
    """A model named on the command line: a checkpoint or bundle path, else a zoo name (`mnist1d/ce`, or `ce` with
    `dataset`)."""
    from calibviz.zoo import list_zoo

    path = Path(name)
    if path.is_file():
        return path
    zoo = {e.name: e for e in list_zoo()}
    entry = zoo.get(name) or (zoo.get(f"{dataset}/{name}") if dataset else None)
    if entry is None:
        raise FormatError(f"{name}: no such file, and no zoo model of that name (zoo: {', '.join(zoo)})")
    return entry.path


def _shift_models(args: argparse.Namespace) -> list[tuple[str, DataSpec, Any]]:
    """The models of `shift-report`, each as (name, its data, a loader from a spec to its Predictions): zoo names
    (`mnist1d/ce`, or `ce` with --dataset), checkpoint paths (named by their card, e.g. `digits/ce`), or the user's
    own model (--arch/--weights or --program, on --data). A predictions bundle has no shifted copies: refused."""
    from calibviz.backend import predict, predict_model

    source = user_source(args)
    if source is not None:
        if args.models:
            raise ValueError("name either models (zoo names, checkpoints) or your own model with --arch/--weights or "
                             "--program, not both")
        from calibviz.data_sources import Preprocess

        pre = Preprocess.from_json(args.transform) if args.transform else None
        data = _user_spec(args, None)
        return [(source.label, data, lambda spec: predict_model(
            source, spec, preprocess=pre, device=args.device, batch_size=args.batch_size, num_workers=args.workers))]
    if not args.models:
        raise ValueError("name at least one model: a zoo name like mnist1d/ce, a checkpoint path, or your own model "
                         "with --arch/--weights or --program and --data")
    out = []
    for name in args.models:
        path = model_path(name, args.dataset)
        if not is_checkpoint(path):
            raise ValueError(f"{name}: a predictions bundle holds only outputs; it has no shifted copies, so "
                             "shift-report needs a checkpoint or your own model")
        card = read_card(path)
        dataset = str(card["dataset"])
        if args.dataset and dataset != args.dataset:
            raise ValueError(f"{name}: the checkpoint's card says dataset {dataset!r}, not --dataset {args.dataset!r}")
        out.append((str(card.get("name", name)), DataSpec(dataset, "test"),
                    lambda spec, p=path: predict(p, str(spec), device=args.device)))
    return out


def cmd_shift_report(args: argparse.Namespace) -> int:
    """Accuracy, ECE and NLL with intervals against corruption severity, before and after TS fitted on clean val."""
    from calibviz.metrics import Bootstrap
    from calibviz.shift import ShiftParams, ece_markdown_table, shift_curves, shift_specs, shift_text_table

    params = ShiftParams(args.bins, Bootstrap(n_boot=args.boot, seed=args.seed) if args.boot else None)
    results = []
    for name, data, load in _shift_models(args):
        specs = shift_specs(data, args.corruptions or None)
        preds = {str(s): load(s) for s in specs.all}
        results.append(shift_curves(preds[str(specs.fit)], preds[str(specs.clean)],
                                    {(s.corruption, s.severity): preds[str(s)] for s in specs.shifted}, params,
                                    name=name))
    if args.json:
        print(json.dumps({"models": [c.to_json() for c in results]}, indent=2, sort_keys=True))
    elif args.markdown:
        print(ece_markdown_table([c.to_json() for c in results]), end="")
    else:
        print(shift_text_table(results), end="")
    return 0


def cmd_distill_report(args: argparse.Namespace) -> int:
    """Fidelity of students to a teacher on the same rows: agreement, KL at T = 1, accuracy, ECE, NLL, intervals."""
    from calibviz.distillation import distill_report
    from calibviz.metrics import Bootstrap

    dataset = DataSpec.of(args.data).name if ":" in args.data else None
    teacher, *students = (load_predictions(model_path(m, dataset), args.data, args.device) for m in
                          [args.teacher, *args.students])
    out = distill_report(teacher, students, n_bins=args.bins, bootstrap=Bootstrap(n_boot=args.boot, seed=args.seed))
    out["data"] = args.data
    if args.json:
        print(json.dumps(out, indent=2, sort_keys=True))
        return 0
    print(f"teacher {out['teacher']} on {args.data} ({out['n']} rows); ECE: {out['ece_convention']}; "
          f"intervals: {out['interval']}")
    keys = ("agreement", "kl", "accuracy", "ece", "nll")
    print(f"{'student':<28}" + "".join(f"{k:>27}" for k in keys))
    for row in out["students"]:
        cells = "".join(f"{row[k]['value']:>10.4f} [{row[k]['low']:.4f}, {row[k]['high']:.4f}]" for k in keys)
        print(f"{row['name']:<28}{cells}")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    """Run the backend once over a dataset spec and write a predictions bundle: a zoo checkpoint on built-in data,
    or the user's own model (--arch/--weights or --program) on an image folder or tensor file."""
    from calibviz.backend import predict
    from calibviz.formats import save_bundle

    t0 = time.perf_counter()
    if user_source(args) is not None:
        preds = load_predictions(None, None, args.device, default_split=None, mask_ratio=args.mask_ratio, args=args)
    else:
        if args.path is None or not is_checkpoint(args.path):
            raise FormatError(f"{args.path}: not a calibviz checkpoint (.safetensors with a card); for your own "
                              "model use --arch/--weights or --program")
        preds = predict(args.path, args.data, device=args.device, mask_ratio=args.mask_ratio)
    save_bundle(preds, args.out)
    feats = "with" if preds.features is not None else "without"
    print(f"wrote {args.out}: {preds.n} rows x {preds.n_classes} classes, {feats} features "
          f"({time.perf_counter() - t0:.2f} s)")
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    """Build or list the shipped model zoo."""
    from calibviz import zoo

    if args.zoo_cmd == "build":
        out = Path(args.out) if args.out else zoo.default_zoo_dir()
        t0 = time.perf_counter()
        paths = zoo.build_zoo(out, quick=args.quick, only=args.only or None, progress=print,
                              reuse_teachers=args.reuse_teachers)
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


def app_script() -> Path:
    """The dashboard's Streamlit script: app.py at the repository root, beside the calibviz package."""
    return Path(__file__).resolve().parent.parent / "app.py"


def serve_command(port: int) -> list[str]:
    """The command line that starts the dashboard on 127.0.0.1:`port` with this Python's Streamlit."""
    return [sys.executable, "-m", "streamlit", "run", str(app_script()), "--server.address", "127.0.0.1",
            "--server.port", str(port)]


def serve_environment(config: Path | None, base: dict[str, str]) -> dict[str, str]:
    """`base` with $CALIBVIZ_CONFIG set to the absolute config path (left as it is when there is no config)."""
    from calibviz.config import CONFIG_ENV

    return {**base, CONFIG_ENV: str(config)} if config is not None else dict(base)


def serve_config(args: argparse.Namespace) -> Path | None:
    """The absolute config path `serve` uses: --config, else $CALIBVIZ_CONFIG, else None (the zoo only)."""
    import os

    from calibviz.config import config_path_from_env

    return Path(os.path.abspath(Path(args.config).expanduser())) if args.config else config_path_from_env()


def cmd_serve(args: argparse.Namespace) -> int:
    """Check the config in full (a bad one exits 2 naming the file, model and field), then run the dashboard
    (Streamlit on 127.0.0.1) with it until Ctrl-C."""
    import os
    import subprocess

    from calibviz.config import check_config

    if not 0 < args.port < 65536:
        raise ValueError(f"--port {args.port} is not a TCP port (1-65535)")
    config = serve_config(args)
    if config is not None:
        names = ", ".join(e.name for e in check_config(config))
        print(f"calibviz: config {config}: {names}")
    print(f"calibviz: serving the dashboard at http://127.0.0.1:{args.port}  (Ctrl-C to stop)", flush=True)
    with subprocess.Popen(serve_command(args.port), env=serve_environment(config, dict(os.environ))) as proc:
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:  # Streamlit got the same Ctrl-C: let it shut down by itself
                continue


def _model_arguments(p: argparse.ArgumentParser, data_required: bool = False) -> None:
    """The options that name the user's own model and data (instead of a checkpoint or bundle path)."""
    g = p.add_argument_group("your own model and data")
    g.add_argument("--arch", default=None, help="PKG.MODULE:CALLABLE or path/to/file.py:CALLABLE that builds the model")
    g.add_argument("--arch-kwargs", default=None, help='keyword arguments as JSON, e.g. {"num_classes": 10}')
    g.add_argument("--weights", default=None, help=".safetensors, or a .pt/.pth state dict (read with weights_only)")
    g.add_argument("--program", default=None, help="a TorchScript file or a torch.export .pt2 program")
    g.add_argument("--head", default=None, help="qualified name of the classification head (default: last nn.Linear)")
    g.add_argument("--data", required=data_required, default=None,
                   help="dataset spec: digits:test, mnist1d-noise-3:test, folder:DIR[:SPLIT], tensors:FILE[:SPLIT]")
    g.add_argument("--transform", default=None, help='preprocessing JSON: {"resize": 256, "center_crop": 224, '
                                                     '"mean": [...], "std": [...]}')
    g.add_argument("--batch-size", type=int, default=256)
    g.add_argument("--workers", type=int, default=0, help="DataLoader worker processes reading the inputs")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the command line."""
    p = argparse.ArgumentParser(prog="calibviz", description=__doc__)
    p.add_argument("--device", default=None, help="torch device (default: $CALIBVIZ_DEVICE, else cuda, else cpu)")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("report", help="calibration metrics of a checkpoint, a bundle or your own model")
    r.add_argument("path", nargs="?", default=None)
    r.add_argument("--split", default=None,
                   help="split name (train/val/test) or, for checkpoints, a full spec like digits-noise-3:test")
    r.add_argument("--bins", type=int, default=15)
    r.add_argument("--boot", type=int, default=200, help="bootstrap resamples for the intervals (0: none)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--json", action="store_true")
    _model_arguments(r)
    r.set_defaults(func=cmd_report)

    c = sub.add_parser("recalibrate", help="fit a calibrator on one split, report before/after on another")
    c.add_argument("path", nargs="?", default=None)
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
    _model_arguments(c)
    c.set_defaults(func=cmd_recalibrate)

    sh = sub.add_parser("shift-report", help="accuracy, ECE and NLL against corruption severity, before and after "
                                             "temperature scaling fitted on the clean val split")
    sh.add_argument("models", nargs="*", metavar="MODEL",
                    help="zoo names (mnist1d/ce, or ce with --dataset) or checkpoint paths")
    sh.add_argument("--dataset", default=None, help="the built-in dataset of the models (default: from each card)")
    sh.add_argument("--corruptions", nargs="*", default=None, help="some of the corruptions (default: all offered)")
    sh.add_argument("--bins", type=int, default=15)
    sh.add_argument("--boot", type=int, default=200, help="bootstrap resamples for the intervals (0: none)")
    sh.add_argument("--seed", type=int, default=0)
    out_format = sh.add_mutually_exclusive_group()
    out_format.add_argument("--json", action="store_true")
    out_format.add_argument("--markdown", action="store_true", help="the ECE table (before -> after TS) as Markdown")
    _model_arguments(sh)
    sh.set_defaults(func=cmd_shift_report)

    d = sub.add_parser("distill-report", help="how closely students follow a teacher: top-1 agreement and KL at "
                                              "T = 1, with accuracy, ECE and NLL, on the same rows")
    d.add_argument("teacher", metavar="TEACHER", help="a zoo name (mnist1d/ce), a checkpoint or a bundle")
    d.add_argument("students", nargs="+", metavar="STUDENT", help="zoo names, checkpoints or bundles")
    d.add_argument("--data", default="test", help="a dataset spec (mnist1d:test, digits:train) or, for bundles, a "
                                                  "split name (default: test)")
    d.add_argument("--bins", type=int, default=15)
    d.add_argument("--boot", type=int, default=200, help="bootstrap resamples for the intervals")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--json", action="store_true")
    d.add_argument("--device", default=None)
    d.set_defaults(func=cmd_distill_report)

    e = sub.add_parser("extract", help="run a model over a dataset spec and write a predictions bundle")
    e.add_argument("path", nargs="?", default=None, metavar="checkpoint")
    e.add_argument("--out", required=True, help="bundle path ending in .npz or .safetensors")
    e.add_argument("--mask-ratio", type=float, default=0.0)
    _model_arguments(e, data_required=True)
    e.set_defaults(func=cmd_extract)

    s = sub.add_parser("serve", help="start the dashboard, with the models of a config file beside the zoo")
    s.add_argument("--config", default=None, help="a TOML file of [[models]] tables (default: $CALIBVIZ_CONFIG)")
    s.add_argument("--port", type=int, default=8501)
    s.set_defaults(func=cmd_serve)

    z = sub.add_parser("zoo", help="build or list the shipped checkpoints")
    zsub = z.add_subparsers(dest="zoo_cmd", required=True)
    zb = zsub.add_parser("build")
    zb.add_argument("--quick", action="store_true", help="a tiny build, for tests")
    zb.add_argument("--out", default=None)
    zb.add_argument("--only", nargs="*", default=None, help="names like digits/ce to build only those")
    zb.add_argument("--reuse-teachers", action="store_true",
                    help="load a teacher that --only did not name from --out instead of rebuilding it (so adding a "
                         "student never rewrites its teacher)")
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
