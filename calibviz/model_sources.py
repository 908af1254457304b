"""The user's own classifiers: a Python architecture plus a weights file, or a TorchScript / `torch.export` program.

`ModelSource` names one (and is the content key of everything computed from it), `build_user_model` and
`load_program` load it, `ClassifierRunner` runs batches and captures the head's input as penultimate features.
User code is imported, and programs are loaded, only from paths the user named (command line or a local config),
never from a browser upload: both are code. Weights are read with `torch.load(weights_only=True)` or safetensors.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import json
import os
import pickle
import re
import sys
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from calibviz.safe_read import FormatError, check_zip_sizes, one_line, safetensors_header

SOURCE_KINDS = ("module", "program")
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript", ".jit")
EXPORT_SUFFIXES = (".pt2",)
# Keys under which training scripts nest the state dict, in the order they are tried.
STATE_DICT_WRAPPERS = ("state_dict", "model_state_dict", "model")
# Prefixes that wrappers add to every key: DataParallel / DDP, and torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
MAX_LISTED = 8
LINEAR_TYPE = "torch.nn.modules.linear.Linear"
# Attributes load_program sets on an exported program: its modules' original types, and a fixed batch size.
MODULE_TYPES_ATTR = "calibviz_module_types"
FIXED_BATCH_ATTR = "calibviz_fixed_batch"


class ModelSourceError(ValueError):
    """A user model that cannot be loaded or run; the message names the file, callable, key or module."""


def _listing(names: list[str], cap: int = MAX_LISTED) -> str:
    """`a, b, c` or `a, b, ... and 12 more`: a readable list of names capped at `cap`."""
    shown = ", ".join(names[:cap])
    return f"{shown}, ... and {len(names) - cap} more" if len(names) > cap else shown


def canonical_kwargs(kwargs: str | Mapping[str, Any] | None) -> str:
    """The canonical JSON text of an architecture's keyword arguments (sorted keys, no spaces): a stable cache key."""
    if kwargs is None:
        return "{}"
    if isinstance(kwargs, str):
        try:
            kwargs = json.loads(kwargs or "{}")
        except json.JSONDecodeError as e:
            raise ModelSourceError(f"arch_kwargs {kwargs!r} is not valid JSON ({e})") from e
    if not isinstance(kwargs, Mapping):
        raise ModelSourceError(f"arch_kwargs must be a JSON object of keyword arguments, got {type(kwargs).__name__}")
    return json.dumps(dict(kwargs), sort_keys=True, separators=(",", ":"))


def _split_arch(arch: str) -> tuple[str, str]:
    """`pkg.module:callable` or `path/to/file.py:callable` -> (module part, callable part)."""
    where, sep, name = arch.rpartition(":")
    if not sep or not where or not name:
        raise ModelSourceError(f"arch {arch!r} must be PKG.MODULE:CALLABLE or path/to/file.py:CALLABLE")
    return where, name


def _arch_file(arch: str) -> Path | None:
    """The .py file an arch names, or None when it names an importable module."""
    where, _ = _split_arch(arch)
    return Path(where) if where.endswith(".py") else None


