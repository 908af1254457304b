"""Defensive readers of `.npz` archives and safetensors headers: structure checked before anything is allocated.

A file from elsewhere may be truncated, bit-flipped, hand-written or hostile. Both readers check what a file
declares (member names, `.npy` headers, tensor dtypes, shapes and offsets) against what it holds and against the
file's own size before reading data, so a file cannot make calibviz allocate much more than its size, and each
problem becomes one `FormatError` line naming the file, the member or field, and what was expected. Nothing
here unpickles anything: object arrays are refused from the `.npy` header, before numpy is asked to read them.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

# A deflated member may expand; real bundles written with np.savez_compressed expand 1-4x. Beyond this many times
# the file's size (plus a floor for small files), an archive is refused as a possible zip bomb.
MAX_EXPANSION = 16
EXPANSION_FLOOR = 16 * 2**20
MAX_NPY_HEADER = 10_000          # numpy's own default limit on a .npy header
MAX_NPY_DIMS = 32                # numpy 1.x's limit on an array's dimensions (numpy 2 allows 64)
MAX_JSON_BYTES = 16 * 2**20      # metadata and cards: far above any real one
MAX_SAFETENSORS_HEADER = 100 * 2**20  # safetensors' own limit
_MEMBER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\.npy$")

# safetensors dtype names -> numpy dtypes numpy can read; the others are refused by name where numpy reads the file.
NUMPY_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
                "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}
ITEM_SIZES = {**{k: np.dtype(v).itemsize for k, v in NUMPY_DTYPES.items()},
              "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "C64": 8}


class FormatError(ValueError):
    """A file that is not a valid checkpoint, bundle or tensor file; the message is one line naming the file, the
    field and the problem. (Re-exported by `calibviz.formats`, where users meet it.)"""


def one_line(e: object, limit: int = 160) -> str:
    """An error's message on one line (whitespace collapsed), cut at `limit` characters; an exception's type when
    its message is empty. Every loader puts foreign error text (numpy, zipfile, torch, safetensors) through it."""
    return " ".join(str(e).split())[:limit] or (type(e).__name__ if isinstance(e, BaseException) else "")


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n} bytes"


def _member_header(fp: Any, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran order, dtype) from a .npy member's header, refusing object and structured dtypes."""
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp, max_header_size=MAX_NPY_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp, max_header_size=MAX_NPY_HEADER)
        else:
            raise FormatError(f"{where}: .npy format version {version} is not supported (1.0 or 2.0)")
    except (FormatError, zipfile.BadZipFile, zlib.error):
        raise  # a damaged archive (bad CRC, bad deflate stream) is reported as such by read_npz
    except Exception as e:  # numpy's header parser (tokenize, literal_eval) raises many types on bad input
        raise FormatError(f"{where}: not a valid .npy header ({one_line(e)})") from None
    if dtype.hasobject:
        raise FormatError(f"{where}: holds an object array (dtype {dtype}), which would need unpickling; "
                                 "refused. Save plain numeric arrays")
    if dtype.names is not None or dtype.subdtype is not None:
        raise FormatError(f"{where}: holds a structured array (dtype {dtype}); expected a plain numeric "
                                 "or string array")
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise FormatError(f"{where}: the .npy header has an invalid shape {str(shape)[:80]}")
    if len(shape) > MAX_NPY_DIMS:
        raise FormatError(f"{where}: the .npy header declares {len(shape)} dimensions; at most {MAX_NPY_DIMS} are "
                          "accepted")
    return tuple(shape), bool(fortran), dtype


