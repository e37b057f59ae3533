"""The AutoLRS algorithm, free of PyTorch: controller, searcher, forecaster and config.

Only NumPy, SciPy and scikit-learn are imported here (a test guards it), so the method can be
tested in milliseconds on synthetic loss curves and driven by any framework.
"""

from __future__ import annotations

from autolrs.core.actions import Action, Discard, Evaluate, Restore, SetLR, Snapshot
from autolrs.core.config import Config
from autolrs.core.controller import Phase, StageController
from autolrs.core.forecast import (
    CurveFit,
    ExponentialForecaster,
    Forecaster,
    PaperExponentialForecaster,
    paper_forecast,
)
from autolrs.core.search import BayesSearcher, Observation, Searcher

__all__ = [
    "Action",
    "BayesSearcher",
    "Config",
    "CurveFit",
    "Discard",
    "Evaluate",
    "ExponentialForecaster",
    "Forecaster",
    "Observation",
    "PaperExponentialForecaster",
    "Phase",
    "Restore",
    "Searcher",
    "SetLR",
    "Snapshot",
    "StageController",
    "paper_forecast",
]
