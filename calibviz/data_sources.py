"""The user's own data as `DataSpec`s: an ImageFolder tree (`folder:PATH`) or a tensor file (`tensors:PATH`).

`open_inputs(spec, preprocess)` reads only the file list / labels up front and streams the inputs in batches
through a torch `DataLoader`, so a 50,000-image folder is never one array in memory. Per image: pixels scaled to
[0, 1], channels first -> resize -> center crop -> the spec's corruption (in [0, 1] pixel space) -> mean/std.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from calibviz.data import IMAGE_CORRUPTIONS, PATH_SOURCES, SEVERITIES, SPLIT_SEED, SPLITS, DataSpec
from calibviz.safe_read import FormatError, one_line, parse_json_text, read_npz, safetensors_header

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# A tree with any of these top-level folders is split by them; otherwise rows are split by a seeded permutation.
SPLIT_FOLDERS = SPLITS
# Fractions (train, val, test) of the seeded split of a source without its own splits; the permutation uses the
# built-in data's SPLIT_SEED, so `:test` is a fixed, disjoint subset as for digits and mnist1d.
SPLIT_FRACTIONS = (0.5, 0.25, 0.25)
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
CORRUPTION_SEED = 20240612
MAX_CLASSES = 100_000  # labels are class indices; a label beyond this is a corrupt file, not a class

# Corruption strength per severity 1..5 on natural images, after resize/crop: noise sigma in [0, 1] pixel units
# (ImageNet-C's Gaussian noise); blur sigma and shift distance as fractions of the shorter side (at 224 px the blur
# is ImageNet-C's 1..6 px; data.py's tables are in pixels of 8x8 digits and do not carry over); JPEG quality
# (ImageNet-C's); contrast factor towards the image mean (ImageNet-C's).
_NOISE_SIGMA = (0.08, 0.12, 0.18, 0.26, 0.38)
_BLUR_FRACTION = (0.005, 0.01, 0.015, 0.02, 0.03)
_SHIFT_FRACTION = (0.03, 0.06, 0.1, 0.15, 0.2)
_JPEG_QUALITY = (25, 18, 15, 10, 7)
_CONTRAST = (0.4, 0.3, 0.2, 0.1, 0.05)


class DataSourceError(ValueError):
    """Bad user data or preprocessing; the message names the folder, file, key or field and what was expected."""


# ---------------------------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class Preprocess:
    """Deterministic per-image preprocessing: resize the shorter side (bilinear, antialiased), center crop to a
    square, then `(x - mean) / std` per channel; pixels are in [0, 1], channels first, before any of it."""

    resize: int | None = None
    center_crop: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("resize", "center_crop"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise DataSourceError(f"preprocess {name!r} must be a positive integer or null, not {v!r}")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if v is None:
                continue
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                v = (v,)
            if (not isinstance(v, (list, tuple)) or not v
                    or not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in v)):
                raise DataSourceError(f"preprocess {name!r} must be a non-empty list of numbers, not {v!r}")
            object.__setattr__(self, name, tuple(float(t) for t in v))
        if self.std is not None and not all(s > 0 and math.isfinite(s) for s in self.std):
            raise DataSourceError(f"preprocess 'std' must be positive, not {list(self.std)}")
        if self.mean is not None and self.std is not None and 1 not in (len(self.mean), len(self.std)) \
                and len(self.mean) != len(self.std):
            raise DataSourceError(
                f"preprocess 'mean' ({len(self.mean)} values) and 'std' ({len(self.std)}) differ in length")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Preprocess:
        """From a mapping such as a config table; unknown keys are an error that names them."""
        if not isinstance(values, dict):
            raise DataSourceError(f"preprocess must be a JSON object / table, not {type(values).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise DataSourceError(f"preprocess has unknown keys {unknown}; known: {known}")
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> Preprocess:
        """From `--transform JSON`, e.g. '{"resize": 256, "center_crop": 224, "mean": [0.5], "std": [0.25]}'."""
        try:
            values = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as e:
            raise DataSourceError(f"preprocess {text!r} is not valid JSON: {e}") from None
        return cls.from_dict(values)

    def key(self) -> str:
        """Canonical JSON of the fields that are set (sorted keys, floats as Python writes them): a cache key;
        `Preprocess.from_json(p.key()) == p`."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        return json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in values.items()},
                          sort_keys=True, separators=(",", ":"))

    def geometry(self, x: torch.Tensor, where: str) -> torch.Tensor:
        """Resize then center crop a (C, H, W) float image; `where` names it in errors."""
        if self.resize is not None:
            h, w = x.shape[-2:]
            scale = self.resize / min(h, w)
            size = (self.resize, max(1, round(w * scale))) if h <= w else (max(1, round(h * scale)), self.resize)
            if size != (h, w):
                x = torch.nn.functional.interpolate(x[None], size=size, mode="bilinear", antialias=True,
                                                    align_corners=False)[0].clamp_(0.0, 1.0)
        if self.center_crop is not None:
            c = self.center_crop
            h, w = x.shape[-2:]
            if c > h or c > w:
                raise DataSourceError(
                    f"center_crop {c} is larger than the image {where} ({h}x{w} after resize); set a larger resize")
            top, left = (h - c) // 2, (w - c) // 2
            x = x[:, top:top + c, left:left + c]
        return x

    def normalize(self, x: torch.Tensor, where: str) -> torch.Tensor:
        """`(x - mean) / std` per channel of a (C, H, W) image; a single value applies to every channel."""
        if self.mean is None and self.std is None:
            return x
        c = x.shape[0]
        out = x
        for name, vals in (("mean", self.mean), ("std", self.std)):
            if vals is not None and len(vals) not in (1, c):
                raise DataSourceError(f"preprocess {name!r} has {len(vals)} values but {where} has {c} channels")
        if self.mean is not None:
            out = out - torch.tensor(self.mean, dtype=out.dtype).view(-1, 1, 1)
        if self.std is not None:
            out = out / torch.tensor(self.std, dtype=out.dtype).view(-1, 1, 1)
        return out


