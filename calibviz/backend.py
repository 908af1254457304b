"""The inference backend: (model, dataset spec) -> Predictions, batched on the best device and cached on disk by
content. Zoo checkpoints run on the built-in data (`predict`); the user's own models on image folders and tensor
files (`predict_model`)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from calibviz.data import DATA_VERSION, SPLITS, DataSpec, load_dataset
from calibviz.devices import pick_device
from calibviz.diskcache import atomic_write, cache_dir, file_digest
from calibviz.formats import FormatError, load_bundle, load_checkpoint, read_card, save_bundle
from calibviz.predictions import Predictions

if TYPE_CHECKING:
    from calibviz.data_sources import Preprocess
    from calibviz.model_sources import ModelSource
    from calibviz.sources import ModelEntry

FORMAT_VERSION = 1

Progress = Callable[[float, str], None]


def mask_inputs(x: torch.Tensor, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """Zero each input element independently with probability `ratio` (the MTS / MDT masking)."""
    if ratio <= 0:
        return x
    keep = torch.rand(x.shape, generator=generator, device="cpu").to(x.device) >= ratio
    return x * keep


@torch.no_grad()
def run_model(model: torch.nn.Module, x: np.ndarray, device: torch.device, batch_size: int = 2048,
              mask_ratio: float = 0.0, mask_seed: int = 0,
              progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Batched forward pass: (logits (N, C), penultimate features (N, D)) as float32 numpy."""
    model = model.to(device).eval()
    gen = torch.Generator().manual_seed(mask_seed)
    logits, feats = [], []
    n = len(x)
    for start in range(0, n, batch_size):
        xb = torch.as_tensor(np.array(x[start:start + batch_size], dtype=np.float32)).to(device)
        xb = mask_inputs(xb, mask_ratio, gen)
        f = model.features(xb)
        logits.append(model.head(f).float().cpu())
        feats.append(f.float().cpu())
        if progress:
            progress(min(1.0, (start + len(xb)) / n), f"inference {min(start + batch_size, n)}/{n}")
    return torch.cat(logits).numpy(), torch.cat(feats).numpy()


def _cache_hit(cached: Path, progress: Progress | None) -> Predictions | None:
    """The Predictions stored under a cache key, or None; a damaged entry is removed, so it is recomputed."""
    if not cached.is_file():
        return None
    try:
        preds = load_bundle(cached)
    except FormatError:
        cached.unlink(missing_ok=True)
        return None
    if progress:
        progress(1.0, "loaded from cache")
    return preds


def predict(checkpoint: str | Path, data_spec: str, *, device: str | torch.device | None = None,
            batch_size: int = 2048, mask_ratio: float = 0.0, mask_seed: int = 0,
            progress: Progress | None = None, use_cache: bool = True) -> Predictions:
    """Run a checkpoint over a dataset spec and return its Predictions, from the disk cache when the
    same (checkpoint bytes, spec, mask, format version) was computed before."""
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must lie in [0, 1), got {mask_ratio}")
    spec = DataSpec.parse(data_spec)
    digest = file_digest(checkpoint)
    key = hashlib.sha256(
        f"{digest}|{spec}|d{DATA_VERSION}|{mask_ratio:.6f}|{mask_seed}|v{FORMAT_VERSION}".encode()).hexdigest()
    cached = cache_dir() / f"{key[:32]}.safetensors"
    if use_cache and (hit := _cache_hit(cached, progress)) is not None:
        return hit
    trained_on = read_card(checkpoint)["dataset"]
    if spec.name != trained_on:
        raise FormatError(f"{Path(checkpoint).name}: the checkpoint's card says dataset {trained_on!r}; it cannot "
                          f"run on {str(spec)!r} (other inputs)")
    ds = load_dataset(spec)  # only on a cache miss: generating mnist1d takes seconds
    dev = device if isinstance(device, torch.device) else pick_device(device)
    model, card = load_checkpoint(checkpoint, device=dev)
    if progress:
        progress(0.0, f"inference on {dev}")
    logits, feats = run_model(model, ds.x, dev, batch_size, mask_ratio, mask_seed, progress)
    head = model.head
    meta = {
        "name": card.get("name", Path(checkpoint).stem),
        "checkpoint_sha256": digest,
        "data_spec": str(ds.spec),
        "dataset": ds.spec.name,
        "class_names": list(ds.class_names),
        "split_names": list(SPLITS),
        "mask_ratio": mask_ratio,
        "mask_seed": mask_seed,
        "input_kind": ds.input_kind,
    }
    preds = Predictions(
        labels=ds.y.copy(), logits=logits, features=feats,
        head_weight=head.weight.detach().float().cpu().numpy(),
        head_bias=head.bias.detach().float().cpu().numpy(),
        split=np.full(len(ds), SPLITS.index(ds.spec.split), dtype=np.int64),
        sample_id=ds.sample_id.copy(), meta=meta)
    if use_cache:
        atomic_write(cached, lambda tmp: save_bundle(preds, tmp))
    return preds


def masked_predictions(checkpoint: str | Path, data_spec: str, ratios: Sequence[float], *, mask_seed: int = 0,
                       device: str | torch.device | None = None, use_cache: bool = True) -> list[Predictions]:
    """The checkpoint's predictions on one split with every input element zeroed with probability r, one
    Predictions per ratio r (0: clean inputs): what masked temperature scaling is fitted on (`mts_curve`)."""
    return [predict(checkpoint, data_spec, device=device, mask_ratio=float(r), mask_seed=mask_seed,
                    use_cache=use_cache) for r in ratios]