def check_zip_sizes(name: str, infos: list[zipfile.ZipInfo], size: int) -> None:
    """Refuse a zip whose directory lies or that would inflate far beyond its size, before anything is inflated:
    each member's data must lie within the file, a stored member's two sizes must agree, and all members together
    must expand to at most MAX_EXPANSION times the file's `size` (plus EXPANSION_FLOOR)."""
    for info in infos:
        where = f"{name}: member {info.filename[:80]!r}"
        if info.header_offset + info.compress_size > size:
            raise FormatError(f"{where}: the archive's directory says it holds {_mb(info.compress_size)} of data "
                              f"from byte {info.header_offset}, beyond the end of the {_mb(size)} file (truncated or "
                              "corrupt)")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise FormatError(f"{where}: a stored (uncompressed) member whose sizes differ ({info.compress_size} and "
                              f"{info.file_size} bytes); the archive is corrupt")
    total = sum(i.file_size for i in infos)
    if total > MAX_EXPANSION * size + EXPANSION_FLOOR:
        raise FormatError(f"{name}: its members would expand to {_mb(total)} from a {_mb(size)} file (more than "
                          f"{MAX_EXPANSION}x); refused as a possible zip bomb")


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of a `.npz` archive, with its structure checked first: a zip of `NAME.npy` members, stored or
    deflated, not encrypted, each header's declared size equal to the member's size, and the total within
    MAX_EXPANSION times the file's size; CRCs are checked as the members are read."""
    name = path.name
    size = path.stat().st_size
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise FormatError(f"{name}: not a valid .npz archive (truncated, corrupt, or not a zip of .npy "
                          f"arrays: {e})") from None
    with zf:
        infos = zf.infolist()
        if not infos:
            raise FormatError(f"{name}: the .npz archive is empty")
        seen: set[str] = set()
        for info in infos:
            where = f"{name}: member {info.filename[:80]!r}"
            if not _MEMBER.match(info.filename):
                raise FormatError(f"{where}: expected members named NAME.npy (NAME a Python identifier)")
            if info.filename in seen:
                raise FormatError(f"{where}: appears twice in the archive")
            seen.add(info.filename)
            if info.flag_bits & 0x1:
                raise FormatError(f"{where}: is encrypted")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise FormatError(f"{where}: compression method {info.compress_type} is not supported "
                                         "(stored or deflated, as numpy writes)")
        check_zip_sizes(name, infos, size)
        arrays: dict[str, np.ndarray] = {}
        for info in infos:
            where = f"{name}: member {info.filename!r}"
            try:
                with zf.open(info) as fp:
                    shape, fortran, dtype = _member_header(fp, where)
                    nbytes = math.prod(shape) * dtype.itemsize
                    if fp.tell() + nbytes != info.file_size:
                        raise FormatError(
                            f"{where}: its header declares shape {shape} of {dtype} ({_mb(nbytes)}) but the member "
                            f"holds {_mb(info.file_size - fp.tell())} of data")
                    arr = np.empty(shape, dtype=dtype, order="F" if fortran else "C")
                    view = memoryview(arr.reshape(-1, order="A").view(np.uint8)) if nbytes else memoryview(b"")
                    if nbytes and fp.readinto(view) != nbytes:
                        raise FormatError(f"{where}: is truncated")
                    if fp.read(1):
                        raise FormatError(f"{where}: holds more data than its header declares")
            except FormatError:
                raise
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError,
                    RuntimeError) as e:
                raise FormatError(f"{where}: cannot be read, the archive is damaged ({one_line(e)})") from None
            arrays[info.filename[:-4]] = arr
    return arrays


def _json_object(where: str) -> Any:
    """A json `object_pairs_hook` that refuses a key given twice in one object (parsers differ on which wins)."""
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise FormatError(f"{where}: key {k[:80]!r} appears twice in one JSON object")
            out[k] = v
        return out
    return hook


def _loads(text: str | bytes, where: str, what: str = "") -> Any:
    """json.loads with duplicate keys refused; every failure one FormatError line naming `where` (and `what`)."""
    try:
        return json.loads(text, object_pairs_hook=_json_object(where))
    except FormatError:
        raise
    except RecursionError:
        raise FormatError(f"{where}: {what or 'the JSON'} is nested too deeply") from None
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as e:
        subject = f"{what} is" if what else "is"
        raise FormatError(f"{where}: {subject} not valid JSON ({one_line(e, 120)})") from None


