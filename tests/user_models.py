"""A user's own model code, as a researcher would write it: never registered in calibviz.models.

The tests load these by import path (`tests.user_models:TinyResNet`) and by file path
(`tests/user_models.py:TinyResNet`), as `--arch` would.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """A ResNet basic block: two 3x3 convs with batch norm and an identity (or 1x1 strided) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class TinyResNet(nn.Module):
    """A two-stage residual CNN on (N, 3, 16, 16) images whose classifier is `fc`."""

    def __init__(self, num_classes: int = 10, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.layer1 = BasicBlock(width, width)
        self.layer2 = BasicBlock(width, 2 * width, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features that `fc` reads, (N, 2 * width)."""
        return torch.flatten(self.pool(self.layer2(self.layer1(self.stem(x)))), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(x))


class TinyResNetWithFeatures(TinyResNet):
    """The same network returning `(logits, features)`, as some export pipelines do."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.embed(x)
        return self.fc(f), f


class DictOutputNet(TinyResNet):
    """The same network returning a dict with `logits` and `features`."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.embed(x)
        return {"logits": self.fc(f), "features": f}


class MlpClassifier(nn.Module):
    """An MLP on flattened images with a torchvision-style `classifier = Sequential(Dropout, Linear)` head."""

    def __init__(self, in_dim: int = 3 * 16 * 16, hidden: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_dim, hidden), nn.ReLU())
        self.classifier = nn.Sequential(nn.Dropout(0.1), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(x))


def make_tiny_resnet(num_classes: int = 10, width: int = 8) -> TinyResNet:
    """A factory function, as `--arch tests.user_models:make_tiny_resnet` would name it."""
    return TinyResNet(num_classes=num_classes, width=width)


def not_a_model(num_classes: int = 10) -> dict[str, int]:
    """A callable that returns something other than an nn.Module."""
    return {"num_classes": num_classes}


def digits_rgb16() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits as (N, 3, 16, 16) images in [0, 1] and their labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.as_tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = nn.functional.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    return x.contiguous(), torch.as_tensor(d.target, dtype=torch.int64)


def train_on_digits(steps: int, seed: int = 0) -> tuple[TinyResNet, torch.optim.Optimizer, torch.Tensor, torch.Tensor]:
    """A TinyResNet trained by seeded SGD for `steps` minibatches of 128 digits, as a user's script would; returns
    the model (eval mode), its optimizer and the data (x, y)."""
    torch.manual_seed(seed)
    x, y = digits_rgb16()
    model = TinyResNet(num_classes=10, width=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (128,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return model.eval(), opt, x, y
