"""The Predictions object: everything one pass of a model over a dataset produces.

Every analysis in calibviz is a pure function of a `Predictions` (plus parameters). It holds plain
numpy arrays so it can be cached, hashed, written to a bundle and plotted without torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.special import softmax

DEFAULT_SPLIT_NAMES = ("train", "val", "test")
PROB_EPS = 1e-12


@dataclass(frozen=True, eq=False)
class Predictions:
    """Outputs of a classifier on one dataset: logits or probabilities, labels and optional extras.

    Exactly one of `logits` and `probs` is set. `split` holds integer codes into
    `meta["split_names"]` (default train/val/test). `meta` carries name, class names, dataset, notes.
    """

    labels: np.ndarray
    logits: np.ndarray | None = None
    probs: np.ndarray | None = None
    features: np.ndarray | None = None
    head_weight: np.ndarray | None = None
    head_bias: np.ndarray | None = None
    split: np.ndarray | None = None
    sample_id: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of examples."""
        return int(self.labels.shape[0])

    @property
    def n_classes(self) -> int:
        """Number of classes C."""
        scores = self.logits if self.logits is not None else self.probs
        assert scores is not None
        return int(scores.shape[1])

    @property
    def name(self) -> str:
        """Display name of the model these predictions came from."""
        return str(self.meta.get("name", "model"))

    @property
    def class_names(self) -> list[str]:
        """Class names from the metadata, or the class indices as strings."""
        names = self.meta.get("class_names")
        if names and len(names) == self.n_classes:
            return [str(x) for x in names]
        return [str(i) for i in range(self.n_classes)]

    @property
    def split_names(self) -> list[str]:
        """Names of the split codes in `split`."""
        return list(self.meta.get("split_names", DEFAULT_SPLIT_NAMES))

    def probabilities(self) -> np.ndarray:
        """(N, C) float32 probabilities: softmax of the logits, or the probabilities as given."""
        if self.probs is not None:
            return self.probs
        return softmax(self.logits.astype(np.float64), axis=1).astype(np.float32)

    def scores(self) -> np.ndarray:
        """(N, C) logits for methods that need them: the logits, or log of clipped probabilities."""
        if self.logits is not None:
            return self.logits
        return np.log(np.clip(self.probs.astype(np.float64), PROB_EPS, 1.0)).astype(np.float32)

    def subset(self, mask: np.ndarray) -> Predictions:
        """The same predictions restricted to the rows selected by a boolean mask or index array."""
        def take(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[mask]

        return replace(
            self,
            labels=self.labels[mask],
            logits=take(self.logits),
            probs=take(self.probs),
            features=take(self.features),
            split=take(self.split),
            sample_id=take(self.sample_id),
        )

    def select_split(self, name: str) -> Predictions:
        """Rows of one named split; raises ValueError naming the split if it is unknown or empty."""
        if self.split is None:
            raise ValueError(f"split {name!r}: these predictions carry no 'split' array")
        names = self.split_names
        if name not in names:
            raise ValueError(f"split {name!r} is unknown; this bundle has splits {names}")
        mask = self.split == names.index(name)
        if not mask.any():
            raise ValueError(f"split {name!r} is empty")
        return self.subset(mask)

    def digest(self) -> str:
        """sha256 of the arrays and metadata: a content key for caches. Computed once per object (the arrays of a
        Predictions are never modified), so pages can key every cache on it at no cost per rerun."""
        cached = self.__dict__.get("_digest")
        if cached is None:
            cached = self._compute_digest()
            object.__setattr__(self, "_digest", cached)
        return cached

    def _compute_digest(self) -> str:
        h = hashlib.sha256()
        for key in ("labels", "logits", "probs", "features", "head_weight", "head_bias", "split",
                    "sample_id"):
            a = getattr(self, key)
            h.update(key.encode())
            if a is not None:
                a = np.ascontiguousarray(a)
                h.update(str(a.dtype).encode() + str(a.shape).encode())
                h.update(a.tobytes())
        h.update(json.dumps(self.meta, sort_keys=True, default=str).encode())
        return h.hexdigest()