def parse_json_text(text: str | bytes, where: str) -> Any:
    """JSON from a file's metadata, bounded in size and nesting; one-line error naming `where`."""
    if len(text) > MAX_JSON_BYTES:
        raise FormatError(f"{where}: {_mb(len(text))} of JSON is over the {_mb(MAX_JSON_BYTES)} limit")
    return _loads(text, where)


def safetensors_header(path: Path, *, numpy_only: bool = False) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The tensor table and metadata of a safetensors file, checked field by field against the file: a JSON
    object; each entry an object with a known `dtype`, a `shape` of non-negative integers and two integer
    `data_offsets` within the data, of the size the shape needs, not overlapping; metadata strings. With
    `numpy_only`, dtypes numpy cannot read (BF16, F8) are refused by name."""
    name = path.name
    size = path.stat().st_size
    with path.open("rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise FormatError(f"{name}: not a safetensors file, or truncated (shorter than its 8-byte header length)")
        n = int.from_bytes(raw, "little")
        if n < 2 or n > MAX_SAFETENSORS_HEADER or 8 + n > size:
            raise FormatError(f"{name}: not a safetensors file, or truncated: its header length field says "
                                     f"{n} bytes, the file has {size}")
        text = f.read(n)
    header = _loads(text, name, "the safetensors header")
    if not isinstance(header, dict):
        raise FormatError(f"{name}: the safetensors header must be a JSON object, got {type(header).__name__}")
    meta = header.pop("__metadata__", None)
    if meta is None:
        meta = {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise FormatError(f"{name}: safetensors '__metadata__' must be an object of strings")
    data_size = size - 8 - n
    spans = []
    for key, entry in header.items():
        where = f"{name}: tensor {key[:80]!r}"
        if not isinstance(entry, dict):
            raise FormatError(f"{where}: its header entry must be an object, got {type(entry).__name__}")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in ITEM_SIZES:
            raise FormatError(f"{where}: field 'dtype' is {dtype!r}; expected one of {sorted(ITEM_SIZES)}")
        if numpy_only and dtype not in NUMPY_DTYPES:
            raise FormatError(f"{where}: dtype {dtype} cannot be read without torch; save it as F32 "
                                     "(float32) or F16")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise FormatError(f"{where}: field 'shape' is {str(shape)[:80]}; expected a list of "
                                     "non-negative integers")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets)
                or not 0 <= offsets[0] <= offsets[1]):
            raise FormatError(f"{where}: field 'data_offsets' is {str(offsets)[:80]}; expected two integers "
                              "[begin, end] with 0 <= begin <= end")
        if offsets[1] > data_size:
            raise FormatError(f"{where}: the file is truncated or its offsets are wrong: the tensor ends at data "
                              f"byte {offsets[1]}, the file holds {data_size} bytes of data")
        need = math.prod(shape) * ITEM_SIZES[dtype]
        if offsets[1] - offsets[0] != need:
            raise FormatError(f"{where}: shape {shape} of {dtype} needs {need} bytes, its offsets span "
                                     f"{offsets[1] - offsets[0]}")
        spans.append((offsets[0], offsets[1], key))
    spans.sort()
    for (_, end, a), (begin, _, b) in itertools.pairwise(spans):
        if begin < end:
            raise FormatError(f"{name}: tensors {a[:40]!r} and {b[:40]!r} overlap in the file")
        if begin > end:
            raise FormatError(f"{name}: {begin - end} bytes between tensors {a[:40]!r} and {b[:40]!r} belong to no "
                              "tensor; the file is corrupt (safetensors data is contiguous)")
    covered = spans[-1][1] if spans else 0
    if (spans and spans[0][0] != 0) or covered != data_size:
        unused = data_size - covered + (spans[0][0] if spans else 0)
        raise FormatError(f"{name}: {unused} of its {data_size} data bytes belong to no tensor (before the first "
                          "or after the last); the file is corrupt")
    return header, meta
