"""The config file that puts the user's own models into the dashboard: a TOML file of `[[models]]` tables.

```toml
[[models]]
name = "tiny_resnet"                  # unique in the file; the entry is "config/tiny_resnet"
title = "TinyResNet (example)"        # optional, defaults to name
arch = "tiny_resnet.py:TinyResNet"    # or "pkg.module:callable"
arch_kwargs = { num_classes = 10, width = 8 }
weights = "tiny_resnet.safetensors"
head = "fc"                           # optional: the classification head (default: the last nn.Linear)
data = "folder:digits_png"            # folder:DIR or tensors:FILE, no split (the sidebar picks it)
transform = { resize = 16 }           # optional: resize, center_crop, mean, std

[[models]]
name = "exported"
program = "tiny_resnet.pt2"           # a TorchScript or torch.export program
data = "folder:digits_png"

[[models]]
name = "some_bundle"
bundle = "preds.npz"                  # a predictions bundle: outputs only
```

Relative paths resolve against the config file's folder. Loading the config never imports or runs the user's
code (that happens when a page needs predictions); it only checks that the named files exist.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from calibviz.data import PATH_SOURCES, DataSpec
from calibviz.sources import ModelEntry

CONFIG_ENV = "CALIBVIZ_CONFIG"
NAME_PREFIX = "config/"
TOP_LEVEL_KEYS = ("models",)
COMMON_KEYS = ("name", "title")
MODULE_KEYS = ("arch", "arch_kwargs", "weights")
PROGRAM_KEYS = ("program",)
RUN_KEYS = ("head", "data", "transform")  # what a model that is run (module or program) may also carry
BUNDLE_KEYS = ("bundle",)
MODEL_KEYS = COMMON_KEYS + MODULE_KEYS + PROGRAM_KEYS + RUN_KEYS + BUNDLE_KEYS
STRING_KEYS = ("name", "title", "arch", "weights", "program", "head", "data", "bundle")
TABLE_KEYS = ("arch_kwargs", "transform")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file, the model (name or index) and the field."""


def _absolute(value: str, base: Path) -> Path:
    """`value` as an absolute, normalised path (`~` expanded), relative ones against `base`."""
    p = Path(value).expanduser()
    return Path(os.path.normpath(p if p.is_absolute() else base / p))


class _ModelTable:
    """One `[[models]]` table being checked: knows how to word an error about it."""

    def __init__(self, file: Path, index: int, table: Mapping[str, Any]) -> None:
        self.file = file
        self.index = index
        self.table = table
        self.base = file.parent

    def where(self) -> str:
        name = self.table.get("name")
        shown = f" {name!r}" if isinstance(name, str) and name else ""
        return f"{self.file}: [[models]] #{self.index + 1}{shown}"

    def error(self, field: str, message: str) -> ConfigError:
        return ConfigError(f"{self.where()}: field {field!r}: {message}")

    def has(self, key: str) -> bool:
        return key in self.table

    def string(self, key: str) -> str:
        return self.table.get(key, "")

    def existing_file(self, key: str, what: str, suffixes: tuple[str, ...]) -> Path:
        """The absolute path in field `key`, which must be an existing file ending in one of `suffixes`."""
        path = _absolute(self.string(key), self.base)
        if path.suffix.lower() not in suffixes:
            raise self.error(key, f"{what} must end in one of {list(suffixes)}, not {path.name!r}")
        if not path.is_file():
            raise self.error(key, f"no such {what} file {path}")
        return path

    def check_shape(self) -> None:
        """Known keys only, the right TOML types, and a name that can stand in a model's name."""
        unknown = sorted(set(self.table) - set(MODEL_KEYS))
        if unknown:
            raise ConfigError(f"{self.where()}: unknown keys {unknown}; known: {list(MODEL_KEYS)}")
        for key in STRING_KEYS:
            if key in self.table and not (isinstance(self.table[key], str) and self.table[key].strip()):
                raise self.error(key, f"expected a non-empty string, got {self.table[key]!r}")
        for key in TABLE_KEYS:
            if key in self.table and not isinstance(self.table[key], Mapping):
                raise self.error(key, f"expected a table such as {{ num_classes = 10 }}, got {self.table[key]!r}")
        if "name" not in self.table:
            raise self.error("name", "is missing; every model needs a unique name")
        if not _NAME_RE.match(self.table["name"]):
            raise self.error("name", f"{self.table['name']!r} may hold only letters, digits, '_', '-' and '.'")


