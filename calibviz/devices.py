"""Device choice, in one small module that the backend and the analyses (calibrators, metrics report) both
import, so that no analysis reaches up into the inference backend for it."""

from __future__ import annotations

import os

import torch

DEVICE_ENV = "CALIBVIZ_DEVICE"


def pick_device(override: str | None = None) -> torch.device:
    """The device to run on: `override`, else $CALIBVIZ_DEVICE, else CUDA when present, else CPU."""
    choice = override or os.environ.get(DEVICE_ENV) or ""
    if choice:
        try:
            dev = torch.device(choice)
        except RuntimeError as e:
            raise ValueError(f"device {choice!r} is not a valid torch device ({e})") from e
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {choice!r} was asked for, but CUDA is not available here")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
