"""An example of "your own model": a small residual CNN, written as any PyTorch user would, not registered in calibviz.

calibviz loads it from the config (`arch = "tiny_resnet.py:TinyResNet"`, `arch_kwargs = {...}`), builds it with
those keyword arguments, loads the weights file into it, and runs it on the images. It needs nothing from calibviz:
copy this file, replace the network with yours, and keep the one rule below.

The rule: the last layer is the classifier, an `nn.Linear` here called `fc` (name another with `head = "..."` in the
config). calibviz reads its input as the model's penultimate features (the Features page), and its weight and bias.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """A ResNet basic block: two 3x3 convolutions with batch norm, plus a shortcut that adds the block's input
    back (a 1x1 strided convolution when the block changes the size or the number of channels)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        if stride == 1 and c_in == c_out:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class TinyResNet(nn.Module):
    """A two-stage residual CNN for (N, 3, 16, 16) images with pixels in [0, 1]; returns (N, num_classes) logits.

    stem (3 -> width channels, 16x16) -> block (width, 16x16) -> block (2 * width, 8x8) -> average pool -> fc.
    """

    def __init__(self, num_classes: int = 10, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        self.layer1 = BasicBlock(width, width)
        self.layer2 = BasicBlock(width, 2 * width, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)  # the classifier: calibviz's default head is the last nn.Linear

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled (N, 2 * width) features that `fc` reads: what the Features page projects."""
        return torch.flatten(self.pool(self.layer2(self.layer1(self.stem(x)))), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(x))  # logits, not probabilities: calibviz applies the softmax itself
