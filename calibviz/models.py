"""The registry of architectures calibviz can run. Each exposes `features(x)` (penultimate
activations) and a final linear `head`, so that forward(x) == head(features(x))."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class MLP(nn.Module):
    """A ReLU MLP on flat signals; over-parameterised by default (3 x 512) for mnist1d."""

    def __init__(self, in_dim: int = 40, hidden: tuple[int, ...] = (512, 512, 512),
                 n_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU()]
            d = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(d, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (N, hidden[-1])."""
        return self.body(x.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SmallCNN(nn.Module):
    """Two 3x3 conv layers, a 2x2 max-pool and one hidden FC layer, for 8x8 single-channel images."""

    def __init__(self, channels: tuple[int, int] = (32, 64), hidden: int = 128,
                 n_classes: int = 10, image_size: int = 8) -> None:
        super().__init__()
        c1, c2 = channels
        self.conv = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.fc = nn.Sequential(nn.Linear(c2 * (image_size // 2) ** 2, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (N, hidden)."""
        return self.fc(self.conv(x).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# name -> (class, default kwargs). Students are the same classes, smaller; the `_mid` ones are the teacher
# assistants of TAKD, between teacher and student in width and in parameter count (close to the geometric mean):
# mlp 551k, mlp_mid 79k, mlp_small 7.4k parameters (geometric mean of the ends 64k); cnn 151k, cnn_mid 38k,
# cnn_small 9.8k (geometric mean 38k).
ARCHITECTURES: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    "mlp": (MLP, {"in_dim": 40, "hidden": (512, 512, 512), "n_classes": 10}),
    "mlp_mid": (MLP, {"in_dim": 40, "hidden": (256, 256), "n_classes": 10}),
    "mlp_small": (MLP, {"in_dim": 40, "hidden": (64, 64), "n_classes": 10}),
    "cnn": (SmallCNN, {"channels": (32, 64), "hidden": 128, "n_classes": 10}),
    "cnn_mid": (SmallCNN, {"channels": (16, 32), "hidden": 64, "n_classes": 10}),
    "cnn_small": (SmallCNN, {"channels": (8, 16), "hidden": 32, "n_classes": 10}),
}


def build_model(arch: str, **kwargs: Any) -> nn.Module:
    """Instantiate a registered architecture; kwargs override its defaults (lists become tuples)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"architecture {arch!r} is not registered; known: {sorted(ARCHITECTURES)}")
    cls, defaults = ARCHITECTURES[arch]
    params = {**defaults, **{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}}
    try:
        return cls(**params)
    except TypeError as e:
        raise ValueError(f"architecture {arch!r} does not accept kwargs {kwargs}: {e}") from e
