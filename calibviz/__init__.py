"""calibviz: see why a trained classifier is over- or under-confident, and what fixes it.

The public API is small and explicit; heavy modules are imported lazily on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # data, formats, backend
    "Predictions": "calibviz.predictions",
    "DataSpec": "calibviz.data",
    "load_dataset": "calibviz.data",
    "FormatError": "calibviz.formats",
    "load_bundle": "calibviz.formats",
    "save_bundle": "calibviz.formats",
    "load_checkpoint": "calibviz.formats",
    "save_checkpoint": "calibviz.formats",
    "read_card": "calibviz.formats",
    "pick_device": "calibviz.backend",
    "predict": "calibviz.backend",
    "build_model": "calibviz.models",
    # the shipped zoo
    "build_zoo": "calibviz.zoo",
    "list_zoo": "calibviz.zoo",
    "ModelEntry": "calibviz.sources",
    "default_zoo_dir": "calibviz.zoo",
    # metrics
    "reliability_bins": "calibviz.metrics",
    "basic_metrics": "calibviz.metrics",
    "ece": "calibviz.metrics",
    "Binning": "calibviz.metrics",
    "Bootstrap": "calibviz.metrics",
    "calibration_metrics": "calibviz.metrics",
    "classwise_calibration": "calibviz.metrics",
    "smooth_calibration": "calibviz.metrics",
    "risk_coverage": "calibviz.metrics",
    "top_label": "calibviz.metrics",
    "metrics_report": "calibviz.report",
    "fixture_to_predictions": "calibviz.report",
    # features
    "class_separation": "calibviz.features",
    "pca": "calibviz.features",
    "template_projection": "calibviz.features",
    "logit_stats": "calibviz.logit_stats",
    "linear_cka": "calibviz.features",
    # soft labels
    "tree_isotonic": "calibviz.soft_labels",
    "order_violations": "calibviz.soft_labels",
    # calibrators
    "TemperatureScaling": "calibviz.calibrators",
    "fit_temperature": "calibviz.calibrators",
    "CALIBRATORS": "calibviz.calibrators",
    "make_calibrator": "calibviz.calibrators",
    "save_calibrator": "calibviz.calibrators",
    "load_calibrator": "calibviz.calibrators",
    "calibrate_model": "calibviz.calibrators",
    "mts_curve": "calibviz.calibrators",
    "recalibration_report": "calibviz.recalibration",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'calibviz' has no attribute {name!r}")