@dataclass(frozen=True)
class ModelSource:
    """A user's model: `module` (an architecture callable plus a weights file) or `program` (a TorchScript or
    `torch.export` file), with the optional qualified name of the classification head ("" = the last nn.Linear)."""

    kind: str  # one of SOURCE_KINDS
    path: Path  # the weights file (module) or the program file (program)
    arch: str = ""  # "pkg.module:callable" or "path/to/file.py:callable"; module only
    arch_kwargs: str = "{}"  # canonical JSON object, see canonical_kwargs
    head: str = ""

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ModelSourceError(f"model source kind {self.kind!r} is unknown; known: {list(SOURCE_KINDS)}")
        object.__setattr__(self, "path", Path(self.path))
        object.__setattr__(self, "arch_kwargs", canonical_kwargs(self.arch_kwargs))
        if self.kind == "module":
            _split_arch(self.arch)
        elif self.arch or self.arch_kwargs != "{}":
            raise ModelSourceError(f"{self.path.name}: a program carries its own architecture; arch must be empty")

    @classmethod
    def module(cls, weights: str | Path, arch: str, arch_kwargs: str | Mapping[str, Any] | None = None,
               head: str = "") -> ModelSource:
        """A Python architecture called with `arch_kwargs`, loaded with the state dict in `weights`."""
        return cls("module", Path(weights), arch, canonical_kwargs(arch_kwargs), head)

    @classmethod
    def program(cls, path: str | Path, head: str = "") -> ModelSource:
        """A TorchScript (.pt/.ts/.torchscript) or torch.export (.pt2) program."""
        return cls("program", Path(path), head=head)

    def kwargs(self) -> dict[str, Any]:
        """The architecture's keyword arguments as a dict."""
        return json.loads(self.arch_kwargs)

    def digest(self) -> str:
        """sha256 over the file's bytes, arch, kwargs, head and the bytes of an arch .py file: the content key."""
        from calibviz.diskcache import file_digest

        if not self.path.is_file():
            raise ModelSourceError(f"{self.path}: no such file")
        parts = [self.kind, file_digest(self.path), self.arch, self.arch_kwargs, self.head]
        arch_file = _arch_file(self.arch) if self.arch else None
        if arch_file is not None:
            if not arch_file.is_file():
                raise ModelSourceError(f"arch {self.arch!r}: no such file {arch_file}")
            parts.append(file_digest(arch_file))
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    @property
    def label(self) -> str:
        """A short display name: `Callable (weights.pt)` or the program's file name."""
        if self.kind == "program":
            return self.path.name
        return f"{_split_arch(self.arch)[1]} ({self.path.name})"


