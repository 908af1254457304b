"""A seeded generator of malformed (and valid edge-case) files for every file loader, and the harness that runs them.

`malformed_files(folder, seed)` writes a few hundred files: prediction bundles (`.npz`, `.safetensors`), zoo-format
checkpoints, user weights for `--arch` (`.pt`, `.safetensors`, including pickles whose unpickling would create
`folder/PWNED`) and `tensors:PATH` files, each a `Case` saying which loader reads it and whether it must load
("ok") or be refused with one clear line ("error"). `run_case` runs one through its loader in-process and
`run_cli` runs a sample through `calibviz.cli.main` in one subprocess; `tests/test_fuzz_files.py` and
`bench/fuzz_files.py` use both. Valid files are written with calibviz's own writers (`save_bundle`,
`save_checkpoint`) or numpy / safetensors / torch; the malformed ones are those, damaged, or written byte by byte.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import pickletools
import struct
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from calibviz.formats import CARD_KEY, FormatError, save_bundle, save_checkpoint
from calibviz.predictions import Predictions

REPO = Path(__file__).resolve().parents[1]
KINDS = ("bundle", "checkpoint", "weights", "tensors")
MARKER = "PWNED"  # what a pickle payload would create in the cases' folder if it were ever unpickled
# The user architecture that every weights case is loaded into (`--arch`), and the tensors file it runs on.
WEIGHTS_ARCH = "tests.user_models:MlpClassifier"
WEIGHTS_KWARGS = {"in_dim": 48, "hidden": 8, "num_classes": 3}
MODEL_DATA = "model-data.npz"          # a valid tensors file: x (24, 3, 4, 4) float32, y in 0..2
MODEL_WEIGHTS = "model-weights.safetensors"  # valid weights of WEIGHTS_ARCH
N_ROWS, N_CLASSES = 30, 3


@dataclass(frozen=True)
class Case:
    """One generated file: which loader reads it (`kind`), what it is (`family`) and whether it must load."""

    path: Path
    kind: str    # one of KINDS
    family: str  # e.g. "npz-bitflip", "st-offsets", "ckpt-card", "pt-pickle", "tensors-dtype", "npz-ok"
    expect: str  # "error" or "ok"


# ---------------------------------------------------------------------------------------------- byte helpers


def _npy(arr: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    """The bytes of one `.npy` file."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, version=version, allow_pickle=True)
    return buf.getvalue()


def _npy_raw(header: str | bytes, data: bytes = b"", magic: bytes = b"\x93NUMPY", version: bytes = b"\x01\x00",
             declared_len: int | None = None) -> bytes:
    """A hand-written `.npy`: magic, version, header length, header text, data."""
    h = header.encode("latin1") if isinstance(header, str) else header
    n = len(h) if declared_len is None else declared_len
    return magic + version + struct.pack("<H", n) + h + data


def _npy_dict(shape: str, descr: str = "'<f4'") -> str:
    """The text of a .npy header dict with this shape and descr, as written (not checked)."""
    return "{'descr': " + descr + ", 'fortran_order': False, 'shape': " + shape + ", }"


_DATE = (2020, 1, 1, 0, 0, 0)  # fixed timestamps: the same seed writes the same bytes


def _zip(path: Path, members: list[tuple[str, bytes]], method: int = zipfile.ZIP_STORED,
         comment: bytes = b"") -> Path:
    """A zip of the given (name, bytes) members, with fixed timestamps (duplicate names allowed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name"
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in members:
                zf.writestr(zipfile.ZipInfo(name, _DATE), data, compress_type=method)
            zf.comment = comment
    return path


def _npz(path: Path, arrays: dict[str, np.ndarray], method: int = zipfile.ZIP_STORED) -> Path:
    """An `.npz` as numpy writes it (NAME.npy members), with fixed timestamps."""
    return _zip(path, [(f"{k}.npy", _npy(v)) for k, v in arrays.items()], method)


def _meta_array(meta: Any) -> np.ndarray:
    return np.array(json.dumps(meta))


@dataclass(frozen=True)
class _Entry:
    name: str
    local: int   # offset of the local header
    central: int  # offset of the central directory entry
    data: int    # offset of the member's (compressed) data
    size: int    # compressed size


def _entries(data: bytes) -> list[_Entry]:
    """Where each member's local header, central entry and data are in a zip's bytes."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos, pos = zf.infolist(), zf.start_dir
    out = []
    for info in infos:
        assert data[pos:pos + 4] == b"PK\x01\x02"
        n, m, k = struct.unpack("<HHH", data[pos + 28:pos + 34])
        lo = info.header_offset
        ln, le = struct.unpack("<HH", data[lo + 26:lo + 30])
        out.append(_Entry(info.filename, lo, pos, lo + 30 + ln + le, info.compress_size))
        pos += 46 + n + m + k
    return out


def _patch(data: bytes, member: str | None, *, local: dict[int, bytes] | None = None,
           central: dict[int, bytes] | None = None) -> bytes:
    """Bytes written at offsets within the local header / central entry of `member` (all members when None)."""
    out = bytearray(data)
    for e in _entries(data):
        if member is None or e.name == member:
            for off, b in (local or {}).items():
                out[e.local + off:e.local + off + len(b)] = b
            for off, b in (central or {}).items():
                out[e.central + off:e.central + off + len(b)] = b
    return bytes(out)


def _u16(v: int) -> bytes:
    return struct.pack("<H", v)


def _u32(v: int) -> bytes:
    return struct.pack("<I", v)


def _st_parts(path: Path) -> tuple[dict[str, Any], bytes]:
    """(header JSON object, data bytes) of a safetensors file."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _st_write(path: Path, header: Any, data: bytes, *, raw_header: bytes | None = None,
              declared_len: int | None = None) -> Path:
    """A hand-written safetensors file: 8-byte header length, header JSON (or raw bytes), data."""
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    n = len(h) if declared_len is None else declared_len
    path.write_bytes(struct.pack("<Q", n) + h + data)
    return path


def _state_st(path: Path, arrays: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> Path:
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path), metadata=metadata)
    return path


class _Payload:
    """Pickles as a call of `fn(*args)`: what a hostile `.pt` holds. Never unpickled by anything here."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return self.fn, self.args


def pickle_globals(path: Path) -> list[str]:
    """The globals a pickle (or each `.pkl` of a torch zip) would import, read with pickletools: nothing runs."""
    raw = path.read_bytes()
    blobs = [raw]
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            blobs = [zf.read(n) for n in zf.namelist() if n.endswith(".pkl")]
    found: list[str] = []
    for blob in blobs:
        stream = io.BytesIO(blob)  # torch's legacy format is several pickles in a row
        while stream.tell() < len(blob):
            strings: list[str] = []
            try:
                for op, arg, _ in pickletools.genops(stream):
                    if isinstance(arg, str):
                        strings.append(arg)
                    if op.name == "GLOBAL":
                        found.append(str(arg).replace(" ", "."))
                    elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                        found.append(f"{strings[-2]}.{strings[-1]}")
            except Exception:
                break  # raw tensor bytes after the pickles
    return found


# ------------------------------------------------------------------------------------------------ generator