def _kind_of(m: _ModelTable) -> str:
    """`module`, `program` or `bundle`: exactly one of arch+weights, program and bundle must be given."""
    given = [k for k in ("arch", "weights", "program", "bundle") if m.has(k)]
    kinds = {"module" if k in ("arch", "weights") else k for k in given}
    if len(kinds) != 1:
        found = f"found {given}" if given else "found none"
        raise ConfigError(f"{m.where()}: give exactly one of arch + weights (a Python architecture and its state "
                          f"dict), program (TorchScript or torch.export) or bundle (a predictions file); {found}")
    kind = kinds.pop()
    if kind == "module":
        for key, other in (("arch", "weights"), ("weights", "arch")):
            if not m.has(key):
                raise m.error(key, f"is missing; {other!r} needs it (an architecture needs both arch and weights)")
    if m.has("arch_kwargs") and kind != "module":
        raise m.error("arch_kwargs", "only an architecture (arch + weights) takes keyword arguments")
    if kind == "bundle":
        extra = [k for k in RUN_KEYS if m.has(k)]
        if extra:
            raise m.error(extra[0], "a predictions bundle carries its own rows and outputs; leave out "
                                    f"{extra} (they are for a model that is run)")
    return kind


def _data_spec(m: _ModelTable) -> str:
    """The model's data as an absolute `folder:DIR` / `tensors:FILE` spec string (no split, no corruption)."""
    if not m.has("data"):
        raise m.error("data", "is missing; a model that is run needs its inputs: folder:DIR (one sub-folder of "
                              "images per class) or tensors:FILE (.npz or .safetensors with x and y)")
    text = m.string("data").strip()
    source, sep, _ = text.partition(":")
    if not sep or source not in PATH_SOURCES:
        raise m.error("data", f"{text!r} is not folder:DIR or tensors:FILE (the built-in datasets need no config)")
    try:
        spec = DataSpec.of(text)
    except ValueError as e:
        raise m.error("data", str(e)) from None
    if spec.split != "all" or spec.shifted:
        raise m.error("data", f"{text!r} names a split or a corruption; give only {source}:PATH (the sidebar "
                              "picks the split and the shift)")
    path = _absolute(spec.path, m.base)
    if source == "folder" and not path.is_dir():
        raise m.error("data", f"no such image folder {path}")
    if source == "tensors":
        if path.suffix.lower() not in (".npz", ".safetensors"):
            raise m.error("data", f"a tensor file must end in .npz or .safetensors, not {path.name!r}")
        if not path.is_file():
            raise m.error("data", f"no such tensor file {path}")
    resolved = f"{source}:{path}"
    if DataSpec.of(resolved).path != str(path):  # a path whose last ':' segment reads as a split
        raise m.error("data", f"the path {str(path)!r} ends in ':' and a word, which reads as a split; rename it")
    return resolved


def _preprocess_key(m: _ModelTable) -> str:
    """The canonical `Preprocess.key()` of the model's transform, "" when there is none."""
    from calibviz.data_sources import Preprocess

    if not m.has("transform"):
        return ""
    try:
        pre = Preprocess.from_dict(dict(m.table["transform"]))
    except ValueError as e:
        raise m.error("transform", str(e)) from None
    return "" if pre == Preprocess() else pre.key()


def _arch(m: _ModelTable) -> str:
    """The arch string with a relative `file.py` part made absolute; a dotted module is left to the import path."""
    arch = m.string("arch").strip()
    where, sep, name = arch.rpartition(":")
    if not sep or not where or not name:
        raise m.error("arch", f"{arch!r} must be PKG.MODULE:CALLABLE or path/to/file.py:CALLABLE")
    if not where.endswith(".py"):
        return arch
    path = _absolute(where, m.base)
    if not path.is_file():
        raise m.error("arch", f"no such Python file {path}")
    return f"{path}:{name}"


def _source_entry(m: _ModelTable, kind: str) -> ModelEntry:
    """The entry of a model that is run: an architecture with weights, or a program."""
    from calibviz.model_sources import EXPORT_SUFFIXES, TORCHSCRIPT_SUFFIXES, WEIGHT_SUFFIXES, ModelSource

    head = m.string("head").strip()
    if kind == "module":
        arch = _arch(m)
        path = m.existing_file("weights", "weights", WEIGHT_SUFFIXES)
        try:
            kwargs = json.loads(json.dumps(dict(m.table.get("arch_kwargs", {}))))
        except (TypeError, ValueError) as e:
            raise m.error("arch_kwargs", f"must hold only numbers, strings, booleans, lists and tables ({e})") from None
        try:
            source = ModelSource.module(path, arch, kwargs, head=head)
        except ValueError as e:
            raise m.error("arch", str(e)) from None
    else:
        arch = ""
        path = m.existing_file("program", "program", TORCHSCRIPT_SUFFIXES + EXPORT_SUFFIXES)
        source = ModelSource.program(path, head=head)
    data = _data_spec(m)
    name = m.string("name")
    return ModelEntry(name=f"{NAME_PREFIX}{name}", title=m.string("title").strip() or name,
                      dataset=DataSpec.of(data).name, recipe="config", kind="source", path=path, origin="config",
                      arch=m.string("arch").strip() if kind == "module" else Path(path).name,
                      card={"config": str(m.file)}, source=source, data=data,
                      preprocess=_preprocess_key(m))


