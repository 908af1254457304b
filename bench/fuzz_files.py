"""Fuzz every file loader with the seeded malformed files of tests/malformed_files.py and count what happened.

Each seed writes its files into a temporary folder, runs every one through its loader in-process (load_bundle,
load_checkpoint, build_user_model, open_inputs) and a sample through `calibviz.cli.main` in one subprocess, then
prints a table per kind: files, clear errors (the loader's own error, one line naming the file), correct successes,
tracebacks (any other exception, or a traceback / unexpected exit status on the command line), wrong successes (a
malformed file that loaded), wrong errors (a valid file refused) and misleading errors (not one line, or not naming
the file). Every case that is not a clear error or a correct success is listed with its message.

Usage: .venv/bin/python bench/fuzz_files.py [--seeds 3] [--cli-sample 40] [--out bench/results_fuzz.md]
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.malformed_files import (  # noqa: E402  (the repository root must be importable first)
    KINDS,
    MARKER,
    STATUSES,
    cli_sample,
    malformed_files,
    run_case,
    run_cli,
)

COLUMNS = {"clear-error": "clear errors", "correct-success": "correct successes", "traceback": "tracebacks",
           "wrong-success": "wrong successes", "wrong-error": "wrong errors", "misleading": "misleading errors"}


def _table(title: str, rows: dict[str, collections.Counter]) -> list[str]:
    head = ["kind", "files", *(COLUMNS[s] for s in STATUSES)]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    total: collections.Counter = collections.Counter()
    for kind, counts in rows.items():
        total += counts
        lines.append(f"| {kind} | {sum(counts.values())} | " + " | ".join(str(counts[s]) for s in STATUSES) + " |")
    lines.append(f"| **all** | **{sum(total.values())}** | " + " | ".join(f"**{total[s]}**" for s in STATUSES)
                 + " |")
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=1, help="how many seeds (0, 1, ...) to generate and run")
    p.add_argument("--cli-sample", type=int, default=40, help="cases per seed run through the command line")
    p.add_argument("--out", default=None, help="also write the report (markdown) here")
    args = p.parse_args(argv)

    lines: list[str] = []
    problems: list[str] = []
    in_process = {k: collections.Counter() for k in KINDS}
    on_cli = {k: collections.Counter() for k in KINDS}
    times = collections.Counter()
    marker_seen = False
    with tempfile.TemporaryDirectory(prefix="calibviz-fuzz-") as tmp:
        os.environ["CALIBVIZ_CACHE"] = str(Path(tmp) / "cache")  # the CLI's prediction cache, thrown away after
        for seed in range(args.seeds):
            folder = Path(tmp) / f"seed{seed}"
            t0 = time.perf_counter()
            cases = malformed_files(folder, seed=seed)
            times["generate"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            for case in cases:
                o = run_case(case)
                in_process[case.kind][o.status] += 1
                if o.status not in ("clear-error", "correct-success"):
                    problems.append(f"- seed {seed}, in-process, {o.status}: `{case.path.name}` ({case.family}): "
                                    f"{o.message[:300]}")
            times["in-process"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            sample = cli_sample(cases, seed=seed, size=args.cli_sample)
            for o in run_cli(sample, folder, seed=seed):
                on_cli[o.case.kind][o.status] += 1
                if o.status not in ("clear-error", "correct-success"):
                    problems.append(f"- seed {seed}, CLI `{' '.join(o.argv[:1])}`, {o.status}: `{o.case.path.name}` "
                                    f"(exit {o.code}): {' '.join(o.stderr.split())[:300]}")
            times["cli"] += time.perf_counter() - t0
            marker_seen |= (folder / MARKER).exists()

    shown = [f"--seeds {args.seeds}"] if args.seeds != 1 else []
    shown += [f"--cli-sample {args.cli_sample}"] if args.cli_sample != 40 else []
    cmd = " ".join([".venv/bin/python bench/fuzz_files.py", *shown])
    lines += ["# File-loader fuzz", "", f"Command: `{cmd}`", "",
              f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared), Python {platform.python_version()}, "
              f"{platform.system()}, load average {os.getloadavg()[0]:.1f}; {time.strftime('%Y-%m-%d')}.", "",
              f"Seeds 0..{args.seeds - 1}; time: generate {times['generate']:.1f} s, in-process "
              f"{times['in-process']:.1f} s, command line {times['cli']:.1f} s (one subprocess per seed).", ""]
    lines += _table("Every file through its loader, in-process", {k: v for k, v in in_process.items() if v})
    lines += _table(f"A sample through `calibviz.cli.main` ({args.cli_sample}+ per seed: every bundle family, every "
                    "kind, the pickle payloads)", {k: v for k, v in on_cli.items() if v})
    lines += [f"Pickle payload marker `{MARKER}` created: **{'YES' if marker_seen else 'no'}**.", ""]
    lines += ["### Cases that went wrong", "", *(problems or ["none"]), ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    bad = marker_seen or any(v[s] for counts in (in_process, on_cli) for v in counts.values()
                             for s in STATUSES[2:])
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
