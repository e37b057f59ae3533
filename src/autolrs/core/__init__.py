"""The AutoLRS algorithm, free of PyTorch: controller, searcher, forecaster and config.

Only NumPy, SciPy and scikit-learn are imported here (a test guards it), so the method can be
tested in milliseconds on synthetic loss curves and driven by any framework.
"""

from __future__ import annotations

from autolrs.core.actions import Action, Discard, Evaluate, Restore, SetLR, Snapshot
from autolrs.core.config import Config
from autolrs.core.controller import Phase, StageController
from autolrs.core.decision import Decision, Outlook
from autolrs.core.executor import Executor
from autolrs.core.forecast import (
    CurveFit,
    ExponentialForecaster,
    Forecaster,
    PaperExponentialForecaster,
    paper_forecast,
)
from autolrs.core.observations import Abort, Loss, Losses, Observation, Start, Validation
from autolrs.core.search import BayesSearcher, Searcher, TrialPoint

__all__ = [
    "Abort",
    "Action",
    "BayesSearcher",
    "Config",
    "CurveFit",
    "Decision",
    "Discard",
    "Evaluate",
    "Executor",
    "ExponentialForecaster",
    "Forecaster",
    "Loss",
    "Losses",
    "Observation",
    "Outlook",
    "PaperExponentialForecaster",
    "Phase",
    "Restore",
    "Searcher",
    "SetLR",
    "Snapshot",
    "StageController",
    "Start",
    "TrialPoint",
    "Validation",
    "paper_forecast",
]
