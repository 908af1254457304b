"""Extraction of the user's own model over an image folder: `predict_model` against its floor, one read of the same
folder through the same DataLoader without the model, in one run, with 0 and 2 workers.

    .venv/bin/python bench/bench_extract.py [--images 10000] [--size 32]

Writes N PNGs (scikit-learn's digits, upsampled to SIZE x SIZE RGB, repeated) into a temporary ImageFolder, runs
the example TinyResNet (examples/tiny_resnet.py, untrained weights: speed does not depend on them) over it, and
prints seconds, images/s, the ratio to the floor and the peak resident memory of the process.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from calibviz.backend import predict_model  # noqa: E402
from calibviz.data_sources import open_inputs  # noqa: E402
from calibviz.model_sources import ModelSource  # noqa: E402


def write_folder(root: Path, n: int, size: int) -> None:
    """n digits as size x size RGB PNGs, one sub-folder per class."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.as_tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    imgs = (x.squeeze(1).numpy() * 255).round().astype(np.uint8)
    for c in range(10):
        (root / f"digit_{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        j = i % len(imgs)
        Image.fromarray(np.repeat(imgs[j][:, :, None], 3, axis=2)).save(root / f"digit_{d.target[j]}" / f"{i:06d}.png")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--size", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        write_folder(tmp / "pngs", args.images, args.size)
        print(f"wrote {args.images} PNGs of {args.size}x{args.size} in {time.perf_counter() - t0:.1f} s")
        sys.path.insert(0, str(REPO / "examples"))
        from tiny_resnet import TinyResNet

        torch.manual_seed(0)
        save_file(TinyResNet(num_classes=10, width=8).state_dict(), str(tmp / "w.safetensors"))
        source = ModelSource.module(tmp / "w.safetensors", f"{REPO / 'examples' / 'tiny_resnet.py'}:TinyResNet",
                                    {"num_classes": 10, "width": 8})
        spec = f"folder:{tmp / 'pngs'}:all"
        print("| workers | read only (s) | extract (s) | images/s | extract / read |")
        print("|---|---|---|---|---|")
        for workers in (0, 2):
            t0 = time.perf_counter()
            n = sum(len(x) for x, _ in open_inputs(spec).batches(256, workers))
            read = time.perf_counter() - t0
            t0 = time.perf_counter()
            preds = predict_model(source, spec, device="cpu", num_workers=workers, use_cache=False)
            ext = time.perf_counter() - t0
            assert preds.n == n == args.images and preds.features is not None
            print(f"| {workers} | {read:.2f} | {ext:.2f} | {n / ext:,.0f} | {ext / read:.2f} |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of this process: {peak:.0f} MB; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
