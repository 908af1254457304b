"""calibviz: see why a trained classifier is over- or under-confident, and what fixes it.

The public API is small and explicit; heavy modules are imported lazily on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # what editors and type checkers see; at run time each name is imported on first use
    from calibviz.backend import masked_predictions, predict
    from calibviz.calibrators import (
        CALIBRATORS,
        TemperatureScaling,
        calibrate_model,
        fit_temperature,
        load_calibrator,
        make_calibrator,
        mts_curve,
        save_calibrator,
    )
    from calibviz.data import DataSpec, load_dataset
    from calibviz.devices import pick_device
    from calibviz.distillation import fidelity, soft_label_entropy, students_of
    from calibviz.features import class_separation, linear_cka, pca, template_projection
    from calibviz.formats import FormatError, load_bundle, load_checkpoint, read_card, save_bundle, save_checkpoint
    from calibviz.logit_stats import compute_logit_stats
    from calibviz.metrics import (
        Binning,
        Bootstrap,
        basic_metrics,
        calibration_metrics,
        classwise_calibration,
        ece,
        paired_difference,
        reliability_bins,
        risk_coverage,
        smooth_calibration,
        top_label,
    )
    from calibviz.models import build_model
    from calibviz.predictions import Predictions
    from calibviz.recalibration import recalibration_report
    from calibviz.report import metrics_report
    from calibviz.shift import ShiftCurves, shift_curves, shift_specs
    from calibviz.soft_labels import order_violations, tree_isotonic
    from calibviz.sources import ModelEntry
    from calibviz.zoo import build_zoo, default_zoo_dir, list_zoo

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
    "pick_device": "calibviz.devices",
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
    "paired_difference": "calibviz.metrics",
    # distillation and shift
    "fidelity": "calibviz.distillation",
    "soft_label_entropy": "calibviz.distillation",
    "students_of": "calibviz.distillation",
    "ShiftCurves": "calibviz.shift",
    "shift_curves": "calibviz.shift",
    "shift_specs": "calibviz.shift",
    # features
    "class_separation": "calibviz.features",
    "pca": "calibviz.features",
    "template_projection": "calibviz.features",
    "compute_logit_stats": "calibviz.logit_stats",
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
    "masked_predictions": "calibviz.backend",
    "recalibration_report": "calibviz.recalibration",
}

__all__ = [
    "CALIBRATORS",
    "Binning",
    "Bootstrap",
    "DataSpec",
    "FormatError",
    "ModelEntry",
    "Predictions",
    "ShiftCurves",
    "TemperatureScaling",
    "basic_metrics",
    "build_model",
    "build_zoo",
    "calibrate_model",
    "calibration_metrics",
    "class_separation",
    "classwise_calibration",
    "compute_logit_stats",
    "default_zoo_dir",
    "ece",
    "fidelity",
    "fit_temperature",
    "linear_cka",
    "list_zoo",
    "load_bundle",
    "load_calibrator",
    "load_checkpoint",
    "load_dataset",
    "make_calibrator",
    "masked_predictions",
    "metrics_report",
    "mts_curve",
    "order_violations",
    "paired_difference",
    "pca",
    "pick_device",
    "predict",
    "read_card",
    "recalibration_report",
    "reliability_bins",
    "risk_coverage",
    "save_bundle",
    "save_calibrator",
    "save_checkpoint",
    "shift_curves",
    "shift_specs",
    "smooth_calibration",
    "soft_label_entropy",
    "students_of",
    "template_projection",
    "top_label",
    "tree_isotonic",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (torch, plotly and umap stay unloaded until needed)."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'calibviz' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public API and the module's own attributes, for completion in editors and REPLs."""
    return sorted(set(globals()) | set(__all__))