def data_digest(spec: DataSpec) -> str:
    """A content key of a `folder:` or `tensors:` source: the tensor file's sha256, or for an image folder the
    sha256 of every image's relative path, size and modification time (cheap on 50,000 files; a changed, added or
    removed image changes it)."""
    from calibviz.data_sources import list_folder

    if spec.source == "tensors":
        return file_digest(spec.path)
    listing = list_folder(spec.path)
    h = hashlib.sha256()
    for rel in listing.relpaths:
        st = (listing.root / rel).stat()
        h.update(f"{rel}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


@torch.no_grad()
def predict_model(source: ModelSource, data_spec: str | DataSpec, *, preprocess: Preprocess | None = None,
                  device: str | torch.device | None = None, batch_size: int = 256, num_workers: int = 0,
                  mask_ratio: float = 0.0, mask_seed: int = 0, progress: Progress | None = None,
                  use_cache: bool = True) -> Predictions:
    """Run the user's own model (architecture + weights, TorchScript or torch.export program) over an image folder
    or tensor file, streamed in batches, and return its Predictions: logits, the head's input as features and the
    head's weight and bias when it is linear. Cached on disk by model digest + data content + spec + preprocessing +
    mask, like `predict`."""
    from calibviz.data_sources import Preprocess, open_inputs
    from calibviz.model_sources import ClassifierRunner, RunnerOptions, load_source

    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must lie in [0, 1), got {mask_ratio}")
    spec = DataSpec.of(data_spec)
    if spec.source not in ("folder", "tensors"):
        raise ValueError(f"{spec}: the user's own models run on folder:PATH or tensors:PATH data; a built-in "
                         "dataset needs a zoo checkpoint")
    preprocess = preprocess or Preprocess()
    model_digest = source.digest()
    key = hashlib.sha256(
        f"{model_digest}|{data_digest(spec)}|{spec}|{preprocess.key()}|{mask_ratio:.6f}|{mask_seed}"
        f"|v{FORMAT_VERSION}".encode()).hexdigest()
    cached = cache_dir() / f"{key[:32]}.safetensors"
    if use_cache and (hit := _cache_hit(cached, progress)) is not None:
        return hit
    inputs = open_inputs(spec, preprocess)
    dev = device if isinstance(device, torch.device) else pick_device(device)
    model = load_source(source).to(dev).eval()
    runner = ClassifierRunner(model, RunnerOptions(head=source.head, num_classes=len(inputs.class_names)))
    gen = torch.Generator().manual_seed(mask_seed)
    logits, feats, done = [], [], 0
    try:
        for xb, _ in inputs.batches(batch_size, num_workers):
            z, f = runner(mask_inputs(xb, mask_ratio, gen).to(dev))
            logits.append(z.float().cpu())
            feats.append(None if f is None else f.float().cpu())
            done += len(xb)
            if progress:
                progress(done / inputs.n, f"inference {done}/{inputs.n} on {dev}")
        head = runner.head_parameters()
    finally:
        runner.close()
    has_features = all(f is not None for f in feats)
    meta = {"name": source.label, "model_sha256": model_digest, "data_spec": str(spec), "dataset": spec.name,
            "class_names": list(inputs.class_names), "split_names": list(SPLITS), "mask_ratio": mask_ratio,
            "mask_seed": mask_seed, "input_kind": inputs.input_kind, "preprocess": preprocess.key(),
            "head": runner.head_name or ""}
    if inputs.relpaths is not None:
        meta["relpaths"] = list(inputs.relpaths)
    preds = Predictions(
        labels=inputs.labels.copy(), logits=torch.cat(logits).numpy(),
        features=torch.cat(feats).numpy() if has_features else None,
        head_weight=head[0] if head and has_features else None, head_bias=head[1] if head and has_features else None,
        split=inputs.split_codes.copy(), sample_id=inputs.sample_id.copy(), meta=meta)
    if use_cache:
        atomic_write(cached, lambda tmp: save_bundle(preds, tmp))
    return preds


def predict_entry(entry: ModelEntry, data_spec: str | DataSpec, *, device: str | torch.device | None = None,
                  mask_ratio: float = 0.0, mask_seed: int = 0, progress: Progress | None = None) -> Predictions:
    """Predictions of a runnable model record on a spec: a zoo checkpoint through `predict`, the user's own model
    through `predict_model` with its preprocessing. A predictions bundle cannot be run."""
    if entry.kind == "source" and entry.source is not None:
        from calibviz.data_sources import Preprocess

        pre = Preprocess.from_json(entry.preprocess) if entry.preprocess else None
        return predict_model(entry.source, data_spec, preprocess=pre, device=device, mask_ratio=mask_ratio,
                             mask_seed=mask_seed, progress=progress)
    if entry.kind == "checkpoint":
        return predict(entry.path, str(data_spec), device=device, mask_ratio=mask_ratio, mask_seed=mask_seed,
                       progress=progress)
    raise ValueError(f"{entry.title}: a predictions bundle holds only outputs; it cannot be run on new inputs")
