"""A seeded fuzz of every file loader (tests/malformed_files.py): each malformed file is refused with the loader's
own error, one line naming the file; each valid edge case loads; no other exception escapes; the command line exits
2 with one line (never a traceback) or 0; and no pickle payload ever runs."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from tests.malformed_files import (
    KINDS,
    MARKER,
    Case,
    cli_sample,
    malformed_files,
    pickle_globals,
    run_case,
    run_cli,
)

SEED = 0


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Case]]:
    folder = tmp_path_factory.mktemp("fuzz")
    return folder, malformed_files(folder, seed=SEED)


def _report(bad: list) -> str:
    return "\n".join(f"{o.status}: {o.case.family} {o.case.path.name}: {(o.message or '')[:300]}" for o in bad)


def test_generator_writes_every_family_and_is_seeded(fuzz: tuple[Path, list[Case]],
                                                       tmp_path: Path) -> None:
    folder, cases = fuzz
    assert len(cases) >= 250 and len({c.path for c in cases}) == len(cases)
    assert all(c.path.is_file() and c.path.parent == folder for c in cases)
    assert {c.kind for c in cases} == set(KINDS) and {c.expect for c in cases} == {"error", "ok"}
    assert sum(c.expect == "ok" for c in cases) >= 15
    families = {c.family for c in cases}
    for family in ("npz-random", "npz-truncate", "npz-bitflip", "npz-member-name", "npz-duplicate", "npz-npy-header",
                   "npz-huge-header", "npz-object", "npz-structured", "npz-encrypted", "npz-compression",
                   "npz-zipbomb", "npz-shape", "npz-labels", "npz-probs", "npz-values", "npz-optional", "npz-meta",
                   "st-header-length", "st-header-json", "st-entry", "st-offsets", "st-dtype", "st-shape", "st-size",
                   "st-metadata", "ckpt-card", "ckpt-weights", "ckpt-truncate", "pt-pickle", "pt-truncate",
                   "pt-not-zip", "pt-nan", "tensors-dtype", "tensors-range", "tensors-length", "tensors-missing",
                   "npz-ok", "st-ok", "ckpt-ok", "pt-ok", "tensors-ok"):
        assert family in families, family
    for kind in KINDS:
        assert any(c.kind == kind and c.expect == "ok" for c in cases), kind
    # the same seed writes the same files (but where a payload holds the folder's path); another seed other bytes
    def listing(cs: list[Case]) -> list[tuple]:
        return [(c.path.name, c.kind, c.family, c.expect,
                 0 if c.family in ("npz-object", "pt-pickle") else c.path.stat().st_size) for c in cs]

    again = malformed_files(tmp_path / "again", seed=SEED)
    assert listing(again) == listing(cases)
    differ = [a.path.name for a, b in zip(again, cases, strict=True) if a.path.read_bytes() != b.path.read_bytes()
              and a.family not in ("npz-object", "pt-pickle", "pt-ok")]  # torch's legacy format records object ids
    assert not differ
    other = malformed_files(tmp_path / "other", seed=SEED + 1)
    assert any(a.path.read_bytes() != b.path.read_bytes() for a, b in zip(other, cases, strict=False))


def test_the_pickle_payloads_are_real(fuzz: tuple[Path, list[Case]]) -> None:
    """Each pt-pickle file would call something that creates the marker if it were unpickled (read with pickletools,
    nothing runs)."""
    _, cases = fuzz
    for case in (c for c in cases if c.family == "pt-pickle"):
        found = pickle_globals(case.path)
        assert any(g.split(".")[-1] in ("open", "system", "exec", "call", "touch", "getattr") for g in found), \
            (case.path.name, found)


@pytest.mark.parametrize("kind", KINDS)
def test_every_case_through_its_loader(fuzz: tuple[Path, list[Case]], kind: str) -> None:
    folder, cases = fuzz
    outcomes = [run_case(c) for c in cases if c.kind == kind]
    assert outcomes
    bad = [o for o in outcomes if o.status not in ("clear-error", "correct-success")]
    assert not bad, f"{len(bad)} of {len(outcomes)} {kind} cases went wrong:\n{_report(bad)}"
    counts = collections.Counter(o.status for o in outcomes)
    assert counts["clear-error"] == sum(c.expect == "error" for c in cases if c.kind == kind)
    assert not (folder / MARKER).exists(), "a pickle payload ran"


def test_a_sample_through_the_command_line(fuzz: tuple[Path, list[Case]]) -> None:
    folder, cases = fuzz
    sample = cli_sample(cases, seed=SEED)
    bundle_families = {c.family for c in cases if c.kind == "bundle"}
    assert {c.family for c in sample if c.kind == "bundle"} == bundle_families
    assert {c.kind for c in sample} == set(KINDS) and sum(c.family == "pt-pickle" for c in sample) >= 3
    outcomes = run_cli(sample, folder)
    bad = [o for o in outcomes if o.status not in ("clear-error", "correct-success")]
    assert not bad, "\n".join(f"{o.status}: {o.case.path.name} exit {o.code}: {o.stderr[-600:]!r} ({' '.join(o.argv)})"
                              for o in bad)
    for o in outcomes:
        if o.case.expect == "error":
            assert o.code == 2 and "Traceback" not in o.stderr and len(o.stderr.strip().splitlines()) == 1
        else:
            assert o.code == 0, o.stderr
    assert any(o.argv[0] == "recalibrate" for o in outcomes) and any(o.argv[0] == "report" for o in outcomes)
    assert not (folder / MARKER).exists(), "a pickle payload ran"


def test_no_pickle_payload_ever_ran(fuzz: tuple[Path, list[Case]]) -> None:
    folder, cases = fuzz
    for case in (c for c in cases if c.family == "pt-pickle"):
        run_case(case)
    assert not (folder / MARKER).exists()