# ------------------------------------------------------------------------------------------------ corruptions


def corrupt_image(x: torch.Tensor, corruption: str, severity: int, row: int) -> torch.Tensor:
    """A corrupted copy of one (C, H, W) image in [0, 1]: Gaussian noise, Gaussian blur, translation with zero
    fill, JPEG re-encoding or lower contrast, at severity 1..5; the same for the same (row, severity)."""
    from scipy import ndimage

    if corruption not in IMAGE_CORRUPTIONS:
        raise DataSourceError(f"corruption {corruption!r} is unknown; known: {list(IMAGE_CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise DataSourceError(f"corruption severity {severity} must be one of {list(SEVERITIES)}")
    k = severity - 1
    img = x.detach().to(torch.float32).numpy()
    rng = np.random.default_rng([CORRUPTION_SEED, IMAGE_CORRUPTIONS.index(corruption), severity, int(row)])
    side = min(img.shape[-2:])
    if corruption == "noise":
        out = img + rng.normal(0.0, _NOISE_SIGMA[k], size=img.shape).astype(np.float32)
    elif corruption == "blur":
        s = _BLUR_FRACTION[k] * side
        out = ndimage.gaussian_filter(img, sigma=(0.0, s, s), mode="nearest")
    elif corruption == "shift":
        d = max(1.0, _SHIFT_FRACTION[k] * side)
        dy, dx = rng.choice([-1.0, 1.0], size=2) * d
        out = ndimage.shift(img, (0.0, dy, dx), order=1, mode="constant", cval=0.0)
    elif corruption == "jpeg":
        out = _jpeg(img, _JPEG_QUALITY[k])
    else:  # contrast
        m = float(img.mean())
        out = (img - m) * _CONTRAST[k] + m
    return torch.from_numpy(np.clip(out, 0.0, 1.0).astype(np.float32))


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Re-encode a (C, H, W) image in [0, 1] as JPEG at `quality` with Pillow and decode it."""
    from PIL import Image

    c = img.shape[0]
    if c not in (1, 3):
        raise DataSourceError(f"the jpeg corruption needs 1 or 3 channels, not {c}")
    u8 = np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    pil = Image.fromarray(u8[0] if c == 1 else np.ascontiguousarray(u8.transpose(1, 2, 0)))  # L or RGB
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as back:
        arr = np.asarray(back.convert("L" if c == 1 else "RGB"), dtype=np.float32) / 255.0
    return arr[None] if c == 1 else arr.transpose(2, 0, 1)


# ------------------------------------------------------------------------------------------------- the rows


def seeded_split_codes(n: int) -> np.ndarray:
    """Split code (0/1/2 = train/val/test) per row of a source without its own splits: a permutation seeded
    with the built-in data's SPLIT_SEED, cut by SPLIT_FRACTIONS. Fixed for a given n."""
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_val, n_test = round(n * SPLIT_FRACTIONS[1]), round(n * SPLIT_FRACTIONS[2])
    codes = np.zeros(n, dtype=np.int8)
    codes[perm[n - n_val - n_test:n - n_test]] = 1
    codes[perm[n - n_test:]] = 2
    return codes


def _rows_of_split(codes: np.ndarray, split: str, where: str) -> np.ndarray:
    """Row indices (sorted) of `split` given per-row split codes; `all` is every row."""
    if split == "all":
        return np.arange(len(codes), dtype=np.int64)
    rows = np.flatnonzero(codes == SPLIT_CODES[split]).astype(np.int64)
    if len(rows) == 0:
        raise DataSourceError(f"{where} has no rows in split {split!r}")
    return rows


@dataclass(frozen=True)
class _FolderListing:
    """Every image of an ImageFolder tree in ImageFolder order: relative paths, labels, split codes."""

    root: Path
    class_names: tuple[str, ...]
    relpaths: tuple[str, ...]
    labels: np.ndarray
    split_codes: np.ndarray
    has_split_folders: bool


def _is_visible(p: Path) -> bool:
    return not p.name.startswith(".")


def _class_dirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and _is_visible(p)), key=lambda p: p.name)