class _Writer:
    def __init__(self, folder: Path, seed: int) -> None:
        self.folder = folder
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.cases: list[Case] = []

    def path(self, family: str, suffix: str) -> Path:
        return self.folder / f"{family}-{len(self.cases):03d}{suffix}"

    def add(self, kind: str, family: str, expect: str, path: Path) -> Path:
        assert path.is_file(), path
        self.cases.append(Case(path, kind, family, expect))
        return path

    def file(self, kind: str, family: str, expect: str, suffix: str, data: bytes) -> Path:
        p = self.path(family, suffix)
        p.write_bytes(data)
        return self.add(kind, family, expect, p)

    # -- valid material

    def preds(self, n: int = N_ROWS, c: int = N_CLASSES, *, probs: bool = False, features: bool = True,
              split: bool = True, dtype: Any = np.float32, **meta: Any) -> Predictions:
        z = self.rng.normal(size=(n, c)).astype(dtype)
        y = np.arange(n) % c
        extra: dict[str, Any] = {}
        if features:
            extra = {"features": self.rng.normal(size=(n, 4)).astype(np.float32),
                     "head_weight": self.rng.normal(size=(c, 4)).astype(np.float32),
                     "head_bias": np.zeros(c, np.float32)}
        if split:  # blocks of c rows (one of each class) go to train, val, test in turn
            extra["split"] = (np.arange(n) // c) % 3
            extra["sample_id"] = np.arange(n)
        if probs:
            p = np.exp(z.astype(np.float64))
            return Predictions(labels=y, probs=(p / p.sum(1, keepdims=True)).astype(dtype), meta=dict(meta), **extra)
        return Predictions(labels=y, logits=z, meta={"name": "fuzz", **meta}, **extra)

    def arrays(self, **kw: Any) -> dict[str, np.ndarray]:
        p = self.preds(**kw)
        keys = ("logits", "probs", "labels", "features", "head_weight", "head_bias", "split", "sample_id")
        return {k: getattr(p, k) for k in keys if getattr(p, k) is not None}

    def valid_npz(self) -> bytes:
        """A valid bundle as save_bundle writes it (then read back as bytes)."""
        p = self.folder / "_base.npz"
        save_bundle(self.preds(), p)
        return _rezip(p.read_bytes())

    def valid_st(self) -> Path:
        p = self.folder / "_base.safetensors"
        save_bundle(self.preds(), p)
        return p


def _rezip(data: bytes, method: int | None = None) -> bytes:
    """The same archive rewritten with fixed timestamps (numpy stamps members with the current time)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(zipfile.ZipInfo(info.filename, _DATE), src.read(info),
                         compress_type=info.compress_type if method is None else method)
    return out.getvalue()


def _bundle_cases(w: _Writer) -> None:
    rng = w.rng
    base = w.valid_npz()
    deflated = _rezip(base, zipfile.ZIP_DEFLATED)

    # random bytes, also starting like a zip / an npy
    for n in (0, 1, 21, 22, 100, 4096, int(rng.integers(5000, 50000))):
        w.file("bundle", "npz-random", "error", ".npz", rng.bytes(n))
    w.file("bundle", "npz-random", "error", ".npz", b"PK\x03\x04" + rng.bytes(300))
    w.file("bundle", "npz-random", "error", ".npz", b"PK\x05\x06" + bytes(18))  # an empty zip
    w.file("bundle", "npz-random", "error", ".npz", _npy(np.zeros((3, 3), np.float32)))  # a .npy, not an .npz

    # truncation at many offsets (fixed ones and seeded ones), stored and deflated
    offsets = {1, 4, 30, len(base) // 2, len(base) - 22, len(base) - 1}
    offsets |= {int(o) for o in rng.integers(1, len(base) - 1, size=14)}
    for o in sorted(offsets):
        w.file("bundle", "npz-truncate", "error", ".npz", base[:o])
    for o in sorted({int(o) for o in rng.integers(1, len(deflated) - 1, size=6)}):
        w.file("bundle", "npz-truncate", "error", ".npz", deflated[:o])

    # single-bit flips inside members' data (CRC-32 catches every one), stored and deflated archives
    for data, count in ((base, 24), (deflated, 12)):
        spans = [(e.data, e.data + e.size) for e in _entries(data)]
        for _ in range(count):
            lo, hi = spans[int(rng.integers(len(spans)))]
            pos = int(rng.integers(lo, hi))
            out = bytearray(data)
            out[pos] ^= 1 << int(rng.integers(8))
            w.file("bundle", "npz-bitflip", "error", ".npz", bytes(out))
    # a wrong CRC in the directory; member names differing between local header and directory
    e0 = _entries(base)[0]
    w.file("bundle", "npz-crc", "error", ".npz", _patch(base, e0.name, central={16: _u32(0xDEADBEEF)},
                                                       local={14: _u32(0xDEADBEEF)}))
    w.file("bundle", "npz-crc", "error", ".npz", _patch(base, e0.name, local={30: b"X"}))

    good = w.arrays()
    npys = [(f"{k}.npy", _npy(v)) for k, v in good.items()]
    # members that are not NAME.npy
    for bad in ("logits.txt", "logits", "dir/logits.npy", "../logits.npy", "lo gits.npy", "1logits.npy", "dir/",
                ".npy", "logits.NPY", "x" * 200 + ".npy"):
        members = [*npys, (bad, b"hello" if not bad.endswith(".npy") else _npy(np.zeros(3)))]
        p = _zip(w.path("npz-member-name", ".npz"), members)
        w.add("bundle", "npz-member-name", "error", p)
    # duplicate names (the second logits.npy would silently win in np.load)
    p = _zip(w.path("npz-duplicate", ".npz"), [*npys, ("logits.npy", _npy(np.zeros((N_ROWS, N_CLASSES), "f4")))])
    w.add("bundle", "npz-duplicate", "error", p)
    p = _zip(w.path("npz-duplicate", ".npz"), [*npys, *npys])
    w.add("bundle", "npz-duplicate", "error", p)

    # damaged .npy headers of the logits member
    logits = good["logits"].tobytes()
    hdr = _npy_dict(f"({N_ROWS}, {N_CLASSES})")
    damaged = [
        _npy_raw(hdr, logits, magic=b"\x93NUMPX"),
        _npy_raw(hdr, logits, version=b"\x03\x00"),
        _npy_raw(hdr, logits, version=b"\x09\x09"),
        _npy_raw(hdr, logits, declared_len=60000),
        _npy_raw(hdr, logits, declared_len=3),
        _npy_raw("[1, 2, 3]", logits),
        _npy_raw("{'descr': '<f4', 'fortran_order': False}", logits),
        _npy_raw("{'descr': '<f99', 'fortran_order': False, 'shape': (30, 3), }", logits),
        _npy_raw("{'descr': '<f4', 'fortran_order': 'no', 'shape': (30, 3), }", logits),
        _npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (30.0, 3), }", logits),
        _npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (-30, -3), }", logits),
        _npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': __import__('os').getpid(), }", logits),
        _npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (30, 3), 'extra': 1}", logits),
        b"\x93NUMPY\x02\x00" + struct.pack("<I", 20000) + (hdr + " " * (20000 - len(hdr) - 1) + "\n").encode()
        + logits,
        _npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (1,) * 40, }", logits[:4]),
        _npy_raw(b"\xff\xfe{'descr'", logits),
        _npy_raw(_npy_dict("(" + "1, " * 70 + ")"), logits[:4]),
        _npy(good["logits"])[:9],
    ]
    for blob in damaged:
        members = [(n, b) for n, b in npys if n != "logits.npy"] + [("logits.npy", blob)]
        w.add("bundle", "npz-npy-header", "error", _zip(w.path("npz-npy-header", ".npz"), members))
    # a header claiming 10^12 elements (and others far beyond the member), data of a few bytes
    for shape in ((10**6, 10**6), (10**12,), (2**62, 2**62), (N_ROWS, 3 * 10**9)):
        blob = _npy_raw(_npy_dict(repr(shape)), logits)
        members = [(n, b) for n, b in npys if n != "logits.npy"] + [("logits.npy", blob)]
        w.add("bundle", "npz-huge-header", "error", _zip(w.path("npz-huge-header", ".npz"), members))
    # object and structured dtypes (an object array would need unpickling)
    evil = np.array([_Payload(builtins.open, str(w.folder / MARKER), "w")], dtype=object)
    for k, v in (("logits", np.array([{"a": 1}] * N_ROWS, dtype=object)), ("extra", evil),
                 ("labels", np.array([[1]] * N_ROWS, dtype=object))):
        members = [(n, b) for n, b in npys if n != f"{k}.npy"] + [(f"{k}.npy", _npy(v))]
        w.add("bundle", "npz-object", "error", _zip(w.path("npz-object", ".npz"), members))
    struct_dt = np.dtype([("a", "<f4"), ("b", "<i4")])
    subarray = _npy_raw(_npy_dict(f"({N_ROWS},)", f"('<f4', ({N_CLASSES},))"), logits)  # numpy never writes these
    for k, blob in (("logits", _npy(np.zeros((N_ROWS, N_CLASSES), struct_dt))),
                    ("labels", _npy(np.zeros(N_ROWS, struct_dt))), ("logits", subarray)):
        members = [(n, b) for n, b in npys if n != f"{k}.npy"] + [(f"{k}.npy", blob)]
        w.add("bundle", "npz-structured", "error", _zip(w.path("npz-structured", ".npz"), members))
    # encrypted flag; unsupported / unknown compression methods
    w.file("bundle", "npz-encrypted", "error", ".npz", _patch(base, None, local={6: _u16(1)}, central={8: _u16(1)}))
    w.file("bundle", "npz-encrypted", "error", ".npz", _patch(base, "labels.npy", local={6: _u16(1)},
                                                              central={8: _u16(1)}))
    for method in (zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        w.add("bundle", "npz-compression", "error", _zip(w.path("npz-compression", ".npz"), npys, method))
    for method in (99, 9, 1):
        w.file("bundle", "npz-compression", "error", ".npz",
               _patch(base, "logits.npy", local={8: _u16(method)}, central={10: _u16(method)}))
    # zip bombs: highly compressible members declaring a huge size, or sizes patched to lie
    for mb in (24, 40):
        p = w.path("npz-zipbomb", ".npz")
        with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(zipfile.ZipInfo("labels.npy", _DATE), _npy(good["labels"]), zipfile.ZIP_DEFLATED)
            info = zipfile.ZipInfo("logits.npy", _DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w") as f:
                n = mb * 2**20 // 4 // N_CLASSES
                f.write(_npy_header_only((n, N_CLASSES), "<f4"))
                chunk = bytes(2**20)
                for _ in range(n * N_CLASSES * 4 // 2**20):
                    f.write(chunk)
                f.write(bytes(n * N_CLASSES * 4 % 2**20))
        w.add("bundle", "npz-zipbomb", "error", p)
    dlogits = next(e for e in _entries(deflated) if e.name == "logits.npy")
    for size in (0xFFFFFFF0, 2**31):
        w.file("bundle", "npz-zipbomb", "error", ".npz",
               _patch(deflated, dlogits.name, local={22: _u32(size)}, central={24: _u32(size)}))
    w.file("bundle", "npz-zipbomb", "error", ".npz", _patch(deflated, dlogits.name, central={24: _u32(40)}))
    w.file("bundle", "npz-zipbomb", "error", ".npz", _patch(deflated, dlogits.name, central={20: _u32(2**30)}))

    # value and shape problems, written by save_bundle in both formats
    n, c = N_ROWS, N_CLASSES
    for suffix, fam in ((".npz", "npz"), (".safetensors", "st")):
        def bad(family: str, change: dict[str, Any], *, probs: bool = False, meta: dict[str, Any] | None = None,
                suffix: str = suffix, fam: str = fam, expect: str = "error") -> None:
            p = w.preds(probs=probs)
            fields = {k: getattr(p, k) for k in ("labels", "logits", "probs", "features", "head_weight", "head_bias",
                                                 "split", "sample_id")}
            fields.update(change)
            q = Predictions(**fields, meta={**p.meta, **(meta or {})})
            path = w.path(f"{fam}-{family}", suffix)
            save_bundle(q, path)
            if suffix == ".npz":
                path.write_bytes(_rezip(path.read_bytes()))
            w.add("bundle", f"{fam}-{family}", expect, path)

        z = rng.normal(size=(n, c)).astype(np.float32)
        y = np.arange(n) % c
        bad("shape", {"labels": y.reshape(-1, 1)})
        bad("shape", {"labels": np.stack([y, y], 1)})
        bad("shape", {"logits": z[:, 0].copy()})
        bad("shape", {"logits": z[None]})
        bad("shape", {"labels": y[:-1]})
        bad("shape", {"logits": z[:-1]})
        bad("shape", {"logits": z[:, :1].copy()})
        bad("shape", {"logits": np.zeros((0, c), np.float32), "labels": np.zeros(0, np.int64), "features": None,
                      "split": None, "sample_id": None, "head_weight": None, "head_bias": None})
        bad("shape", {"logits": None})
        bad("shape", {"probs": np.full((n, c), 1 / c, np.float32)})
        bad("shape", {"labels": None})
        bad("labels", {"labels": y + 1})
        bad("labels", {"labels": y * 1000})
        bad("labels", {"labels": y - 1})
        bad("labels", {"labels": -np.ones(n, np.int64)})
        bad("labels", {"labels": y.astype(np.float32)})
        bad("labels", {"labels": y.astype(bool)})
        bad("labels", {"labels": np.zeros(n, np.int64)})
        bad("labels", {"labels": np.full(n, 2**62, np.int64)})
        bad("labels", {"labels": np.full(n, 2**63 + 5, np.uint64)})
        bad("probs", {"probs": np.full((n, c), 0.3, np.float32)}, probs=True)
        bad("probs", {"probs": np.full((n, c), 1.0, np.float32)}, probs=True)
        bad("probs", {"probs": np.tile(np.array([1.5, -0.5, 0.0], np.float32), (n, 1))}, probs=True)
        bad("probs", {"probs": np.full((n, c), np.nan, np.float32)}, probs=True)
        bad("probs", {"probs": np.full((n, c), 1 / c, np.float16).astype(np.int8)}, probs=True)
        zn = z.copy()
        zn[int(rng.integers(n)), int(rng.integers(c))] = np.nan
        bad("values", {"logits": zn})
        zi = z.copy()
        zi[int(rng.integers(n)), int(rng.integers(c))] = -np.inf
        bad("values", {"logits": zi})
        bad("values", {"logits": np.full((n, c), 1e300, np.float64)})
        bad("values", {"logits": np.full((n, c), 1e30, np.float32)})
        bad("values", {"logits": (z * 100).astype(np.int32)})
        bad("values", {"logits": z.astype(np.float16).view(np.uint16)})
        bad("optional", {"head_weight": np.array(1.0, np.float32)})
        bad("optional", {"head_weight": np.ones(c, np.float32)})
        bad("optional", {"head_weight": np.ones((c, 5), np.float32)})
        bad("optional", {"head_weight": np.ones((c, 4), np.int32)})
        bad("optional", {"head_bias": np.ones((c, 1), np.float32)})
        bad("optional", {"features": np.ones(n, np.float32)})
        bad("optional", {"features": np.ones((n, 2, 2), np.float32)})
        bad("optional", {"features": np.full((n, 4), np.nan, np.float32)})
        bad("optional", {"features": np.full((n, 4), 1e300, np.float64)})
        bad("optional", {"features": np.ones((n - 1, 4), np.float32)})
        bad("optional", {"split": np.full(n, 7, np.int64)})
        bad("optional", {"split": np.zeros(n, np.float32)})
        bad("optional", {"split": np.full(n, -1, np.int64)})
        bad("optional", {"split": (np.arange(n) % 3 == 0).astype(np.int64)})  # split 1 holds one class
        bad("optional", {"sample_id": np.zeros((n, 2), np.int64)})
        bad("optional", {"sample_id": np.zeros(n, np.float64)})
        if fam == "npz":
            bad("optional", {"head_weight": np.array(["a", "b", "c"])})
        bad("meta", {}, meta={"class_names": ["a", "b"]})
        bad("meta", {}, meta={"class_names": [1, 2, 3]})
        bad("meta", {}, meta={"class_names": "abc"})
        bad("meta", {}, meta={"split_names": [0, 1, 2]})
        bad("meta", {}, meta={"split_names": ["a", "a", "b"]})
        bad("meta", {}, meta={"split_names": ["train", "", "test"]})
        bad("meta", {}, meta={"split_names": []})
        bad("meta", {}, meta={"name": {"first": "x"}})
        bad("meta", {}, meta={"dataset": 7})
        bad("meta", {}, meta={"notes": ["a"]})
        bad("meta", {}, meta={"split_names": ["train", "val"]})  # split code 2 has no name

    # metadata the bundle writers cannot produce: not an object, not JSON, not a string
    def npz_meta(meta: np.ndarray | None) -> None:
        arrays = {**good}
        if meta is not None:
            arrays["meta"] = meta
        w.add("bundle", "npz-meta", "error", _npz(w.path("npz-meta", ".npz"), arrays))

    npz_meta(_meta_array([1, 2, 3]))
    npz_meta(_meta_array("just a string"))
    npz_meta(_meta_array(3.5))
    npz_meta(_meta_array(None))
    npz_meta(np.array("[" * 200_000 + "]" * 200_000))
    npz_meta(np.array('{"name": "x"'))
    npz_meta(np.array("{'name': 'x'}"))
    npz_meta(np.array(b'{"name": "\xff\xfe"}'))
    npz_meta(np.array([json.dumps({"name": "x"})]))
    npz_meta(np.array(json.dumps({"name": "x"})).astype("S"))
    npz_meta(np.zeros(3, np.float32))
    npz_meta(np.array("NaN"))

    _safetensors_bundle_cases(w)
    _bundle_ok_cases(w)


def _npy_header_only(shape: tuple[int, ...], descr: str) -> bytes:
    """The header of a .npy file of this shape (no data)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _safetensors_bundle_cases(w: _Writer) -> None:
    rng = w.rng
    base = w.valid_st()
    header, data = _st_parts(base)
    raw = base.read_bytes()
    meta = header.get("__metadata__", {})
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}

    def st(family: str, hdr: Any = None, payload: bytes = data, **kw: Any) -> None:
        p = w.path(f"st-{family}", ".safetensors")
        _st_write(p, hdr, payload, **kw)
        w.add("bundle", f"st-{family}", "error", p)

    def entry(key: str, **change: Any) -> dict[str, Any]:
        h = json.loads(json.dumps(header))
        h[key].update(change)
        for k, v in change.items():
            if v is _DROP:
                h[key].pop(k)
        return h

    # header length
    n_hdr = int.from_bytes(raw[:8], "little")
    for n in (len(raw), len(raw) * 10, 2**63, 2**64 - 1, 0, 1, n_hdr + 1, n_hdr - 1):
        st("header-length", header, declared_len=n)
    for n in (0, 3, 7):
        w.file("bundle", "st-header-length", "error", ".safetensors", raw[:n])
    # header not JSON / not an object
    for text in (b"not json at all", b"{" * 5000, b"[" * 100000 + b"]" * 100000, b'{"a": "\xff\xfe"}',
                 json.dumps(header).encode()[:-1], b"\x00" * 64, b"{}" + b"\x00" * 6):
        st("header-json", raw_header=text)
    for hdr in ([1, 2, 3], "header", 42, None, [header]):
        st("header-json", hdr)
    # entries that are not objects, or lack fields
    for v in ([1, 2], "F32", 3, None, True):
        st("entry", {**header, "logits": v})
    for f in ("dtype", "shape", "data_offsets"):
        st("entry", entry("logits", **{f: _DROP}))
    st("entry", {**header, "__metadata__": meta, "": tensors["labels"]})
    # offsets
    lo, hi = tensors["logits"]["data_offsets"]
    for offs in (["0", str(hi - lo)], [hi, lo], [lo, hi + 8], [lo, 10**12], [-4, hi - lo - 4], [float(lo), float(hi)],
                 [lo], [lo, hi, hi], "0-360", [True, hi], None):
        st("offsets", entry("logits", data_offsets=offs))
    other = next(k for k in tensors if k != "logits")
    st("offsets", entry("logits", data_offsets=tensors[other]["data_offsets"], dtype=tensors[other]["dtype"],
                        shape=tensors[other]["shape"]))  # two names, one span
    olo, ohi = tensors[other]["data_offsets"]
    if ohi - olo >= 8:
        h = entry(other, data_offsets=[olo + 4, ohi + 4])
        st("offsets", h)  # overlapping its neighbour
    st("offsets", header, payload=data[:-8])  # data shorter than the last offset
    # dtypes
    for dt in ("F128", "f32", "float32", "", 4, None, ["F32"]):
        st("dtype", entry("logits", dtype=dt))
    for dt in ("BF16", "F8_E4M3", "F8_E5M2"):
        size = {"BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1}[dt]
        hdr = {"__metadata__": meta, "labels": tensors["labels"]}
        n_lab = tensors["labels"]["data_offsets"][1] - tensors["labels"]["data_offsets"][0]
        hdr["labels"] = {**tensors["labels"], "data_offsets": [0, n_lab]}
        hdr["logits"] = {"dtype": dt, "shape": [N_ROWS, N_CLASSES], "data_offsets": [n_lab, n_lab + N_ROWS * N_CLASSES
                                                                                     * size]}
        lab = data[tensors["labels"]["data_offsets"][0]:tensors["labels"]["data_offsets"][1]]
        st("dtype", hdr, payload=lab + rng.bytes(N_ROWS * N_CLASSES * size))
    # shapes
    for shape in ([-30, -3], [30.0, 3.0], ["30", "3"], [[30, 3]], [30, True], "30x3", None, [10**12, 3]):
        st("shape", entry("logits", shape=shape))
    # sizes that do not match the shape
    st("size", entry("logits", shape=[N_ROWS, N_CLASSES + 1]))
    st("size", entry("logits", shape=[N_ROWS - 1, N_CLASSES]))
    st("size", entry("logits", dtype="F64"))
    st("size", entry("logits", dtype="F16"))
    st("size", entry("logits", shape=[]))
    st("size", header, payload=data + b"trailing")  # bytes after the last tensor
    h = json.loads(json.dumps(header))
    for v in (v for k, v in h.items() if k != "__metadata__"):
        v["data_offsets"] = [v["data_offsets"][0] + 8, v["data_offsets"][1] + 8]
    st("size", h, payload=bytes(8) + data)  # bytes before the first tensor
    # __metadata__ that is not an object of strings; metadata JSON that is not a bundle's
    for m in ({"calibviz_meta": 7}, {"calibviz_meta": {"name": "x"}}, {"x": None}, {"x": ["a"]}, [1], "meta",
              {"calibviz_meta": "[1, 2]"}, {"calibviz_meta": "{not json"}, {"calibviz_meta": "[" * 100000},
              {"calibviz_meta": '"string"'}, {"calibviz_meta": json.dumps({"class_names": ["a"]})},
              {"calibviz_meta": json.dumps({"name": 5})}, {"calibviz_meta": json.dumps({"split_names": [1, 2, 3]})}):
        st("metadata", {**tensors, "__metadata__": m})
    # truncated at several offsets
    for o in sorted({9, 8 + n_hdr // 2, 8 + n_hdr, len(raw) - 1, *(int(x) for x in rng.integers(9, len(raw), 6))}):
        w.file("bundle", "st-truncate", "error", ".safetensors", raw[:o])
    # duplicate tensor names in the header (the JSON parser would keep the last)
    text = json.dumps(header)
    dup = text[:-1] + ', "logits": ' + json.dumps(tensors["logits"]) + "}"
    st("entry", raw_header=dup.encode())
    dup = text[:-1] + ', "logits": ' + json.dumps({**tensors["logits"], "data_offsets": [len(data), len(data)],
                                                  "shape": [0, N_CLASSES]}) + "}"
    st("entry", raw_header=dup.encode())
    dup = text.replace('"dtype": "F32"', '"dtype": "F32", "dtype": "F16"', 1)
    st("entry", raw_header=dup.encode())


class _Drop:
    pass


_DROP = _Drop()


def _bundle_ok_cases(w: _Writer) -> None:
    """Valid edge cases that must load."""

    def ok(family: str, preds: Predictions, suffix: str = ".npz") -> None:
        p = w.path(family, suffix)
        save_bundle(preds, p)
        if suffix == ".npz":
            p.write_bytes(_rezip(p.read_bytes()))
        w.add("bundle", family, "ok", p)

    for suffix, fam in ((".npz", "npz-ok"), (".safetensors", "st-ok")):
        ok(fam, w.preds(), suffix)
        ok(fam, w.preds(n=4, c=2, features=False, split=False), suffix)  # 2 classes
        ok(fam, Predictions(labels=np.array([0, 1]), logits=np.array([[1, 0], [0, 1]], np.float32)), suffix)
        ok(fam, w.preds(dtype=np.float16), suffix)
        ok(fam, w.preds(dtype=np.float64), suffix)
        ok(fam, w.preds(probs=True), suffix)
        ok(fam, w.preds(probs=True, dtype=np.float16), suffix)
        ok(fam, w.preds(probs=True, features=False, split=False), suffix)
        p = w.preds(features=False)
        ok(fam, Predictions(labels=p.labels.astype(np.uint8), logits=p.logits, split=p.split.astype(np.int8)), suffix)
        ok(fam, w.preds(n=60, c=20, split=False, class_names=[f"c{i}" for i in range(20)]), suffix)
        ok(fam, w.preds(split_names=["fit", "holdout", "eval"], notes="custom split names"), suffix)
        p = w.preds()
        ok(fam, Predictions(labels=p.labels, logits=p.logits * 1e5, meta={"unknown_key": [1, {"a": None}]}), suffix)
    # .npz written by numpy itself: deflated (savez_compressed), to a stream that cannot seek (data descriptors),
    # fortran order and big-endian arrays, format 2.0 headers, no metadata, an extra array, a zip comment
    a = w.arrays()
    p = w.path("npz-ok", ".npz")
    np.savez_compressed(p, **a, meta=_meta_array({"name": "deflated"}))
    w.add("bundle", "npz-ok", "ok", p)

    class _Stream(io.RawIOBase):
        def __init__(self) -> None:
            self.buf = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            self.buf += bytes(b)
            return len(b)

    s = _Stream()
    with zipfile.ZipFile(s, "w", zipfile.ZIP_DEFLATED) as zf:
        for k, v in a.items():
            with zf.open(zipfile.ZipInfo(f"{k}.npy", _DATE), "w") as f:
                f.write(_npy(v))
    w.file("bundle", "npz-ok", "ok", ".npz", bytes(s.buf))
    w.add("bundle", "npz-ok", "ok", _npz(w.path("npz-ok", ".npz"), {
        **a, "logits": np.asfortranarray(a["logits"]), "labels": a["labels"].astype(">i8"),
        "features": a["features"].astype(">f4")}))
    w.add("bundle", "npz-ok", "ok", _zip(w.path("npz-ok", ".npz"), [(f"{k}.npy", _npy(v, (2, 0)))
                                                                     for k, v in a.items()]))
    w.add("bundle", "npz-ok", "ok", _npz(w.path("npz-ok", ".npz"), {**a, "meta": _meta_array({}),
                                                                     "other": np.arange(5)}))
    w.add("bundle", "npz-ok", "ok", _zip(w.path("npz-ok", ".npz"), [(f"{k}.npy", _npy(v)) for k, v in a.items()],
                                         comment=b"written by a hand-rolled exporter"))
    # safetensors with a padded header and tensors in another order
    header, data = _st_parts(w.valid_st())
    text = json.dumps(dict(reversed(list(header.items())))).encode()
    p = w.path("st-ok", ".safetensors")
    _st_write(p, None, data, raw_header=text + b" " * (-len(text) % 8 + 8))
    w.add("bundle", "st-ok", "ok", p)
    hdr = {k: v for k, v in header.items() if k != "__metadata__"}
    p = w.path("st-ok", ".safetensors")
    _st_write(p, hdr, data)  # no metadata at all
    w.add("bundle", "st-ok", "ok", p)


# ---------------------------------------------------------------------------------------------- checkpoints


def _card(**change: Any) -> dict[str, Any]:
    card: dict[str, Any] = {"name": "fuzz/ckpt", "title": "fuzz", "arch": "cnn_small", "arch_kwargs": {},
                            "num_classes": 10, "class_names": [str(i) for i in range(10)], "dataset": "digits"}
    for k, v in change.items():
        if v is _DROP:
            card.pop(k, None)
        else:
            card[k] = v
    return card


def _checkpoint_cases(w: _Writer) -> None:
    from calibviz.models import build_model

    torch.manual_seed(w.seed)
    cnn = build_model("cnn_small")
    mlp = build_model("mlp_small")
    state = {k: v.detach().clone().contiguous() for k, v in cnn.state_dict().items()}

    def ckpt(family: str, model: Any, card: Any, expect: str = "error") -> Path:
        p = w.path(family, ".safetensors")
        save_checkpoint(p, model, card)
        return w.add("checkpoint", family, expect, p)

    def raw(family: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None,
            expect: str = "error") -> Path:
        from safetensors.torch import save_file

        p = w.path(family, ".safetensors")
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(p), metadata=metadata)
        return w.add("checkpoint", family, expect, p)

    # cards
    raw("ckpt-card", state, None)
    raw("ckpt-card", state, {"other": "x"})
    raw("ckpt-card", state, {CARD_KEY: "{not json"})
    raw("ckpt-card", state, {CARD_KEY: "[" * 100000})
    raw("ckpt-card", state, {CARD_KEY: ""})
    for card in ("a string", ["a", "list"], 7, None):
        ckpt("ckpt-card", cnn, card)
    for change in ({"dataset": _DROP}, {"dataset": "cifar10"}, {"dataset": ""}, {"dataset": None},
                   {"dataset": ["digits"]}, {"num_classes": "ten"}, {"num_classes": 1}, {"num_classes": -3},
                   {"num_classes": 10.0}, {"num_classes": True}, {"num_classes": 5}, {"num_classes": _DROP},
                   {"arch": "resnet50"}, {"arch": 5}, {"arch": None}, {"arch": ["cnn_small"]}, {"arch": ""},
                   {"arch": _DROP}, {"arch": "__import__('os')"}, {"arch_kwargs": [1, 2]}, {"arch_kwargs": "wide"},
                   {"arch_kwargs": {"channels": [8, 16], "extra": {"nested": 1}}},
                   {"arch_kwargs": {"hidden": 10**6, "channels": [4096, 4096]}},
                   {"arch_kwargs": {"image_size": 10**5}}, {"arch_kwargs": {"no_such_kwarg": 1}},
                   {"arch_kwargs": {"hidden": -5}}, {"arch_kwargs": {"hidden": "wide"}},
                   {"arch_kwargs": {"channels": [1, 2, 3]}}, {"arch_kwargs": {"hidden": 1e30}},
                   {"arch_kwargs": {"n_classes": 7}}, {"class_names": ["a"]}, {"class_names": "0123456789"},
                   {"title": 5}, {"metrics": [1]}):
        ckpt("ckpt-card", cnn, _card(**change))
    ckpt("ckpt-card", mlp, _card(arch="mlp", arch_kwargs={"hidden": [100_000, 100_000, 100_000]},
                                 dataset="mnist1d"))
    ckpt("ckpt-card", mlp, _card(arch="mlp", arch_kwargs={"hidden": [4] * 20_000}, dataset="mnist1d"))
    # weights
    for value in (float("nan"), float("inf"), -float("inf")):
        bad = dict(state)
        key = sorted(bad)[int(w.rng.integers(len(bad)))]
        bad[key] = bad[key].clone()
        bad[key].view(-1)[0] = value
        raw("ckpt-weights", bad, {CARD_KEY: json.dumps(_card())})
    for drop in ("head.weight", "conv.0.bias"):
        raw("ckpt-weights", {k: v for k, v in state.items() if k != drop}, {CARD_KEY: json.dumps(_card())})
    raw("ckpt-weights", {**state, "extra.weight": torch.zeros(3)}, {CARD_KEY: json.dumps(_card())})
    raw("ckpt-weights", {**state, "head.weight": torch.zeros(10, 33)}, {CARD_KEY: json.dumps(_card())})
    raw("ckpt-weights", {**state, "head.weight": state["head.weight"].T.contiguous()},
        {CARD_KEY: json.dumps(_card())})
    raw("ckpt-weights", {**state, "head.weight": state["head.weight"].to(torch.int32)},
        {CARD_KEY: json.dumps(_card())})
    raw("ckpt-weights", {**state, "head.weight": state["head.weight"].to(torch.bool)},
        {CARD_KEY: json.dumps(_card())})
    ckpt("ckpt-weights", mlp, _card())  # tensors of another architecture
    ckpt("ckpt-weights", cnn, _card(arch="cnn"))  # same names, other shapes
    # truncated, and random bytes
    good = ckpt("ckpt-ok", cnn, _card(), expect="ok")
    data = good.read_bytes()
    n_hdr = int.from_bytes(data[:8], "little")
    for o in sorted({4, 8, 8 + n_hdr // 2, 8 + n_hdr, len(data) - 1, len(data) // 2,
                     *(int(x) for x in w.rng.integers(9, len(data), 4))}):
        w.file("checkpoint", "ckpt-truncate", "error", ".safetensors", data[:o])
    w.file("checkpoint", "ckpt-truncate", "error", ".safetensors", w.rng.bytes(2000))
    # valid edge cases: the zoo's float16 weights, the mlp on mnist1d, custom widths, float64 / bfloat16 weights
    half = build_model("cnn_small")
    half.load_state_dict(cnn.state_dict())
    ckpt("ckpt-ok", half.half(), _card(), expect="ok")
    ckpt("ckpt-ok", mlp, _card(arch="mlp_small", dataset="mnist1d", class_names=_DROP), expect="ok")
    torch.manual_seed(w.seed + 1)
    ckpt("ckpt-ok", build_model("mlp_small", hidden=[16], n_classes=10),
         _card(arch="mlp_small", dataset="mnist1d", arch_kwargs={"hidden": [16]}), expect="ok")
    raw("ckpt-ok", {k: v.double() for k, v in state.items()}, {CARD_KEY: json.dumps(_card())}, expect="ok")
    raw("ckpt-ok", {k: v.bfloat16() for k, v in state.items()}, {CARD_KEY: json.dumps(_card(notes="bf16"))},
        expect="ok")


# ---------------------------------------------------------------------------------------------- user weights


def _weights_state(seed: int) -> dict[str, torch.Tensor]:
    from tests.user_models import MlpClassifier

    torch.manual_seed(seed)
    return {k: v.detach().clone() for k, v in MlpClassifier(**WEIGHTS_KWARGS).state_dict().items()}


def _weights_cases(w: _Writer) -> None:
    from safetensors.torch import save_file

    state = _weights_state(w.seed)
    marker = str(w.folder / MARKER)

    def pt(family: str, obj: Any, suffix: str = ".pt", expect: str = "error", **kw: Any) -> Path:
        p = w.path(family, suffix)
        torch.save(obj, p, **kw)
        return w.add("weights", family, expect, p)

    # pickles whose unpickling would create the marker file
    payloads = [_Payload(builtins.open, marker, "w"), _Payload(os.system, f"touch '{marker}'"),
                _Payload(builtins.exec, f"open({marker!r}, 'w').close()"), _Payload(Path.touch, Path(marker)),
                _Payload(subprocess.call, ["touch", marker])]
    for i, payload in enumerate(payloads):
        pt("pt-pickle", payload, (".pt", ".pth", ".bin")[i % 3])
    pt("pt-pickle", {"state_dict": {**state, "classifier.1.weight": payloads[0]}})
    pt("pt-pickle", {**state, "hook": payloads[1]})
    pt("pt-pickle", [state, payloads[2]])
    pt("pt-pickle", {**state, "x": payloads[0]}, _use_new_zipfile_serialization=False)
    import pickle

    for proto in (2, 5):
        w.file("weights", "pt-pickle", "error", ".pt", pickle.dumps(payloads[0], protocol=proto))
    # not a state dict: truncated, not a zip, other objects
    good_pt = pt("pt-ok", state, expect="ok")
    data = good_pt.read_bytes()
    for o in sorted({0, 4, 30, len(data) // 3, len(data) // 2, len(data) - 22, len(data) - 1,
                     *(int(x) for x in w.rng.integers(1, len(data), 4))}):
        w.file("weights", "pt-truncate", "error", ".pt", data[:o])
    w.file("weights", "pt-not-zip", "error", ".pt", w.rng.bytes(3000))
    w.file("weights", "pt-not-zip", "error", ".pth", b"this is a text file, not weights\n")
    w.add("weights", "pt-not-zip", "error", _zip(w.path("pt-not-zip", ".pt"), [("readme.txt", b"hello")]))
    for obj in ([1, 2, 3], "weights", 3.5, {}, {"classifier.1.weight": 3}, {"state_dict": {"a": "b"}},
                torch.zeros(3)):
        pt("pt-not-state", obj)
    # NaN / inf weights, keys and shapes that do not fit the architecture
    for value in (float("nan"), float("inf")):
        bad = {k: v.clone() for k, v in state.items()}
        bad["classifier.1.weight"].view(-1)[int(w.rng.integers(bad["classifier.1.weight"].numel()))] = value
        pt("pt-nan", bad)
        p = w.path("st-weights-nan", ".safetensors")
        save_file(bad, str(p))
        w.add("weights", "st-weights-nan", "error", p)
    pt("pt-keys", {k: v for k, v in state.items() if k != "classifier.1.bias"})
    pt("pt-keys", {**state, "classifier.2.weight": torch.zeros(3, 8)})
    pt("pt-keys", {**state, "classifier.1.weight": torch.zeros(4, 8)})
    pt("pt-keys", {"module." + k if i else k: v for i, (k, v) in enumerate(state.items())})
    # zip bombs: a storage record deflated from megabytes of zeros (torch allocates its declared size first), or a
    # directory claiming sizes the file cannot hold
    with zipfile.ZipFile(good_pt) as zf:
        records = [(i.filename, zf.read(i)) for i in zf.infolist()]
    data_record = next(n for n, _ in records if "/data/" in n)
    p = w.path("pt-zipbomb", ".pt")
    with zipfile.ZipFile(p, "w") as zf:
        for name, blob in records:
            info = zipfile.ZipInfo(name, _DATE)
            if name == data_record:
                info.compress_type = zipfile.ZIP_DEFLATED
                with zf.open(info, "w") as f:
                    for _ in range(24):
                        f.write(bytes(2**20))
            else:
                zf.writestr(info, blob)
    w.add("weights", "pt-zipbomb", "error", p)
    raw = good_pt.read_bytes()
    w.file("weights", "pt-zipbomb", "error", ".pt", _patch(raw, data_record, local={22: _u32(2**31)},
                                                          central={24: _u32(2**31)}))
    w.file("weights", "pt-zipbomb", "error", ".pt", _patch(raw, data_record, central={20: _u32(2**30)}))
    scripted = torch.jit.script(torch.nn.Linear(2, 2))
    p = w.path("pt-program", ".pt")
    scripted.save(str(p))
    w.add("weights", "pt-program", "error", p)
    # safetensors weights with damaged headers
    st_good = w.path("st-weights-ok", ".safetensors")
    save_file(state, str(st_good))
    w.add("weights", "st-weights-ok", "ok", st_good)
    header, blob = _st_parts(st_good)
    key = next(iter(k for k in header if k != "__metadata__"))
    for change in ({"dtype": "F128"}, {"shape": [-1]}, {"data_offsets": [0, 10**9]}, {"data_offsets": ["0", "4"]}):
        h = json.loads(json.dumps(header))
        h[key].update(change)
        p = w.path("st-weights-header", ".safetensors")
        _st_write(p, h, blob)
        w.add("weights", "st-weights-header", "error", p)
    w.file("weights", "st-weights-header", "error", ".safetensors", st_good.read_bytes() + bytes(16))
    for o in (5, len(st_good.read_bytes()) - 3):
        w.file("weights", "st-weights-header", "error", ".safetensors", st_good.read_bytes()[:o])
    # valid: wrapped, prefixed, .pth / .bin, float16 / bfloat16, the legacy (non-zip) torch format
    pt("pt-ok", {"state_dict": state, "epoch": 3, "optimizer": {"lr": 0.1}}, expect="ok")
    pt("pt-ok", {"model_state_dict": {"module." + k: v for k, v in state.items()}}, ".pth", expect="ok")
    pt("pt-ok", {"_orig_mod." + k: v.half() for k, v in state.items()}, ".bin", expect="ok")
    pt("pt-ok", state, expect="ok", _use_new_zipfile_serialization=False)
    p = w.path("st-weights-ok", ".safetensors")
    save_file({k: v.bfloat16() for k, v in state.items()}, str(p))
    w.add("weights", "st-weights-ok", "ok", p)
    p = w.folder / MODEL_WEIGHTS
    save_file(state, str(p))
    w.add("weights", "st-weights-ok", "ok", p)


# ------------------------------------------------------------------------------------------------- tensors


def _tensors_cases(w: _Writer) -> None:
    rng = w.rng
    n = 24
    x = rng.random((n, 3, 4, 4)).astype(np.float32)
    y = (np.arange(n) % 3).astype(np.int64)

    def npz(family: str, arrays: dict[str, np.ndarray], expect: str = "error", path: Path | None = None) -> Path:
        return w.add("tensors", family, expect, _npz(path or w.path(family, ".npz"), arrays))

    def st(family: str, arrays: dict[str, np.ndarray], expect: str = "error",
           metadata: dict[str, str] | None = None) -> Path:
        return w.add("tensors", family, expect, _state_st(w.path(family, ".safetensors"), arrays, metadata))

    npz("tensors-ok", {"x": x, "y": y}, "ok", path=w.folder / MODEL_DATA)
    for write in (npz, st):
        write("tensors-dtype", {"x": x.astype(np.int64), "y": y})
        write("tensors-dtype", {"x": x > 0.5, "y": y})
        write("tensors-dtype", {"x": x, "y": y.astype(np.float32)})
        write("tensors-dtype", {"x": x, "y": y.astype(np.uint64)})
        write("tensors-dtype", {"x": x, "y": y.astype(bool)})
        write("tensors-dtype", {"x": x, "y": y, "split": (np.arange(n) % 3).astype(np.float32)})
        write("tensors-shape", {"x": x, "y": y.reshape(-1, 1)})
        write("tensors-shape", {"x": x.reshape(n, -1), "y": y})
        write("tensors-shape", {"x": x[..., None, None], "y": y})
        write("tensors-shape", {"x": x[:0], "y": y[:0]})
        write("tensors-shape", {"x": x, "y": y, "split": np.zeros(n - 1, np.int64)})
        write("tensors-length", {"x": x, "y": y[:-1]})
        write("tensors-length", {"x": x[:-3], "y": y})
        write("tensors-missing", {"x": x})
        write("tensors-missing", {"y": y})
        write("tensors-missing", {"images": x, "labels": y})
        write("tensors-range", {"x": x, "y": y - 1})
        write("tensors-range", {"x": x, "y": np.full(n, 10**12, np.int64)})
        write("tensors-range", {"x": x, "y": np.full(n, -(2**62), np.int64)})
        write("tensors-range", {"x": x, "y": y, "split": np.full(n, 3, np.int64)})
    npz("tensors-dtype", {"x": np.array([{"a": 1}] * n, dtype=object), "y": y})
    npz("tensors-dtype", {"x": x, "y": y, "class_names": np.arange(3)})
    npz("tensors-range", {"x": x, "y": y, "class_names": np.array(["a", "b"])})
    npz("tensors-dtype", {"x": x, "y": y, "class_names": np.array("abc")})
    npz("tensors-dtype", {"x": x, "y": y, "class_names": np.array([["a", "b", "c"]])})
    st("tensors-range", {"x": x, "y": y}, metadata={"class_names": '["a", "b"]'})
    st("tensors-dtype", {"x": x, "y": y}, metadata={"class_names": '{"a": 1}'})
    st("tensors-dtype", {"x": x, "y": y}, metadata={"class_names": "[not json"})
    st("tensors-dtype", {"x": x, "y": y}, metadata={"class_names": '[["a"], ["b"], ["c"]]'})
    w.file("tensors", "tensors-damaged", "error", ".npz", rng.bytes(500))
    data = (w.folder / MODEL_DATA).read_bytes()
    w.file("tensors", "tensors-damaged", "error", ".npz", data[:len(data) // 2])
    p = w.folder / "_tensors.safetensors"
    _state_st(p, {"x": x, "y": y})
    whole = p.read_bytes()
    w.file("tensors", "tensors-damaged", "error", ".safetensors", whole[:len(whole) - 40])
    w.file("tensors", "tensors-damaged", "error", ".safetensors", whole + b"\x00" * 40)
    header, blob = _st_parts(p)
    header["x"]["dtype"] = "BF16"
    header["x"]["shape"] = [n, 3, 4, 8]
    p2 = w.path("tensors-dtype", ".safetensors")
    _st_write(p2, header, blob)
    w.add("tensors", "tensors-dtype", "error", p2)
    p.unlink()
    # valid (and of WEIGHTS_ARCH's input size): uint8 (N, H, W), float16, splits, class names, safetensors
    npz("tensors-ok", {"x": (x.reshape(n, 4, 12) * 255).astype(np.uint8), "y": y}, "ok")  # (N, H, W), 48 pixels
    npz("tensors-ok", {"x": x.astype(np.float16), "y": y.astype(np.int32), "split": (np.arange(n) // 3) % 3}, "ok")
    npz("tensors-ok", {"x": x, "y": y, "class_names": np.array(["cat", "dog", "emu"])}, "ok")
    st("tensors-ok", {"x": x, "y": y.astype(np.uint8)}, "ok", metadata={"class_names": '["cat", "dog", "emu"]'})
    st("tensors-ok", {"x": x.astype(np.float64), "y": y, "split": ((np.arange(n) // 3) % 3).astype(np.int8)}, "ok")


# ------------------------------------------------------------------------------------------------------- API


def malformed_files(folder: str | Path, seed: int = 0) -> list[Case]:
    """Write the seeded fuzz files into `folder` (created) and return their cases; the same seed gives the same
    files. The folder must not already hold a file named MARKER."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    w = _Writer(folder, seed)
    _bundle_cases(w)
    _checkpoint_cases(w)
    _weights_cases(w)
    _tensors_cases(w)
    for p in folder.glob("_base.*"):
        p.unlink()
    return w.cases


def loader_error(kind: str) -> type[Exception]:
    """The loader's own error type for a kind of file."""
    from calibviz.data_sources import DataSourceError
    from calibviz.model_sources import ModelSourceError

    return {"bundle": FormatError, "checkpoint": FormatError, "weights": ModelSourceError,
            "tensors": DataSourceError}[kind]


def load_case(case: Case) -> object:
    """Read and validate one case's file with the loader its kind uses; returns what it loaded."""
    if case.kind == "bundle":
        from calibviz.formats import load_bundle

        return load_bundle(case.path)
    if case.kind == "checkpoint":
        from calibviz.formats import load_checkpoint

        model, _ = load_checkpoint(case.path)
        return model
    if case.kind == "weights":
        from calibviz.model_sources import ModelSource, build_user_model

        return build_user_model(ModelSource.module(case.path, WEIGHTS_ARCH, WEIGHTS_KWARGS))
    if case.kind == "tensors":
        from calibviz.data_sources import open_inputs

        inputs = open_inputs(f"tensors:{case.path}")
        xb, _ = next(inputs.batches(batch_size=8))
        return xb
    raise ValueError(f"unknown kind {case.kind!r}")


STATUSES = ("clear-error", "correct-success", "traceback", "wrong-success", "wrong-error", "misleading")


@dataclass(frozen=True)
class Outcome:
    case: Case
    status: str   # one of STATUSES
    message: str  # the error message (or exception), "" on success


def message_problem(message: str, case: Case) -> str:
    """Why an error message is not a clear one ("" when it is): not one line, or not naming the file."""
    lines = message.strip().splitlines()
    if len(lines) != 1:
        return f"{len(lines)} lines"
    if case.path.name not in message:
        return f"does not name {case.path.name}"
    return ""


def run_case(case: Case) -> Outcome:
    """One case through its loader, classified."""
    import traceback

    error = loader_error(case.kind)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            load_case(case)
    except error as e:
        msg = str(e)
        if case.expect == "ok":
            return Outcome(case, "wrong-error", msg)
        return Outcome(case, "misleading" if message_problem(msg, case) else "clear-error", msg)
    except Exception as e:
        tb = traceback.format_exception(type(e), e, e.__traceback__)
        return Outcome(case, "traceback", f"{type(e).__name__}: {e} | {''.join(tb[-3:]).strip()}"[:2000])
    return Outcome(case, "correct-success" if case.expect == "ok" else "wrong-success", "")


# --------------------------------------------------------------------------------------------- command line

CLI_DRIVER = r"""
import contextlib, io, json, sys, time, traceback
t0 = time.perf_counter()
from calibviz.cli import main
runs = json.load(sys.stdin)
results = []
startup = time.perf_counter() - t0
for argv in runs:
    t = time.perf_counter()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
    results.append({"code": code, "stderr": err.getvalue(), "stdout": out.getvalue()[:20000],
                    "seconds": time.perf_counter() - t})
sys.stdout.write(json.dumps({"startup": startup, "results": results}))
"""


def cli_argv(case: Case, folder: Path, command: str) -> list[str]:
    """The command line for a case: `report FILE --json` or `recalibrate FILE --method ts --json`, a checkpoint on
    its dataset's test split, weights and tensors files through `--arch ... --weights ... --data tensors:...`."""
    tail = ["--json", "--boot", "0"]
    head = ["report"] if command == "report" else ["recalibrate", "--method", "ts"]
    if case.kind == "bundle":
        return [*head, str(case.path), *tail]
    if case.kind == "checkpoint":
        return [*head, str(case.path), *tail] + (["--split", "test"] if command == "report" else [])
    weights = case.path if case.kind == "weights" else folder / MODEL_WEIGHTS
    data = case.path if case.kind == "tensors" else folder / MODEL_DATA
    return [*head, "--arch", WEIGHTS_ARCH, "--arch-kwargs", json.dumps(WEIGHTS_KWARGS), "--weights", str(weights),
            "--data", f"tensors:{data}", *tail]


def cli_sample(cases: list[Case], seed: int = 0, size: int = 40) -> list[Case]:
    """A seeded sample of about `size` cases: one of every bundle family, then others (every pickle payload among
    them) up to `size`, errors and successes of every kind."""
    rng = np.random.default_rng([seed, 7])
    by_family: dict[str, list[Case]] = {}
    for c in cases:
        by_family.setdefault(c.family, []).append(c)
    picked: list[Case] = []
    for fam in sorted(by_family):
        group = by_family[fam]
        if group[0].kind == "bundle" or fam == "pt-pickle":
            picked.append(group[int(rng.integers(len(group)))])
    picked += [c for c in by_family.get("pt-pickle", []) if c not in picked][:3]
    rest = [c for c in cases if c not in picked and c.kind != "bundle" and _quick_on_cli(c)]
    for kind in ("checkpoint", "weights", "tensors"):
        for expect in ("ok", "error"):
            group = [c for c in rest if c.kind == kind and c.expect == expect]
            if group and len(picked) < size + 8:
                picked.append(group[int(rng.integers(len(group)))])
    rest = [c for c in cases if c not in picked and _quick_on_cli(c)]
    while len(picked) < size and rest:
        picked.append(rest.pop(int(rng.integers(len(rest)))))
    return picked


def _quick_on_cli(case: Case) -> bool:
    """False for a valid checkpoint on mnist1d: building that dataset takes seconds more than digits."""
    if case.kind != "checkpoint" or case.expect != "ok":
        return True
    from calibviz.formats import read_card

    return read_card(case.path)["dataset"] == "digits"


@dataclass(frozen=True)
class CliOutcome:
    case: Case
    argv: tuple[str, ...]
    code: int
    stderr: str
    status: str  # one of STATUSES
    seconds: float


def _cli_command(case: Case, rng: np.random.Generator) -> str:
    """recalibrate for half the cases that can take it (a bundle with val and test splits, or any error case)."""
    if case.kind in ("weights", "tensors") or rng.random() < 0.5:
        return "report"
    if case.expect == "ok" and case.kind == "bundle":
        from calibviz.formats import load_bundle

        p = load_bundle(case.path)
        names = p.split_names
        if p.split is None or not {"val", "test"} <= set(names):
            return "report"
        if any(not (p.split == names.index(s)).any() for s in ("val", "test")):
            return "report"
    return "recalibrate"


def run_cli(cases: list[Case], folder: Path, seed: int = 0, timeout: float = 600) -> list[CliOutcome]:
    """Every case through `calibviz.cli.main` in ONE subprocess (cwd: the repository, so `tests.user_models`
    imports): error cases must exit 2 with one line on stderr naming the file, ok cases 0 with JSON on stdout."""
    rng = np.random.default_rng([seed, 11])
    runs = [cli_argv(c, folder, _cli_command(c, rng)) for c in cases]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    r = subprocess.run([sys.executable, "-c", CLI_DRIVER], input=json.dumps(runs), capture_output=True, text=True,
                       cwd=REPO, env=env, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"the CLI driver failed ({r.returncode}): {r.stderr[-3000:]}")
    results = json.loads(r.stdout)["results"]
    out = []
    for case, argv, res in zip(cases, runs, results, strict=True):
        code, err = res["code"], res["stderr"]
        if "Traceback" in err or code not in (0, 2):
            status = "traceback"
        elif case.expect == "ok":
            try:
                json.loads(res["stdout"])
                parsed = True
            except ValueError:
                parsed = False
            status = "correct-success" if code == 0 and parsed else "wrong-error"
        elif code == 0:
            status = "wrong-success"
        else:
            lines = err.strip().splitlines()
            status = "clear-error" if len(lines) == 1 and case.path.name in err else "misleading"
        out.append(CliOutcome(case, tuple(argv), code, err, status, res["seconds"]))
    return out