def _npz(path: Path) -> Any:
    """`np.load` of an .npz without pickle (arrays are read only when asked for), errors as a ValueError."""
    import zipfile

    import numpy as np

    try:
        npz = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:  # ValueError: not a zip, would need pickle
        raise ValueError(f"not a readable .npz file ({e})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError("not an .npz archive of named arrays (a single .npy array?)")
    return npz


def _bundle_meta(path: Path) -> dict[str, Any]:
    """The JSON meta of a bundle, read without loading its arrays (the full check is `check_config`)."""
    from calibviz.formats import CARD_KEY, META_KEY

    if path.suffix.lower() == ".npz":
        with _npz(path) as z:
            text = str(z["meta"]) if "meta" in z.files else "{}"
    else:
        from safetensors import safe_open

        with safe_open(str(path), framework="np") as f:
            raw = f.metadata() or {}
        if CARD_KEY in raw:
            raise ValueError("it is a calibviz checkpoint, not a predictions bundle")
        text = raw.get(META_KEY, "{}")
    try:
        meta = json.loads(text)
    except ValueError as e:
        raise ValueError(f"its meta is not a JSON string ({e})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"its meta is not a JSON object: {meta!r}")
    return meta


def _bundle_entry(m: _ModelTable) -> ModelEntry:
    """The entry of a predictions bundle named in the config: its dataset is the bundle's own."""
    from calibviz.formats import BUNDLE_SUFFIXES

    path = m.existing_file("bundle", "bundle", BUNDLE_SUFFIXES)
    try:
        meta = _bundle_meta(path)
    except Exception as e:
        raise m.error("bundle", f"{path.name}: {e}") from None
    name = m.string("name")
    return ModelEntry(name=f"{NAME_PREFIX}{name}", title=m.string("title").strip() or name,
                      dataset=str(meta.get("dataset") or "bundle"), recipe="bundle", kind="bundle", path=path,
                      origin="config", arch="", card={"config": str(m.file), "meta": meta})


def _read_toml(path: Path) -> dict[str, Any]:
    """The parsed TOML of the config file, errors naming the file."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot be read ({e})") from None


def load_config(path: str | Path) -> tuple[ModelEntry, ...]:
    """The models a config file names, in file order, with every path made absolute; raises ConfigError naming
    the file, model and field. Imports and runs nothing of the user's."""
    file = Path(os.path.abspath(Path(path).expanduser()))
    doc = _read_toml(file)
    unknown = sorted(set(doc) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError(f"{file}: unknown top-level keys {unknown}; known: {list(TOP_LEVEL_KEYS)} "
                          "(each model is a [[models]] table)")
    tables = doc.get("models")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"{file}: expected one or more [[models]] tables, found {tables!r}")
    entries: list[ModelEntry] = []
    seen: dict[str, int] = {}
    for i, table in enumerate(tables):
        m = _ModelTable(file, i, table)
        m.check_shape()
        name = m.string("name")
        if name in seen:
            raise m.error("name", f"{name!r} is already the name of [[models]] #{seen[name] + 1}; names must be "
                                  "unique")
        seen[name] = i
        kind = _kind_of(m)
        entries.append(_bundle_entry(m) if kind == "bundle" else _source_entry(m, kind))
    return tuple(entries)


def check_config(path: str | Path) -> tuple[ModelEntry, ...]:
    """`load_config`, plus reading and validating every bundle it names in full (what `calibviz serve` does before
    it starts the dashboard); still runs no user code."""
    from calibviz.formats import load_bundle

    entries = load_config(path)
    for e in entries:
        if e.kind == "bundle":
            try:
                load_bundle(e.path)
            except ValueError as err:
                raise ConfigError(f"{Path(os.path.abspath(path))}: model {e.name!r}: field 'bundle': {err}") from None
    return entries


def config_path_from_env() -> Path | None:
    """The absolute config path in $CALIBVIZ_CONFIG, or None when it is unset or empty."""
    value = os.environ.get(CONFIG_ENV, "").strip()
    return Path(os.path.abspath(Path(value).expanduser())) if value else None


def load_config_from_env() -> tuple[ModelEntry, ...]:
    """The models of the config file named by $CALIBVIZ_CONFIG (set by `calibviz serve`); () when it is unset."""
    path = config_path_from_env()
    return load_config(path) if path is not None else ()