# ---------------------------------------------------------------------------------------------
# Weights


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, leaf) pairs of a nested mapping."""
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            yield from _flatten(v, f"{key}.")
        else:
            yield key, v


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside what a training script saved: bare, or under one of STATE_DICT_WRAPPERS, with
    wrapper prefixes stripped when every key has them."""
    if not isinstance(obj, Mapping):
        raise ModelSourceError(f"{path.name}: expected a state dict (a dict of tensors), got {type(obj).__name__}")
    while True:
        inner = next((obj[k] for k in STATE_DICT_WRAPPERS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    state = dict(_flatten(obj))
    if not state:
        raise ModelSourceError(f"{path.name}: the state dict is empty")
    bad = [f"{k} ({type(v).__name__})" for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ModelSourceError(f"{path.name}: expected a state dict of tensors; not tensors: {_listing(bad)} "
                               f"(wrappers tried: {list(STATE_DICT_WRAPPERS)})")
    nonfinite = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if nonfinite:
        raise ModelSourceError(f"{path.name}: NaN or inf weights in {_listing(nonfinite)}")
    stripped = True
    while stripped:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                stripped = True
    return state


def _unpickler_reason(message: str) -> str:
    """The useful part of torch's weights-only refusal: "Unsupported global: GLOBAL pkg.Cls" or the like, on one
    line; never torch's preamble, which suggests retrying with weights_only=False."""
    match = re.search(r"WeightsUnpickler error:\s*(.+?)(?: was not an allowed global|\n\n|$)", message, re.S)
    if match:
        return " ".join(match.group(1).split())
    blocked = re.search(r"unsupported GLOBAL (\S+)", message)
    if blocked:
        return f"Unsupported global: GLOBAL {blocked.group(1)}"
    lines = [line for line in message.splitlines() if line.strip()
             and not line.startswith(("Weights only load failed", "Check the documentation"))]
    return one_line(lines[0] if lines else message, 200)



def _archive_kind(path: Path) -> str:
    """What a file is, from its zip listing alone: "torchscript" (code/, constants.pkl), "export" (a torch.export
    archive_format entry), "zip" (e.g. a torch.save state dict) or "" (not a zip). A zip whose directory lies about
    its members' sizes, or that would inflate far beyond the file's size (torch allocates a record's declared size
    before checking it), is refused here."""
    if not zipfile.is_zipfile(path):
        return ""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
        check_zip_sizes(path.name, infos, path.stat().st_size)
    except FormatError as e:
        raise ModelSourceError(str(e)) from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise ModelSourceError(f"{path.name}: not a readable zip archive ({one_line(e, 200)})") from None
    names = [i.filename for i in infos]
    if any(n.endswith("/archive_format") for n in names):
        return "export"
    if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
        return "torchscript"
    return "zip"


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from .safetensors or .pt/.pth/.bin (`torch.load(weights_only=True)` only, never a full
    unpickle), unwrapping {"state_dict"|"model_state_dict"|"model": ...} and the `module.` prefix."""
    path = Path(path)
    if not path.is_file():
        raise ModelSourceError(f"{path}: no such weights file")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            safetensors_header(path)
        except FormatError as e:
            raise ModelSourceError(str(e)) from None
        try:
            obj: Any = load_file(str(path), device="cpu")
        except Exception as e:
            raise ModelSourceError(f"{path.name}: not a readable safetensors file ({one_line(e, 200)})") from e
    elif suffix in WEIGHT_SUFFIXES:
        kind = _archive_kind(path)
        if kind in ("torchscript", "export"):
            what = "TorchScript" if kind == "torchscript" else "torch.export"
            raise ModelSourceError(f"{path.name}: a {what} program, not a state dict; load it as a program "
                                   f"(--program) instead of as weights")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            why = _unpickler_reason(str(e))
            if "global" in why.lower():
                raise ModelSourceError(
                    f"{path.name}: refused: it holds Python objects, not only tensors ({why}), and calibviz never "
                    f"unpickles them. Save model.state_dict() instead, or a .safetensors file") from e
            raise ModelSourceError(f"{path.name}: not a readable PyTorch weights file ({why})") from e
        except Exception as e:
            raise ModelSourceError(f"{path.name}: not a readable PyTorch weights file "
                                   f"({type(e).__name__}: {one_line(e, 200)})") from e
    else:
        raise ModelSourceError(f"{path.name}: weights must end in one of {list(WEIGHT_SUFFIXES)}")
    return _unwrap(obj, path)


def _mismatch(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor]) -> str:
    """What differs between a model's state dict and a file's: missing, unexpected and wrongly shaped keys."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shaped = [f"{k}: model {tuple(v.shape)} vs file {tuple(found[k].shape)}" for k, v in expected.items()
              if k in found and tuple(v.shape) != tuple(found[k].shape)]
    parts = []
    for title, names in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", shaped)):
        if names:
            parts.append(f"{len(names)} {title}: {_listing(names)}")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------
# Architecture code


@contextmanager
def _importable_from(directory: str | Path | None = None) -> Iterator[None]:
    """Make modules in `directory` (default: the current one) importable for the duration; user code may import
    its siblings while it runs, not only at import time."""
    where = str(directory or os.getcwd())
    added = where not in sys.path
    if added:
        sys.path.insert(0, where)
    try:
        yield
    finally:
        if added and where in sys.path:
            sys.path.remove(where)


def _import_file(path: Path, arch: str) -> Any:
    """Import a .py file under a private module name derived from its resolved path."""
    if not path.is_file():
        raise ModelSourceError(f"arch {arch!r}: no such file {path}")
    resolved = path.resolve()
    name = "_calibviz_user_" + hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ModelSourceError(f"arch {arch!r}: {path} cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and typing look the module up while it executes
    try:
        with _importable_from(resolved.parent):  # as `python path/to/file.py` would: its siblings import
            spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        raise ModelSourceError(f"arch {arch!r}: importing {path} failed ({type(e).__name__}: {e})") from e
    return module


def _import_dotted(where: str, arch: str) -> Any:
    """Import `pkg.module`, from the current directory or the environment."""
    try:
        with _importable_from():
            return importlib.import_module(where)
    except ModuleNotFoundError as e:
        raise ModelSourceError(f"arch {arch!r}: cannot import {where!r} ({e}); is it in the current directory "
                               f"({os.getcwd()}) or installed?") from e
    except Exception as e:
        raise ModelSourceError(f"arch {arch!r}: importing {where!r} failed ({type(e).__name__}: {e})") from e


def resolve_callable(arch: str) -> Callable[..., Any]:
    """The callable an arch string names: `pkg.module:callable` or `path/to/file.py:callable` (dots in the
    callable part walk attributes, e.g. `models:Factory.build`)."""
    where, name = _split_arch(arch)
    module = _import_file(Path(where), arch) if where.endswith(".py") else _import_dotted(where, arch)
    obj: Any = module
    for part in name.split("."):
        if not hasattr(obj, part):
            public = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
            raise ModelSourceError(f"arch {arch!r}: {where} has no {name!r}; callables there: "
                                   f"{_listing(public) or 'none'}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelSourceError(f"arch {arch!r}: {name!r} is a {type(obj).__name__}, not callable")
    return obj


def build_user_model(source: ModelSource) -> nn.Module:
    """Call the source's architecture with its kwargs and load its weights strictly; the model is in eval mode.
    A state dict that does not fit raises an error listing missing, unexpected and wrongly shaped keys."""
    if source.kind != "module":
        raise ModelSourceError(f"{source.path.name}: build_user_model takes a module source; use load_program")
    factory = resolve_callable(source.arch)
    kwargs = source.kwargs()
    try:
        with _importable_from():
            model = factory(**kwargs)
    except Exception as e:
        raise ModelSourceError(f"arch {source.arch!r}: calling it with {source.arch_kwargs} failed "
                               f"({type(e).__name__}: {e})") from e
    if not isinstance(model, nn.Module):
        shown = repr(model)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise ModelSourceError(f"arch {source.arch!r} returned {type(model).__name__} ({shown}), "
                               f"not a torch.nn.Module")
    state = load_state_dict_file(source.path)
    problem = _mismatch(model.state_dict(), state)
    if problem:
        raise ModelSourceError(f"{source.path.name}: the weights do not fit {_split_arch(source.arch)[1]}: {problem}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelSourceError(f"{source.path.name}: loading the weights failed ({e})") from e
    return model.eval()


# ---------------------------------------------------------------------------------------------
# Programs


def _load_exported(path: Path) -> nn.Module:
    """A `.pt2` program unflattened into its original module tree (so a forward hook on the head sees its input),
    tagged with the original module types and the batch size it was exported for, when that is fixed."""
    try:
        program = torch.export.load(str(path))
    except Exception as e:
        raise ModelSourceError(f"{path.name}: not a readable torch.export program ({type(e).__name__}: {e})") from e
    types: dict[str, str] = {}
    for node in program.graph.nodes:
        for qualified, kind in (node.meta.get("nn_module_stack") or {}).values():
            types.setdefault(str(qualified), kind if isinstance(kind, str) else getattr(kind, "__qualname__", ""))
    inputs = {node.name: node for node in program.graph.nodes if node.op == "placeholder"}
    first = program.graph_signature.user_inputs[:1]
    val = inputs[first[0]].meta.get("val") if first and first[0] in inputs else None
    shape = getattr(val, "shape", ())
    fixed = shape[0] if len(shape) and isinstance(shape[0], int) else None
    try:
        with warnings.catch_warnings():  # torch's own pytree deprecation notice, not the user's concern
            warnings.filterwarnings("ignore", message=r".*treespec, LeafSpec", category=FutureWarning)
            module: nn.Module = torch.export.unflatten(program)
    except Exception:
        module = program.module()  # still runnable; a hook on the head will not fire
    setattr(module, MODULE_TYPES_ATTR, types)
    setattr(module, FIXED_BATCH_ATTR, fixed)
    return module


def load_program(path: str | Path) -> nn.Module:
    """A TorchScript archive (`torch.jit.load`: .pt/.pth/.ts/.torchscript/.jit) or a `torch.export` program
    (.pt2, `torch.export.load`, unflattened), on the CPU. Programs are code: load only files the user named."""
    path = Path(path)
    if not path.is_file():
        raise ModelSourceError(f"{path}: no such program file")
    suffix = path.suffix.lower()
    if suffix not in TORCHSCRIPT_SUFFIXES + EXPORT_SUFFIXES:
        raise ModelSourceError(f"{path.name}: a program must end in one of "
                               f"{list(TORCHSCRIPT_SUFFIXES + EXPORT_SUFFIXES)}")
    kind = _archive_kind(path)
    if suffix in EXPORT_SUFFIXES or kind == "export":  # torch.export.save writes any name it is given
        return _load_exported(path)
    if not kind:
        raise ModelSourceError(f"{path.name}: not a TorchScript archive (not a zip file)")
    if kind != "torchscript":
        raise ModelSourceError(f"{path.name}: not a TorchScript archive (a saved state dict? load it with an "
                               f"architecture and --weights instead)")
    try:
        program = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:
        raise ModelSourceError(f"{path.name}: not a readable TorchScript archive ({type(e).__name__}: {e})") from e
    return program.eval()


def load_source(source: ModelSource) -> nn.Module:
    """The runnable module of any source: built and loaded (module) or loaded (program)."""
    return build_user_model(source) if source.kind == "module" else load_program(source.path)


# ---------------------------------------------------------------------------------------------
# Heads and running


def _linear_names(model: nn.Module) -> list[str]:
    """Qualified names of the nn.Linear modules, in module order: eager ones, TorchScript ones (which keep the class
    name as `original_name`), and those an exported program records as Linear."""
    types = getattr(model, MODULE_TYPES_ATTR, None) or {}
    return [k for k, m in model.named_modules() if isinstance(m, nn.Linear) or types.get(k) == LINEAR_TYPE
            or (isinstance(m, torch.jit.ScriptModule) and getattr(m, "original_name", "") == "Linear")]


def head_module(model: nn.Module, name: str = "") -> tuple[str, nn.Module]:
    """The classification head: the named module, or by default the last nn.Linear in named_modules() order."""
    modules = dict(model.named_modules())
    if name:
        if name in modules:
            return name, modules[name]
        names = [k for k in modules if k]
        near = difflib.get_close_matches(name, names, n=MAX_LISTED, cutoff=0.5)
        linear = _linear_names(model)
        hint = list(dict.fromkeys(near + linear + names))
        raise ModelSourceError(f"head {name!r} is not a module of {type(model).__name__}; modules there: "
                               f"{_listing(hint)}")
    linear = _linear_names(model)
    if not linear:
        raise ModelSourceError(f"{type(model).__name__} has no nn.Linear; name the head module (e.g. --head NAME)")
    return linear[-1], modules[linear[-1]]


@dataclass(frozen=True)
class RunnerOptions:
    """How to run a classifier: its head's qualified name ("" = the last nn.Linear) and the expected class count."""

    head: str = ""
    num_classes: int | None = None


class ClassifierRunner:
    """Runs batches through a user's module or program: (logits (B, C), features (B, D) | None), float32 on the
    CPU. Features are the head's input, captured by a forward hook, or what a program returns beside its logits."""

    def __init__(self, model: nn.Module, options: RunnerOptions = RunnerOptions()) -> None:
        self.model = model
        self.options = options
        self.head_name: str | None = None
        self.head: nn.Module | None = None
        self._captured: torch.Tensor | None = None
        self._hookable = not isinstance(model, torch.jit.ScriptModule)
        try:
            self.head_name, self.head = head_module(model, options.head)
        except ModelSourceError:
            if options.head:
                raise  # a head the user named must exist; a missing default only means no features
        self._head_is_linear = self.head_name is not None and self.head_name in _linear_names(model)
        self._hook = (self.head.register_forward_hook(self._capture)
                      if self.head is not None and self._hookable else None)
        self.fixed_batch: int | None = getattr(model, FIXED_BATCH_ATTR, None)

    @classmethod
    def from_source(cls, source: ModelSource, num_classes: int | None = None) -> ClassifierRunner:
        """Load a source and wrap it, with the source's head."""
        return cls(load_source(source), RunnerOptions(source.head, num_classes))

    def _capture(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        """Forward hook: keep the head's first positional input."""
        if args and isinstance(args[0], torch.Tensor):
            self._captured = args[0]

    def close(self) -> None:
        """Remove the forward hook from the model (a runner is not used after this)."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def head_parameters(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The head's (weight (C, D), bias (C,)) as float32 numpy when it is linear (zero bias if it has none)."""
        head = self.head
        weight = getattr(head, "weight", None)
        if head is None or not self._head_is_linear or not isinstance(weight, torch.Tensor) or weight.ndim != 2:
            return None
        bias = getattr(head, "bias", None)
        w = weight.detach().float().cpu().numpy()
        b = (bias.detach().float().cpu().numpy() if isinstance(bias, torch.Tensor)
             else np.zeros(w.shape[0], dtype=np.float32))
        return w, b

    def _split_output(self, out: Any) -> tuple[Any, Any]:
        """(logits, features or None) from a module's or program's output."""
        if isinstance(out, torch.Tensor):
            return out, None
        if isinstance(out, Mapping):
            if "logits" not in out:
                raise ModelSourceError(f"the model returned a dict without 'logits' (keys: {_listing(list(out))})")
            return out["logits"], out.get("features")
        if isinstance(out, tuple | list) and len(out) == 2:
            return out[0], out[1]
        raise ModelSourceError(f"the model returned {type(out).__name__}; expected a logits tensor, "
                               f"(logits, features) or a dict with 'logits' and 'features'")

    def _forward(self, batch: torch.Tensor) -> tuple[Any, Any]:
        """One forward pass: (logits, features from the output or the hook, or None), not yet validated."""
        self._captured = None
        try:
            out = self.model(batch)
        except Exception as e:
            raise ModelSourceError(f"the model failed on a batch of shape {tuple(batch.shape)} "
                                   f"({type(e).__name__}: {e})") from e
        logits, features = self._split_output(out)
        if features is None:
            features = self._captured
        self._captured = None
        return logits, features

    def _forward_padded(self, chunk: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A forward pass on `chunk` padded to `size` rows (repeating its last row), cut back to its own rows."""
        n = len(chunk)
        padded = torch.cat([chunk, chunk[-1:].expand(size - n, *chunk.shape[1:])]) if n < size else chunk
        logits, features = self._forward(padded)
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or len(logits) != size:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ModelSourceError(f"the model's logits must be 2-D (batch, classes), got {shape}")
        if features is not None and (not isinstance(features, torch.Tensor) or features.ndim < 1
                                     or len(features) != size):
            shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise ModelSourceError(f"the model's features must have one row per input ({size}), got {shape}")
        return logits[:n], (features[:n] if features is not None else None)

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run one batch: validated logits (B, C) and features (B, D) or None, both float32 on the CPU. A program
        exported for a fixed batch size gets chunks of that size, the last one padded by repeating its last row."""
        b0 = self.fixed_batch
        if b0 is None or len(batch) == b0:
            logits, features = self._forward(batch)
        else:
            chunks = [self._forward_padded(batch[i:i + b0], b0) for i in range(0, len(batch), b0)]
            logits = torch.cat([c[0] for c in chunks])
            has_features = all(c[1] is not None for c in chunks)
            features = torch.cat([c[1] for c in chunks]) if has_features else None
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ModelSourceError(f"the model's logits must be 2-D (batch, classes), got {shape}")
        n = self.options.num_classes
        if n is not None and logits.shape[1] != n:
            raise ModelSourceError(f"the model's logits have {logits.shape[1]} columns; the data has {n} classes")
        if logits.shape[0] != len(batch):
            raise ModelSourceError(f"the model returned {logits.shape[0]} rows of logits for a batch of {len(batch)}")
        logits = logits.detach().float().cpu()
        if not torch.isfinite(logits).all():
            raise ModelSourceError("the model's logits contain NaN or infinite values")
        if features is not None:
            if not isinstance(features, torch.Tensor) or features.ndim < 1 or features.shape[0] != len(batch):
                shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
                raise ModelSourceError(f"the model's features must have one row per input ({len(batch)}), "
                                       f"got {shape}")
            features = features.detach().float().cpu().reshape(len(batch), -1)
        return logits, features
