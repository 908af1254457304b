"""Faults and concurrency of the disk caches (issue 15): concurrent atomic writes never share a temporary and never
show a torn file; stale temporaries of dead writers are swept, a live or fresh one is not; two UMAP fits at once (two
threads, two processes on one cache folder) complete with the coordinates of a fit alone; a process killed with
kill -9 in the middle of a cache write (inference or UMAP) leaves no entry a reader would take, and a fresh process
recomputes the same numbers.

The writers run in subprocesses (the `_WORKER` script below) so that a kill -9 is real; each blocks at a known point
(a marker file appears), so every kill lands mid-write, deterministically."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from calibviz import diskcache
from calibviz.diskcache import STALE_AFTER_S, atomic_write, sweep_stale_temporaries

REPO = Path(__file__).resolve().parents[1]
TMP_MARK = ".tmp"  # every temporary name holds it: NAME.tmp<pid>-<thread>-<n>SUFFIX

_WORKER = r'''
"""Subprocess side of tests/test_faults.py: one mode per argv[1]."""
import io, json, os, sys, threading, time
from pathlib import Path

import numpy as np

mode, args = sys.argv[1], sys.argv[2:]


def blobs(seed):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(c, 1.0, (50, 8)) for c in (0.0, 5.0, 10.0)]).astype(np.float32)
    return x, np.repeat(np.arange(3), 50)


def barrier(folder, me, n, timeout=120):
    folder = Path(folder)
    (folder / f"ready-{me}").touch()
    deadline = time.monotonic() + timeout
    while len(list(folder.glob("ready-*"))) < n:
        if time.monotonic() > deadline:
            raise SystemExit("barrier timed out")
        time.sleep(0.01)


def block_forever(marker, tmp):
    Path(marker).write_text(str(tmp))
    while True:
        time.sleep(1)


if mode == "write":  # ENTRY BYTE ROUNDS BARRIER_DIR ME OUT: atomic_write the same entry, one byte value per process
    from calibviz.diskcache import atomic_write
    entry, byte, rounds, bdir, me, out = Path(args[0]), int(args[1]), int(args[2]), args[3], args[4], args[5]
    barrier(bdir, me, 2)
    tmps = []

    def write(tmp):
        tmps.append(tmp.name)
        with tmp.open("wb") as f:
            for _ in range(8):
                f.write(bytes([byte]) * 32768)
                f.flush()
                time.sleep(0.001)

    for _ in range(rounds):
        atomic_write(entry, write)
    Path(out).write_text(json.dumps(tmps))

elif mode == "umap-threads":  # BARRIER_DIR N OUT: two threads fit A and B at once, then each alone
    import torch
    torch.set_num_threads(1)
    from calibviz.features import UmapParams, umap_embedding
    bdir, n, out = args[0], int(args[1]), args[2]
    p = UmapParams(n_neighbors=10, sample_size=None)
    sets = {"A": blobs(1), "B": blobs(2)}
    got, spans = {}, {}
    start = threading.Barrier(2)

    def fit(name):
        start.wait()
        t0 = time.monotonic()
        got[name] = umap_embedding(*sets[name], source_digest=name, params=p)
        spans[name] = (t0, time.monotonic())

    barrier(bdir, "threads", n)
    threads = [threading.Thread(target=fit, args=(k,)) for k in sets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    alone = {k: umap_embedding(*sets[k], source_digest=k, params=p, use_cache=False) for k in sets}
    np.savez(out, **{f"{k}_thread": got[k].coords for k in sets}, **{f"{k}_alone": alone[k].coords for k in sets},
             **{f"{k}_from_cache": got[k].from_cache for k in sets}, spans=np.array([spans["A"], spans["B"]]))

elif mode == "umap-one":  # BARRIER_DIR N ME OUT: fit A (cached) at the same time as the other process
    import torch
    torch.set_num_threads(1)
    from calibviz.features import UmapParams, umap_embedding
    bdir, n, me, out = args[0], int(args[1]), args[2], args[3]
    if n > 1:
        barrier(bdir, me, n)
    e = umap_embedding(*blobs(1), source_digest="A", params=UmapParams(n_neighbors=10, sample_size=None))
    np.savez(out, coords=e.coords, from_cache=e.from_cache)

elif mode == "umap-block":  # MARKER OUT: fit A; write half the cache entry, save the coords it held, block
    import torch
    torch.set_num_threads(1)
    from calibviz.features import UmapParams, umap_embedding
    marker, out = args[0], args[1]
    real = np.savez

    def half_savez(file, **arrays):
        buf = io.BytesIO()
        real(buf, **arrays)
        data = buf.getvalue()
        Path(file).write_bytes(data[: len(data) // 2])
        real(out, coords=arrays["coords"])
        block_forever(marker, file)

    np.savez = half_savez
    umap_embedding(*blobs(1), source_digest="A", params=UmapParams(n_neighbors=10, sample_size=None))

elif mode == "predict-block":  # CHECKPOINT MARKER: run predict; write half the bundle, then block
    import torch
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    import calibviz.backend as backend
    ckpt, marker = args[0], args[1]
    real = backend.save_bundle

    def half_save(preds, tmp):
        real(preds, tmp)
        data = Path(tmp).read_bytes()
        Path(tmp).write_bytes(data[: len(data) // 2])
        block_forever(marker, tmp)

    backend.save_bundle = half_save
    backend.predict(ckpt, "digits:test", device="cpu")

elif mode == "predict":  # CHECKPOINT OUT: run predict through the cache; say whether it was a hit
    import torch
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    from calibviz.backend import predict
    ckpt, out = args[0], args[1]
    said = []
    p = predict(ckpt, "digits:test", device="cpu", progress=lambda f, m: said.append(m))
    np.savez(out, logits=p.logits, features=p.features, from_cache="loaded from cache" in said)
'''


@pytest.fixture
def worker(tmp_path: Path) -> Path:
    """The subprocess script, written once per test."""
    path = tmp_path / "fault_worker.py"
    path.write_text(_WORKER)
    return path


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "CALIBVIZ_CACHE": str(cache), "CALIBVIZ_WARM_UMAP": "0", "PYTHONPATH": str(REPO),
            "OMP_NUM_THREADS": "1"}


def _spawn(worker: Path, cache: Path, *args: object) -> subprocess.Popen:
    """Start the worker in one mode, with its cache folder; stderr is kept for the assertion messages."""
    return subprocess.Popen([sys.executable, str(worker), *map(str, args)], cwd=REPO, env=_env(cache),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 120) -> None:
    """Wait for a worker and assert it exited 0 (not aborted, not killed)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    assert proc.returncode == 0, f"worker exited {proc.returncode}\n{out[-2000:]}\n{err[-4000:]}"


