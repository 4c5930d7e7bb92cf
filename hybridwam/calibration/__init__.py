"""Calibration from logs: identify physical parameters, then learn a residual (see ``core``)."""
from .cli import PRESETS, run_calibrate_cli
from .core import CalibrationConfig, CalibrationReport, calibrate, load_neural_baseline
from .data import Segments, make_segments
from .neural import NeuralModel
from .params import DEFAULT_GROUPS, GROUPS, PhysicalParameters

__all__ = ["CalibrationConfig", "CalibrationReport", "DEFAULT_GROUPS", "GROUPS", "NeuralModel",
           "PRESETS", "PhysicalParameters", "Segments", "calibrate", "load_neural_baseline", "make_segments",
           "run_calibrate_cli"]