def _images_in(folder: Path) -> list[Path]:
    """Image files under a class folder in torchvision's ImageFolder order (`sorted(os.walk(..., followlinks=True))`,
    files sorted within each folder); hidden files and folders (macOS `._x.jpg`, `.ipynb_checkpoints`) are skipped."""
    found: list[Path] = []
    for parent, _, files in sorted(os.walk(folder, followlinks=True)):
        if any(part.startswith(".") for part in Path(parent).relative_to(folder).parts):
            continue
        found += [Path(parent) / f for f in sorted(files)
                  if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return found


def list_folder(path: str | Path) -> _FolderListing:
    """Scan an ImageFolder tree: one sub-folder per class, or top-level train/ val/ test/ each holding them."""
    root = Path(path)
    if not root.is_dir():
        raise DataSourceError(f"image folder {str(root)!r} does not exist or is not a folder")
    top = _class_dirs(root)
    split_dirs = [p for p in top if p.name in SPLIT_FOLDERS]
    if split_dirs:
        others = [p.name for p in top if p.name not in SPLIT_FOLDERS]
        if others:
            raise DataSourceError(
                f"image folder {str(root)!r} has split folders {[p.name for p in split_dirs]} and other folders "
                f"{others}; put every class folder inside train/, val/ or test/")
        groups = [(SPLIT_CODES[p.name], p) for p in sorted(split_dirs, key=lambda p: SPLIT_CODES[p.name])]
    else:
        groups = [(-1, root)]
    per_group = [(code, g, {d.name: _images_in(d) for d in _class_dirs(g)}) for code, g in groups]
    class_names = tuple(sorted({c for _, _, classes in per_group for c in classes}))
    if not class_names:
        where = " or ".join(repr(str(g)) for _, g, _ in per_group)
        raise DataSourceError(f"image folder {where} has no class sub-folders (one folder of images per class)")
    counts = {c: sum(len(classes.get(c, ())) for _, _, classes in per_group) for c in class_names}
    if not any(counts.values()):
        raise DataSourceError(
            f"image folder {str(root)!r} has no images ({', '.join(IMAGE_SUFFIXES)}) in its class folders")
    empty = [c for c, k in counts.items() if k == 0]
    if empty:
        raise DataSourceError(f"image folder {str(root)!r}: class folders {empty} hold no images")
    index = {c: i for i, c in enumerate(class_names)}
    relpaths: list[str] = []
    labels: list[int] = []
    codes: list[int] = []
    for code, _, classes in per_group:
        for c in sorted(classes):
            for p in classes[c]:
                relpaths.append(p.relative_to(root).as_posix())
                labels.append(index[c])
                codes.append(code)
    split_codes = np.asarray(codes, dtype=np.int8) if split_dirs else seeded_split_codes(len(relpaths))
    return _FolderListing(root, class_names, tuple(relpaths), np.asarray(labels, dtype=np.int64), split_codes,
                          bool(split_dirs))


def read_image(path: Path) -> torch.Tensor:
    """One image file as a (3, H, W) float32 tensor in [0, 1] (converted to RGB); an unreadable file is named."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataSourceError(f"image {str(path)!r} cannot be read: {e}") from None
    return torch.from_numpy(arr.transpose(2, 0, 1).copy()).to(torch.float32).div_(255.0)


# --------------------------------------------------------------------------------------------- tensor files


def _to_image_tensor(x: np.ndarray, where: str) -> torch.Tensor:
    """One row of a tensor file as a (C, H, W) float32 image in [0, 1] (uint8 is divided by 255)."""
    t = torch.from_numpy(np.ascontiguousarray(x))
    t = t.to(torch.float32).div_(255.0) if t.dtype == torch.uint8 else t.to(torch.float32)
    return t[None] if t.ndim == 2 else t


class _TensorRows:
    """The rows of `x` in a .npz (loaded once, allow_pickle=False) or a .safetensors file (sliced per row)."""

    def __init__(self, path: Path, x: np.ndarray | None) -> None:
        self.path = path
        self.x = x
        self._handle: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_handle": None}  # a safetensors handle is per process

    def row(self, i: int) -> np.ndarray:
        if self.x is not None:
            return self.x[i]
        if self._handle is None:
            from safetensors import safe_open

            self._handle = safe_open(str(self.path), framework="np")
        return self._handle.get_slice("x")[i:i + 1][0]


_FLOAT_DTYPES = ("float16", "float32", "float64", "F16", "F32", "F64")
_INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "I8", "I16", "I32", "I64", "U8",
               "U16", "U32")


@dataclass(frozen=True)
class _TensorFile:
    rows: _TensorRows
    x_shape: tuple[int, ...]
    labels: np.ndarray
    split_codes: np.ndarray
    class_names: tuple[str, ...]


def _read_tensor_file(path: Path) -> _TensorFile:
    """Read and check `x`, `y`, optional `split` and `class_names` of a .npz or .safetensors file."""
    where = repr(str(path))
    if not path.is_file():
        raise DataSourceError(f"tensor file {where} does not exist")
    suffix = path.suffix.lower()
    names: list[str] | None = None
    if suffix == ".npz":
        try:
            arrays = {k: v for k, v in read_npz(path).items() if k in ("x", "y", "split", "class_names")}
        except FormatError as e:
            raise DataSourceError(f"tensor file {e}") from None
        for key in ("x", "y"):
            if key not in arrays:
                raise DataSourceError(f"tensor file {where} has no {key!r} array; it needs 'x' (N, ...) and 'y' (N,)")
        x = arrays["x"]
        x_shape, x_dtype = tuple(x.shape), str(x.dtype)
        if "class_names" in arrays:
            if arrays["class_names"].dtype.kind not in "US" or arrays["class_names"].ndim != 1:
                raise DataSourceError(f"tensor file {where}: 'class_names' must be a 1-D array of strings, not "
                                      f"{arrays['class_names'].dtype} of shape {arrays['class_names'].shape}")
            names = [str(s) for s in arrays["class_names"].tolist()]
        rows = _TensorRows(path, x)
    elif suffix == ".safetensors":
        from safetensors import safe_open

        try:
            safetensors_header(path, numpy_only=True)
        except FormatError as e:
            raise DataSourceError(f"tensor file {e}") from None
        try:
            with safe_open(str(path), framework="np") as f:
                keys = set(f.keys())
                meta = f.metadata() or {}
                for key in ("x", "y"):
                    if key not in keys:
                        raise DataSourceError(
                            f"tensor file {where} has no {key!r} tensor; it needs 'x' (N, ...) and 'y' (N,)")
                sl = f.get_slice("x")
                x_shape, x_dtype = tuple(sl.get_shape()), str(sl.get_dtype())
                arrays = {k: f.get_tensor(k) for k in ("y", "split") if k in keys}
        except DataSourceError:
            raise
        except Exception as e:
            raise DataSourceError(f"tensor file {where} is not a readable .safetensors: "
                                  f"{one_line(e, 200)}") from None
        if "class_names" in meta:
            try:
                names = parse_json_text(meta["class_names"], f"{path.name}: metadata 'class_names'")
            except FormatError as e:
                raise DataSourceError(f"tensor file {e}") from None
            if not isinstance(names, list) or not all(isinstance(s, str | int) for s in names):
                raise DataSourceError(
                    f"tensor file {where}: metadata 'class_names' must be a JSON list of strings") from None
            names = [str(s) for s in names]
        rows = _TensorRows(path, None)
    else:
        raise DataSourceError(f"tensor file {where} must end in .npz or .safetensors")
    if x_dtype not in (*_FLOAT_DTYPES, "uint8", "U8"):
        raise DataSourceError(f"tensor file {where}: 'x' must be float or uint8, not {x_dtype}")
    if len(x_shape) not in (3, 4):
        raise DataSourceError(
            f"tensor file {where}: 'x' must be images (N, C, H, W) or (N, H, W), channels first; shape {x_shape}")
    y = arrays["y"]
    if y.ndim != 1 or str(y.dtype) not in _INT_DTYPES:
        raise DataSourceError(f"tensor file {where}: 'y' must be (N,) integers, not {y.dtype} {tuple(y.shape)}")
    if len(y) != x_shape[0]:
        raise DataSourceError(f"tensor file {where}: 'x' has {x_shape[0]} rows but 'y' has {len(y)}")
    if len(y) == 0:
        raise DataSourceError(f"tensor file {where} has no rows")
    labels = y.astype(np.int64)
    if labels.min() < 0:
        raise DataSourceError(f"tensor file {where}: 'y' has negative labels")
    if labels.max() >= MAX_CLASSES:
        raise DataSourceError(f"tensor file {where}: 'y' has label {labels.max()}; labels are class indices "
                              f"0..C-1 with C at most {MAX_CLASSES}")
    if "split" in arrays:
        s = arrays["split"]
        if s.shape != y.shape or str(s.dtype) not in _INT_DTYPES or not np.isin(s, (0, 1, 2)).all():
            raise DataSourceError(
                f"tensor file {where}: 'split' must be (N,) integer codes 0/1/2 (train/val/test) like 'y'")
        codes = s.astype(np.int8)
    else:
        codes = seeded_split_codes(len(y))
    n_classes = int(labels.max()) + 1
    if names is None:
        names = [str(i) for i in range(n_classes)]
    elif len(names) < n_classes:
        raise DataSourceError(f"tensor file {where}: 'y' has label {n_classes - 1} but only {len(names)} class_names")
    return _TensorFile(rows, x_shape, labels, codes, tuple(names))


# --------------------------------------------------------------------------------------- streaming the inputs


class _Images(TorchDataset):
    """Row `i` of a split -> (preprocessed, maybe corrupted image, label); reads one image per item."""

    def __init__(self, read: Callable[[int], tuple[torch.Tensor, str]], rows: np.ndarray, labels: np.ndarray,
                 preprocess: Preprocess, corruption: str | None, severity: int) -> None:
        self.read = read
        self.rows = rows
        self.labels = labels
        self.preprocess = preprocess
        self.corruption = corruption
        self.severity = severity

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, str]:
        row = int(self.rows[i])
        x, where = self.read(row)
        x = self.preprocess.geometry(x, where)
        if self.corruption:
            x = corrupt_image(x, self.corruption, self.severity, row)
        return self.preprocess.normalize(x, where).contiguous(), int(self.labels[row]), where


def _collate(items: Sequence[tuple[torch.Tensor, int, str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack a batch; images of different sizes are an error naming two of them."""
    first = items[0][0].shape
    for x, _, where in items:
        if x.shape != first:
            raise DataSourceError(
                f"images differ in size: {items[0][2]} is {tuple(first)}, {where} is {tuple(x.shape)}; "
                f"set 'resize' and 'center_crop' in the preprocessing")
    return torch.stack([x for x, _, _ in items]), torch.tensor([y for _, y, _ in items], dtype=torch.int64)


class _FolderReader:
    """Picklable reader of one image of a folder listing by row."""

    def __init__(self, root: Path, relpaths: tuple[str, ...]) -> None:
        self.root = root
        self.relpaths = relpaths

    def __call__(self, row: int) -> tuple[torch.Tensor, str]:
        path = self.root / self.relpaths[row]
        return read_image(path), repr(str(path))


class _TensorReader:
    """Picklable reader of one row of a tensor file."""

    def __init__(self, rows: _TensorRows) -> None:
        self.rows = rows

    def __call__(self, row: int) -> tuple[torch.Tensor, str]:
        where = f"row {row} of {str(self.rows.path)!r}"
        return _to_image_tensor(self.rows.row(row), where), where


@dataclass(frozen=True, eq=False)
class InputSet:
    """The inputs of one `folder:` / `tensors:` spec, streamed. `sample_id` is the row in the full source (every
    split), so rows align across models and splits; `relpaths` are the images' paths under the folder."""

    spec: DataSpec
    preprocess: Preprocess
    class_names: tuple[str, ...]
    labels: np.ndarray
    sample_id: np.ndarray
    relpaths: tuple[str, ...] | None
    input_kind: str
    split_codes: np.ndarray  # per row: 0/1/2 = train/val/test (calibviz.data.SPLITS), for a bundle's `split`
    dataset: TorchDataset = field(repr=False)

    @property
    def n(self) -> int:
        """How many rows this split has."""
        return len(self.labels)

    def __len__(self) -> int:
        return self.n

    def pixels(self, sample_ids: Sequence[int]) -> np.ndarray:
        """The inputs of these rows (sample ids) as the model saw them before mean/std: (n, C, H, W) float32 in
        [0, 1], resized, cropped and corrupted like the batches, for a gallery of selected points."""
        ds = self.dataset
        out = []
        for sid in sample_ids:
            x, where = ds.read(int(sid))
            x = ds.preprocess.geometry(x, where)
            if ds.corruption:
                x = corrupt_image(x, ds.corruption, ds.severity, int(sid))
            out.append((x, 0, where))
        return _collate(out)[0].numpy()

    def batches(self, batch_size: int = 256, num_workers: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(x float32 (B, C, H, W), y int64 (B,)) in row order, read by a DataLoader with `num_workers` workers."""
        if batch_size < 1 or num_workers < 0:
            raise DataSourceError(f"batch_size must be >= 1 and num_workers >= 0, not {batch_size}, {num_workers}")
        loader = DataLoader(self.dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                            collate_fn=_collate)
        return iter(loader)


def open_inputs(spec: str | DataSpec, preprocess: Preprocess | None = None) -> InputSet:
    """Open a `folder:` or `tensors:` spec: list its rows and labels now, stream its inputs from `batches()`."""
    spec = DataSpec.parse(spec)
    preprocess = preprocess or Preprocess()
    if spec.source not in PATH_SOURCES:
        raise DataSourceError(f"{spec} is not an image folder or tensor file spec (folder:PATH or tensors:PATH)")
    if spec.source == "folder":
        listing = list_folder(spec.path)
        where = f"image folder {spec.path!r}"
        codes = listing.split_codes
        rows = _rows_of_split(codes, spec.split, where)
        read: Callable[[int], tuple[torch.Tensor, str]] = _FolderReader(listing.root, listing.relpaths)
        labels, class_names = listing.labels, listing.class_names
        relpaths: tuple[str, ...] | None = tuple(listing.relpaths[i] for i in rows)
    else:
        tf = _read_tensor_file(Path(spec.path))
        codes = tf.split_codes
        rows = _rows_of_split(codes, spec.split, f"tensor file {spec.path!r}")
        read = _TensorReader(tf.rows)
        labels, class_names, relpaths = tf.labels, tf.class_names, None
    dataset = _Images(read, rows, labels, preprocess, spec.corruption, spec.severity)
    split_labels = labels[rows]
    split_labels.setflags(write=False)
    rows.setflags(write=False)
    return InputSet(spec=spec, preprocess=preprocess, class_names=class_names, labels=split_labels,
                    sample_id=rows, relpaths=relpaths, input_kind="image",
                    split_codes=np.asarray(codes[rows], dtype=np.int64), dataset=dataset)


def spec_choices_for(data: str | DataSpec) -> list[DataSpec]:
    """Every spec the dashboard offers for an image folder or tensor file: its clean splits that hold rows (test,
    val, train), all rows, then each corruption of the test split (of all rows when there is no test split)."""
    base = DataSpec.of(data)
    if base.source not in PATH_SOURCES:
        raise DataSourceError(f"{base} is not an image folder or tensor file spec (folder:PATH or tensors:PATH)")
    if base.source == "folder":
        codes = list_folder(base.path).split_codes
    else:
        codes = _read_tensor_file(Path(base.path)).split_codes
    present = [s for s in ("test", "val", "train") if (codes == SPLIT_CODES[s]).any()]
    shifted = "test" if "test" in present else "all"
    return [base.with_split(s) for s in [*present, "all"]] + [
        DataSpec.from_path(base.source, base.path, shifted, c, k) for c in IMAGE_CORRUPTIONS for k in SEVERITIES]