def _kill_when(proc: subprocess.Popen, marker: Path, timeout: float = 120) -> Path:
    """Wait for the worker to say (through `marker`) that it is blocked mid-write; kill -9 it; return the temp."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"worker ended before writing: {proc.returncode}\n{proc.stderr.read()[-4000:]}")
        assert time.monotonic() < deadline, "the worker never reached its cache write"
        time.sleep(0.02)
    while not marker.read_text():  # the marker is written in one call; wait out a read between open and write
        time.sleep(0.01)
    tmp = Path(marker.read_text())
    assert tmp.exists(), "the half-written temporary should be there while the writer is blocked"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)  # reaped: its pid is free again
    assert proc.returncode == -signal.SIGKILL
    return tmp


def _entries(folder: Path) -> list[Path]:
    """The final entries of a cache folder (what readers look up), temporaries left out."""
    return sorted(p for p in folder.iterdir() if p.is_file() and TMP_MARK not in p.name)


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ------------------------------------------------------------------------------------------- atomic_write


def test_two_threads_writing_one_entry_never_share_a_temporary_nor_show_a_torn_file(tmp_path: Path) -> None:
    entry = tmp_path / "entry.bin"
    size, rounds = 256 * 1024, 20
    tmps: dict[str, list[str]] = {"a": [], "b": []}
    start = threading.Barrier(2)
    inside = threading.Barrier(2, timeout=30)
    seen, torn, stop = [], [], threading.Event()

    def writer(name: str, byte: int) -> None:
        start.wait()
        for i in range(rounds):
            def write(tmp: Path, i: int = i) -> None:
                tmps[name].append(tmp.name)
                if i < 3:
                    inside.wait()  # both threads hold a temporary of the same entry at this moment
                with tmp.open("wb") as f:
                    for _ in range(8):
                        f.write(bytes([byte]) * (size // 8))
                        f.flush()
            atomic_write(entry, write)

    def reader() -> None:
        while not stop.is_set():
            try:
                data = entry.read_bytes()
            except FileNotFoundError:
                continue
            seen.append(data[:1])
            if len(data) != size or len(set(data)) != 1:
                torn.append(len(data))

    threads = [threading.Thread(target=writer, args=("a", 0x41)), threading.Thread(target=writer, args=("b", 0x42))]
    rd = threading.Thread(target=reader)
    rd.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    rd.join()
    assert not torn, f"a reader saw {len(torn)} torn versions"
    assert len(set(tmps["a"])) == rounds and len(set(tmps["b"])) == rounds
    assert not set(tmps["a"]) & set(tmps["b"]), "two threads shared a temporary"
    final = entry.read_bytes()
    assert len(final) == size and final in (b"A" * size, b"B" * size)
    assert [p.name for p in tmp_path.iterdir()] == ["entry.bin"], "a temporary was left behind"


def test_one_thread_writing_an_entry_twice_at_once_uses_two_temporaries(tmp_path: Path) -> None:
    entry, names = tmp_path / "e.npz", []

    def outer(tmp: Path) -> None:  # a write that, while it holds its temporary, writes the same entry again
        names.append(tmp.name)
        atomic_write(entry, lambda t: (names.append(t.name), t.write_bytes(b"inner")))
        tmp.write_bytes(b"outer")

    atomic_write(entry, outer)
    assert len(set(names)) == 2 and all(n.endswith(".npz") for n in names)
    assert entry.read_bytes() == b"outer"


def test_two_processes_writing_one_entry_never_share_a_temporary_nor_show_a_torn_file(
        tmp_path: Path, worker: Path) -> None:
    entry, bdir, rounds = tmp_path / "cache" / "entry.bin", tmp_path / "barrier", 30
    bdir.mkdir()
    procs = [_spawn(worker, tmp_path / "cache", "write", entry, byte, rounds, bdir, me, tmp_path / f"{me}.json")
             for me, byte in (("p", 0x50), ("q", 0x51))]
    torn, versions = [], set()
    while any(p.poll() is None for p in procs):
        try:
            data = entry.read_bytes()
        except FileNotFoundError:
            continue
        versions.add(data[:1])
        if len(data) != 8 * 32768 or len(set(data)) != 1:
            torn.append(len(data))
    for p in procs:
        _finish(p)
    p_tmps = set(json.loads((tmp_path / "p.json").read_text()))
    q_tmps = set(json.loads((tmp_path / "q.json").read_text()))
    assert len(p_tmps) == len(q_tmps) == rounds
    assert not p_tmps & q_tmps, "two processes shared a temporary"
    assert not torn, f"a reader saw {len(torn)} torn versions"
    final = entry.read_bytes()
    assert final in (b"P" * 8 * 32768, b"Q" * 8 * 32768)
    assert _entries(entry.parent) == [entry] and len(list(entry.parent.iterdir())) == 1


def test_sweep_removes_a_dead_writers_old_temporary_only(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead, live, old = _dead_pid(), sleeper.pid, time.time() - STALE_AFTER_S - 5
        files = {
            "dead_old": tmp_path / f"a.tmp{dead}-1-0.safetensors",
            "dead_old_legacy": tmp_path / f"b.tmp{dead}-1.npz",  # written before temporaries had a call number
            "dead_fresh": tmp_path / f"c.tmp{dead}-1-0.npz",
            "live_old": tmp_path / f"d.tmp{live}-1-0.npz",
            "mine_old_not_writing": tmp_path / f"e.tmp{os.getpid()}-1-0.npz",  # an earlier process with my pid
            "entry": tmp_path / "f.npz",
            "lookalike": tmp_path / "g.tmpnotes.txt",
        }
        for name, p in files.items():
            p.write_bytes(b"x")
            if name != "dead_fresh":
                os.utime(p, (old, old))
        removed = sweep_stale_temporaries(tmp_path)
        assert {p.name for p in removed} == {files[k].name for k in ("dead_old", "dead_old_legacy",
                                                                       "mine_old_not_writing")}
        left = {p.name for p in tmp_path.iterdir()}
        assert left == {files[k].name for k in ("dead_fresh", "live_old", "entry", "lookalike")}
        # min_age_s=0: a dead writer's fresh temporary goes too; the live writer's still stays
        assert [p.name for p in sweep_stale_temporaries(tmp_path, min_age_s=0)] == [files["dead_fresh"].name]
        assert files["live_old"].exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_sweep_never_removes_this_process_s_temporary_being_written(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diskcache, "STALE_AFTER_S", 0.0)  # the default age is read at call time
    entry, holding, release, swept = tmp_path / "e.npz", threading.Event(), threading.Event(), []

    def slow(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        os.utime(tmp, (0, 0))  # as old as can be
        holding.set()
        release.wait(30)
        tmp.write_bytes(b"whole")

    t = threading.Thread(target=atomic_write, args=(entry, slow))
    t.start()
    assert holding.wait(30)
    swept += sweep_stale_temporaries(tmp_path)  # and another atomic_write in the folder sweeps the same way
    atomic_write(tmp_path / "other.npz", lambda p: p.write_bytes(b"o"))
    release.set()
    t.join()
    assert swept == [] and entry.read_bytes() == b"whole"


def test_atomic_write_sweeps_dead_writers_temporaries_in_its_folder(tmp_path: Path) -> None:
    dead, old = _dead_pid(), time.time() - STALE_AFTER_S - 5
    stale, fresh = tmp_path / f"x.tmp{dead}-7-3.npz", tmp_path / f"y.tmp{dead}-7-4.npz"
    for p in (stale, fresh):
        p.write_bytes(b"half")
    os.utime(stale, (old, old))
    atomic_write(tmp_path / "z.npz", lambda p: p.write_bytes(b"z"))
    assert not stale.exists() and fresh.exists() and (tmp_path / "z.npz").read_bytes() == b"z"


# ----------------------------------------------------------------------------------------------- UMAP


def test_two_umap_fits_at_once_in_threads_and_in_two_processes_match_a_fit_alone(
        tmp_path: Path, worker: Path) -> None:
    cache, bdir = tmp_path / "cache", tmp_path / "barrier"
    bdir.mkdir()
    threads = _spawn(worker, cache, "umap-threads", bdir, 2, tmp_path / "threads.npz")
    other = _spawn(worker, cache, "umap-one", bdir, 2, "other", tmp_path / "other.npz")
    _finish(threads, 240)
    _finish(other, 240)
    t, o = np.load(tmp_path / "threads.npz"), np.load(tmp_path / "other.npz")
    (a0, a1), (b0, b1) = t["spans"]
    assert a0 < b1 and b0 < a1, "the two threads' fits should overlap in time"
    assert not t["A_from_cache"] and not t["B_from_cache"]
    for k in ("A", "B"):
        assert t[f"{k}_thread"].shape == (150, 2) and np.isfinite(t[f"{k}_thread"]).all()
        np.testing.assert_array_equal(t[f"{k}_thread"], t[f"{k}_alone"])
    assert not np.array_equal(t["A_thread"], t["B_thread"])
    np.testing.assert_array_equal(o["coords"], t["A_alone"])  # the other process: the same entry, same numbers
    entries = _entries(cache / "umap")
    assert len(entries) == 2 and len(list((cache / "umap").iterdir())) == 2, "a temporary was left behind"
    stored = sorted((np.load(p)["coords"] for p in entries), key=lambda c: float(c[0, 0]))
    wanted = sorted((t["A_alone"], t["B_alone"]), key=lambda c: float(c[0, 0]))
    for s, w in zip(stored, wanted, strict=True):
        np.testing.assert_array_equal(s, w)


def test_a_damaged_umap_entry_reads_as_absent(tmp_path: Path) -> None:
    from calibviz import features

    idx = np.arange(10)
    good = tmp_path / "good.npz"
    np.savez(good, indices=idx, coords=np.ones((10, 2), np.float32))
    data = good.read_bytes()
    for name, content in (("empty.npz", b""), ("half.npz", data[: len(data) // 2]), ("junk.npz", b"not a zip")):
        (tmp_path / name).write_bytes(content)
        assert features._read_cached_umap(tmp_path / name, idx) is None
    assert features._read_cached_umap(good, idx) is not None
    assert features._read_cached_umap(good, np.arange(1, 11)) is None  # other rows: stale, recomputed


# ----------------------------------------------------------------------------------------------- kill -9


def test_kill_9_mid_inference_write_leaves_no_entry_and_a_fresh_process_recomputes(
        tmp_path: Path, worker: Path, tiny_checkpoint: Path) -> None:
    from calibviz.backend import predict
    from calibviz.formats import FormatError, load_bundle

    cache, marker = tmp_path / "cache", tmp_path / "writing"
    tmp = _kill_when(_spawn(worker, cache, "predict-block", tiny_checkpoint, marker), marker)
    assert tmp.parent == cache and tmp.exists()
    assert _entries(cache) == [], "the killed writer left an entry a reader would take"
    with pytest.raises(FormatError):
        load_bundle(tmp)  # it really is half written

    again = _spawn(worker, cache, "predict", tiny_checkpoint, tmp_path / "again.npz")
    _finish(again)
    got = np.load(tmp_path / "again.npz")
    assert not got["from_cache"], "the fresh process should recompute, not read the half-written temporary"
    clean = predict(tiny_checkpoint, "digits:test", device="cpu", use_cache=False)
    np.testing.assert_allclose(got["logits"], clean.logits, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got["features"], clean.features, rtol=1e-6, atol=1e-6)
    (entry,) = _entries(cache)
    np.testing.assert_array_equal(load_bundle(entry).logits, got["logits"])  # stored whole
    assert entry.name.split(".")[0] == tmp.name.split(".")[0]  # the entry the killed process was writing

    assert tmp.exists(), "a fresh temporary (younger than STALE_AFTER_S) is left to its writer"
    assert sweep_stale_temporaries(cache, min_age_s=0) == [tmp]
    assert not tmp.exists() and entry.exists()


def test_kill_9_mid_umap_write_leaves_no_entry_and_a_fresh_process_recomputes(tmp_path: Path, worker: Path) -> None:
    cache, marker, held = tmp_path / "cache", tmp_path / "writing", tmp_path / "held.npz"
    tmp = _kill_when(_spawn(worker, cache, "umap-block", marker, held), marker, timeout=180)
    assert tmp.parent == cache / "umap" and tmp.exists()
    assert _entries(cache / "umap") == []

    again = _spawn(worker, cache, "umap-one", tmp_path, 1, "again", tmp_path / "again.npz")
    _finish(again, 180)
    got = np.load(tmp_path / "again.npz")
    assert not got["from_cache"]
    np.testing.assert_array_equal(got["coords"], np.load(held)["coords"])  # what the killed fit was writing
    (entry,) = _entries(cache / "umap")
    np.testing.assert_array_equal(np.load(entry)["coords"], got["coords"])
    assert sweep_stale_temporaries(cache / "umap", min_age_s=0) == [tmp]
    assert _entries(cache / "umap") == [entry] and len(list((cache / "umap").iterdir())) == 1


# ------------------------------------------------------------------------------------------ bounded, kept


class _FakeUMAP:
    """A stand-in for umap.UMAP: the first n_components feature columns, so a fit takes no JIT compile."""

    def __init__(self, **kw: object) -> None:
        self.n = int(kw.get("n_components", 2))

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x[:, : self.n], dtype=np.float32)


def test_a_failed_umap_cache_write_keeps_the_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from calibviz import features

    def full(path: Path, write: object) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=_FakeUMAP))
    monkeypatch.setattr(features, "atomic_write", full)
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    emb = features.umap_embedding(x, np.repeat([0, 1], 10), source_digest="full-disk",
                                  params=features.UmapParams(sample_size=None))
    assert not emb.from_cache
    np.testing.assert_array_equal(emb.coords, x)


def test_finished_umap_jobs_are_bounded_running_and_failed_ones_kept() -> None:
    from calibviz.app import jobs as J
    from calibviz.features import UmapEmbedding

    def job(state: str) -> J.UmapJob:
        j = J.UmapJob(state)
        if state != "running":
            j.done.set()
        if state == "done":
            j.result = UmapEmbedding(np.arange(2), np.zeros((2, 2), np.float32), False, 0.0)
        return j

    registry = {("run", 0): job("running"), ("fail", 0): job("failed")}
    registry |= {("done", i): job("done") for i in range(J.MAX_FINISHED_JOBS + 10)}
    registry[("run", 1)] = job("running")
    J._prune(registry)
    done = [k for k in registry if k[0] == "done"]
    assert len(done) == J.MAX_FINISHED_JOBS and done[0] == ("done", 10)  # the oldest ten went
    assert {("run", 0), ("run", 1), ("fail", 0)} <= set(registry)
