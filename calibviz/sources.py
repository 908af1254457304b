"""One record for every model the dashboard can show, wherever it came from (the zoo, an upload, and the sources
that later take a user's own architecture or program), and the few operations every page needs on a list of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from calibviz.model_sources import ModelSource

# What it is: a zoo checkpoint the backend can run, a predictions bundle (outputs only), or the user's own model
# (architecture + weights, TorchScript or torch.export program; `source`), run on its own data (`data`).
KINDS = ("checkpoint", "bundle", "source")
# Where it came from: the shipped zoo, a browser upload, or a local config file the user named.
ORIGINS = ("zoo", "upload", "config")


@dataclass(frozen=True)
class ModelEntry:
    """A model the dashboard can show: its identity, where its file is, and its card (recipe, metrics)."""

    name: str  # unique, e.g. "digits/ce" or "upload/my_model"
    title: str  # what a person reads
    dataset: str  # the data it belongs to: a built-in dataset name, or a bundle's own dataset name
    recipe: str
    kind: str  # one of KINDS
    path: Path
    origin: str = "zoo"  # one of ORIGINS
    arch: str = ""
    card: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    source: ModelSource | None = None  # kind "source": how to load the user's model
    data: str = ""  # kind "source": the data it runs on, a folder:/tensors: spec without split
    preprocess: str = ""  # kind "source": Preprocess.key() of its inputs ("" = none)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"model kind {self.kind!r} is unknown; known: {list(KINDS)}")
        if self.origin not in ORIGINS:
            raise ValueError(f"model origin {self.origin!r} is unknown; known: {list(ORIGINS)}")
        if self.kind == "source" and (self.source is None or not self.data):
            raise ValueError(f"model {self.name!r}: the user's own model needs its source and its data")

    @property
    def runnable(self) -> bool:
        """Whether the backend can run it on new inputs (masked, shifted): checkpoints and the user's own models yes,
        bundles no."""
        return self.kind != "bundle"

    @property
    def teacher(self) -> str | None:
        """The name of the model it was distilled from, when its card says so."""
        return self.card.get("recipe", {}).get("kd_teacher") or None

    def digest(self) -> str:
        """The content key of everything computed from the model: its file's sha256, or for the user's own model the
        digest of its source (weights or program, architecture, head) with its data and preprocessing."""
        from calibviz.diskcache import file_digest

        if self.source is not None:
            return f"{self.source.digest()}|{self.data}|{self.preprocess}"
        return file_digest(self.path)


def models_of(entries: Iterable[ModelEntry], dataset: str) -> list[ModelEntry]:
    """The entries that belong to a dataset, in their given order."""
    return [e for e in entries if e.dataset == dataset]


def display_labels(models: Iterable[ModelEntry]) -> dict[str, str]:
    """Display names by model name: titles, disambiguated by name where two models share a title."""
    models = list(models)
    titles = [m.title for m in models]
    return {m.name: (m.title if titles.count(m.title) == 1 else f"{m.title} ({m.name})") for m in models}
