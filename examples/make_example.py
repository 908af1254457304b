"""Build everything examples/example.toml names, from data that is available offline (scikit-learn's digits):

    examples/digits_png/{train,val,test}/<digit>/*.png   16x16 RGB images, an ImageFolder tree
    examples/tiny_resnet.safetensors                      TinyResNet's trained weights (a state dict)
    examples/tiny_resnet.pt2                              the same model as a torch.export program

Run `python examples/make_example.py` (about 10 s on one CPU core). What already exists is kept, so running it again
is free; delete a file to rebuild it. These are the files a user brings: an image folder, a weights file, a program.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tiny_resnet import TinyResNet  # the model code beside this file (run as a script, examples/ is on sys.path)
from torch import nn

HERE = Path(__file__).resolve().parent
DATA_FOLDER = "digits_png"
WEIGHTS_FILE = "tiny_resnet.safetensors"
PROGRAM_FILE = "tiny_resnet.pt2"
IMAGE_SIZE = 16
# How each class's images are shared out: the first half trains, the next quarter is `val` (where calibrators are
# fitted), the last quarter is `test` (where calibration is measured).
SPLIT_SHARES = (("train", 0.5), ("val", 0.25), ("test", 0.25))


@dataclass(frozen=True)
class ExampleParams:
    """How big the example is: images per digit (shared out by SPLIT_SHARES), training steps, and the network."""

    images_per_class: int = 80
    steps: int = 400
    batch_size: int = 64
    lr: float = 0.05
    width: int = 8
    seed: int = 0


def digits_rgb16() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits upsampled to 16x16 RGB: (N, 16, 16, 3) uint8 images and (N,) labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.as_tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = nn.functional.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    rgb = x.repeat(1, 3, 1, 1).permute(0, 2, 3, 1).numpy()
    return (rgb * 255).round().clip(0, 255).astype(np.uint8), d.target.astype(np.int64)


def write_digit_pngs(folder: Path, images_per_class: int) -> int:
    """Write `images_per_class` digits of each class as PNGs under folder/{train,val,test}/<digit>/; returns how
    many were written (0 when the folder already exists)."""
    from PIL import Image

    if folder.exists():
        return 0
    images, labels = digits_rgb16()
    tmp = folder.with_name(folder.name + ".partial")  # renamed at the end, so an interrupted run leaves no half tree
    written = 0
    for digit in range(10):
        rows = np.flatnonzero(labels == digit)[:images_per_class]
        start = 0
        for split, share in SPLIT_SHARES:
            count = len(rows) - start if split == SPLIT_SHARES[-1][0] else round(len(rows) * share)
            (tmp / split / str(digit)).mkdir(parents=True, exist_ok=True)
            for row in rows[start:start + count]:
                Image.fromarray(images[row]).save(tmp / split / str(digit) / f"{row:04d}.png")
                written += 1
            start += count
    tmp.rename(folder)
    return written


def read_split(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One split of the PNG tree as (N, 3, 16, 16) float32 in [0, 1] and (N,) labels: the pixels calibviz reads."""
    from PIL import Image

    classes = sorted(p.name for p in (folder / split).iterdir() if p.is_dir())
    xs, ys = [], []
    for label, name in enumerate(classes):
        for f in sorted((folder / split / name).glob("*.png")):
            with Image.open(f) as im:
                xs.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
            ys.append(label)
    x = torch.as_tensor(np.stack(xs)).permute(0, 3, 1, 2).to(torch.float32) / 255.0
    return x.contiguous(), torch.as_tensor(ys, dtype=torch.int64)


def train_tiny_resnet(x: torch.Tensor, y: torch.Tensor, params: ExampleParams) -> TinyResNet:
    """TinyResNet trained by SGD with momentum on (x, y) for `params.steps` minibatches; returned in eval mode."""
    torch.manual_seed(params.seed)
    model = TinyResNet(num_classes=int(y.max()) + 1, width=params.width)
    opt = torch.optim.SGD(model.parameters(), lr=params.lr, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(params.seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a network this small runs fastest on one thread (more only contend with each other)
    try:
        model.train()
        for _ in range(params.steps):
            idx = torch.randint(0, len(x), (min(params.batch_size, len(x)),), generator=gen)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def save_weights(model: nn.Module, path: Path) -> None:
    """The model's state dict as a .safetensors file: what `weights = ...` in the config names."""
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(path))


def load_weights(path: Path, params: ExampleParams, num_classes: int = 10) -> TinyResNet:
    """TinyResNet with the weights saved by save_weights, in eval mode."""
    from safetensors.torch import load_file

    model = TinyResNet(num_classes=num_classes, width=params.width)
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def export_program(model: nn.Module, path: Path) -> None:
    """The model as a torch.export program with a free batch size: what `program = ...` in the config names."""
    example = torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))


def make_example(out: Path = HERE, params: ExampleParams = ExampleParams(), log=print) -> list[Path]:
    """Write the image folder, the weights and the program under `out`, skipping each one that exists; returns the
    paths written this time."""
    out.mkdir(parents=True, exist_ok=True)
    folder, weights, program = out / DATA_FOLDER, out / WEIGHTS_FILE, out / PROGRAM_FILE
    made: list[Path] = []
    n = write_digit_pngs(folder, params.images_per_class)
    if n:
        log(f"wrote {n} PNGs under {folder}")
        made.append(folder)
    model = None
    if not weights.exists():
        x, y = read_split(folder, "train")
        t0 = time.perf_counter()
        model = train_tiny_resnet(x, y, params)
        test_x, test_y = read_split(folder, "test")
        with torch.no_grad():
            acc = (model(test_x).argmax(1) == test_y).float().mean().item()
        save_weights(model, weights)
        log(f"trained TinyResNet on {len(x)} images in {time.perf_counter() - t0:.1f} s (test accuracy {acc:.3f}); "
            f"wrote {weights}")
        made.append(weights)
    if not program.exists():
        export_program(model if model is not None else load_weights(weights, params), program)
        log(f"wrote {program}")
        made.append(program)
    if not made:
        log(f"nothing to do: {folder}, {weights} and {program} exist (delete one to rebuild it)")
    return made


def main(argv: list[str] | None = None) -> int:
    """`python examples/make_example.py [--out DIR] [--images-per-class N] [--steps N]`."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=HERE, help="where to write (default: examples/)")
    p.add_argument("--images-per-class", type=int, default=ExampleParams.images_per_class)
    p.add_argument("--steps", type=int, default=ExampleParams.steps)
    args = p.parse_args(argv)
    make_example(args.out, ExampleParams(images_per_class=args.images_per_class, steps=args.steps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
