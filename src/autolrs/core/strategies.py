"""The controller's plug-ins, built from a :class:`~autolrs.core.config.Config`.

The controller never picks a searcher or a forecaster by name: it is given two factories (the
defaults below read ``Config.searcher`` and ``Config.forecaster``). Pass your own to
:class:`~autolrs.core.controller.StageController` to try another search or scoring rule without
touching the phases.

Example:
    >>> from autolrs.core import Config
    >>> make = searcher_factory(Config.paper())
    >>> type(make(1e-3, 1.0, None)).__name__
    'PaperBayesSearcher'
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from autolrs.core.config import Config
from autolrs.core.forecast import ExponentialForecaster, Forecaster, PaperExponentialForecaster
from autolrs.core.search import BayesSearcher, PaperBayesSearcher, Searcher

__all__ = ["ForecasterFactory", "SearcherFactory", "forecaster_factory", "searcher_factory"]

SearcherFactory = Callable[[float, float, "np.random.Generator | None"], Searcher]
"""``make(low, high, rng)``: a fresh searcher over ``[low, high]`` for one stage, drawing from
``rng`` (None: its state is about to be loaded with ``load_state_dict``)."""

ForecasterFactory = Callable[[bool], Forecaster]
"""``make(validation)``: a forecaster for a training-loss (False) or validation-loss series."""


def searcher_factory(config: Config) -> SearcherFactory:
    """The searcher ``config`` names: :class:`BayesSearcher` or :class:`PaperBayesSearcher`."""
    cls = PaperBayesSearcher if config.searcher == "paper" else BayesSearcher

    def make(low: float, high: float, rng: np.random.Generator | None) -> Searcher:
        return cls(
            low,
            high,
            acquisition=config.acquisition,
            kappa=config.kappa,
            xi=config.xi,
            initial_random=config.initial_random,
            restarts=config.gp_restarts,
            diverged_value=config.diverged_value,
            rng=rng,
        )

    return make


def forecaster_factory(config: Config) -> ForecasterFactory:
    """The forecaster ``config`` names: the reference one (``"paper"``) or the robust one."""

    def make(validation: bool) -> Forecaster:
        if config.forecaster == "paper":
            return PaperExponentialForecaster(validation=validation)
        return ExponentialForecaster()

    return make
