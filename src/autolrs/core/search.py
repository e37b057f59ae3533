"""Bayesian optimisation of a learning rate, one stage at a time, by ask/tell.

The search space is one dimension: ``u = (log10(lr) - log10(low)) / (log10(high) - log10(low))``
in [0, 1]. The surrogate is scikit-learn's
:class:`~sklearn.gaussian_process.GaussianProcessRegressor` with the kernel the reference
implementation used through scikit-optimize (constant x Matern-5/2 plus white noise).

* :class:`BayesSearcher` (the default's) standardises the targets (mean and standard deviation)
  and minimises the acquisition over a dense grid of u, never proposing a rate next to one tried.
* :class:`PaperBayesSearcher` is the reference code's scikit-optimize loop: targets centred on
  their mean only (the scikit-learn of that time), the acquisition minimised over 10,000 random
  points and then by L-BFGS-B from the best 5, and a proposal equal to a rate already tried told
  again and re-asked.
"""

from __future__ import annotations

import abc
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import optimize
from scipy.stats import norm
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

from autolrs.core._rng import rng_from_state, rng_state
from autolrs.core._threads import single_threaded_blas
from autolrs.core.selection import select

__all__ = [
    "BayesSearcher",
    "TrialPoint",
    "PaperBayesSearcher",
    "Searcher",
    "expected_improvement",
    "lower_confidence_bound",
]

_GRID = np.linspace(0.0, 1.0, 1001)
_MIN_SEPARATION = 2e-3  # proposals closer than this (in u) to an observed point are not repeated
_MIN_RATIO = 1.5  # ... nor closer than this factor in learning rate: a near-duplicate teaches little


@dataclass(frozen=True)
class TrialPoint:
    """One evaluated learning rate: a data point of the searcher's GP (what the controller is
    told is :data:`autolrs.core.observations.Observation`).

    Attributes:
        lr: The learning rate.
        value: The objective told for it (a forecast loss); None for a diverged trial.
        diverged: Whether the trial diverged (the GP then sees a stand-in value).
        prior: Whether the point was carried over from an earlier stage (warm start) rather
            than evaluated in this one.
        repeat: Whether the point re-tells an evaluated rate that the searcher proposed again
            (:class:`PaperBayesSearcher`); it informs the GP and is never 'best'.
    """

    lr: float
    value: float | None
    diverged: bool = False
    prior: bool = False
    repeat: bool = False


def lower_confidence_bound(mean: np.ndarray, std: np.ndarray, kappa: float) -> np.ndarray:
    """LCB acquisition, to be minimised: ``mean - kappa * std``."""
    return mean - kappa * std


def expected_improvement(
    mean: np.ndarray, std: np.ndarray, best: float, xi: float
) -> np.ndarray:
    """Negative expected improvement below ``best - xi`` (to be minimised)."""
    std = np.maximum(std, 1e-12)
    z = (best - xi - mean) / std
    ei = (best - xi - mean) * norm.cdf(z) + std * norm.pdf(z)
    return -ei


class Searcher(abc.ABC):
    """Proposes learning rates and learns from the objective values told back.

    This is all the controller uses of a searcher: one is built for each stage over that
    stage's interval (see :func:`autolrs.core.strategies.searcher_factory`), asked for each
    candidate, told each result, and saved with the controller's state. Two hooks have defaults
    a simple searcher may keep: :meth:`add_prior` (ignored) and :meth:`posterior_mean` (no model:
    selection uses the observed values).
    """

    @abc.abstractmethod
    def ask(self) -> float:
        """The next learning rate to evaluate."""

    @abc.abstractmethod
    def tell(self, lr: float, value: float | None, *, diverged: bool = False) -> None:
        """Records the objective value (lower is better) of an evaluated learning rate."""

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state, for :meth:`load_state_dict`."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`'s output.

        Raises:
            NotImplementedError: If the searcher cannot be resumed (override this to allow it).
        """
        raise NotImplementedError(
            f"{type(self).__name__} cannot load a saved state; implement load_state_dict() to "
            "resume a run that uses it"
        )

    @property
    def exhausted(self) -> bool:
        """Whether the searcher has nothing more to propose (the stage may end early); default:
        never, the stage's plan says how many candidates run."""
        return False

    def add_prior(self, lr: float, value: float) -> None:
        """A point carried over from an earlier stage (``Config.warm_start``); default: ignored."""

    def posterior_mean(self, lrs: Sequence[float]) -> np.ndarray | None:
        """The model's mean objective at ``lrs`` (``Config.select="posterior"``); None: no model."""
        return None


class BayesSearcher(Searcher):
    """GP-based ask/tell search over log-learning-rate in ``[low, high]``.

    Args:
        low: Smallest learning rate that may be proposed (> 0).
        high: Largest learning rate that may be proposed (> low).
        acquisition: ``"lcb"`` or ``"ei"``.
        kappa: LCB weight of the posterior standard deviation.
        xi: EI margin in normalised objective units.
        initial_random: Proposals drawn log-uniformly before the GP is consulted.
        restarts: Restarts of the kernel hyper-parameter fit.
        diverged_value: What the GP sees for a diverged trial: ``"penalty"`` (the constant
            ``penalty``, as the reference code) or ``"worst"`` (the worst finite value plus the
            spread of the finite values, which keeps the normalised targets well scaled).
        penalty: The constant for ``diverged_value="penalty"``.
        seed: Seed of the searcher's random generator (proposals are deterministic given it).

    Example:
        >>> s = BayesSearcher(1e-4, 1e-1, kappa=2.0, seed=0)
        >>> for _ in range(6):
        ...     lr = s.ask()
        ...     s.tell(lr, (math.log10(lr) + 2.0) ** 2)
        >>> 1e-3 < s.best().lr < 1e-1
        True
    """

    def __init__(
        self,
        low: float,
        high: float,
        *,
        acquisition: Literal["lcb", "ei"] = "lcb",
        kappa: float = 1e6,
        xi: float = 0.01,
        initial_random: int = 1,
        restarts: int = 2,
        diverged_value: Literal["penalty", "worst"] = "penalty",
        penalty: float = 1e6,
        seed: int | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
            raise ValueError(f"search bounds must satisfy 0 < low < high, got ({low!r}, {high!r})")
        if acquisition not in ("lcb", "ei"):
            raise ValueError(f"acquisition must be 'lcb' or 'ei', got {acquisition!r}")
        if diverged_value not in ("penalty", "worst"):
            raise ValueError(f"diverged_value must be 'penalty' or 'worst', got {diverged_value!r}")
        self.low = float(low)
        self.high = float(high)
        self.acquisition = acquisition
        self.kappa = float(kappa)
        self.xi = float(xi)
        self.initial_random = int(initial_random)
        self.restarts = int(restarts)
        self.diverged_value = diverged_value
        self.penalty = float(penalty)
        self._rng = rng if rng is not None else np.random.default_rng(seed)
        self.observations: list[TrialPoint] = []

    # ------------------------------------------------------------------ space
    def to_unit(self, lr: float) -> float:
        """Position of ``lr`` in the normalised log space ([0, 1] inside the bounds)."""
        return (math.log10(lr) - math.log10(self.low)) / (
            math.log10(self.high) - math.log10(self.low)
        )

    def from_unit(self, u: float) -> float:
        """Learning rate at normalised position ``u``."""
        u = min(max(float(u), 0.0), 1.0)
        return 10 ** (math.log10(self.low) + u * (math.log10(self.high) - math.log10(self.low)))

    # ------------------------------------------------------------------ ask / tell
    @property
    def evaluated(self) -> list[TrialPoint]:
        """Observations made by this searcher (warm-start priors and repeats excluded)."""
        return [o for o in self.observations if not (o.prior or o.repeat)]

    def ask(self) -> float:
        with single_threaded_blas():
            return self._ask()

    def _ask(self) -> float:
        if len(self.evaluated) < self.initial_random:
            return self.from_unit(float(self._rng.uniform(0.0, 1.0)))
        mean, std = self.posterior(_GRID)
        if self.acquisition == "lcb":
            score = lower_confidence_bound(mean, std, self.kappa)
        else:
            values = self.values()
            scale = float(np.std(values)) or 1.0
            score = expected_improvement(mean, std, float(np.min(values)), self.xi * scale)
        seen = np.array([self.to_unit(o.lr) for o in self.observations])
        if len(seen):
            separation = max(_MIN_SEPARATION, math.log(_MIN_RATIO) / math.log(self.high / self.low))
            too_close = np.min(np.abs(_GRID[:, None] - seen[None, :]), axis=1) < separation
            score = np.where(too_close, np.inf, score)
        if not np.any(np.isfinite(score)):
            return self.from_unit(float(self._rng.uniform(0.0, 1.0)))
        # Ties (an unexplored range's edges score alike) go to the larger rate: short trials are
        # biased towards small rates, so the top of the range is the side worth checking first.
        best = len(score) - 1 - int(np.argmin(score[::-1]))
        return self.from_unit(float(_GRID[best]))

    def tell(self, lr: float, value: float | None, *, diverged: bool = False) -> None:
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {lr!r}")
        if diverged:
            self.observations.append(TrialPoint(float(lr), None, True))
            return
        if value is None or not math.isfinite(value):
            raise ValueError(
                f"value must be a finite number, got {value!r}; tell a divergence with "
                "diverged=True instead"
            )
        self.observations.append(TrialPoint(float(lr), float(value), False))

    def values(self) -> np.ndarray:
        """The objective values the GP is fitted to, diverged trials replaced by stand-ins."""
        finite = [o.value for o in self.observations if o.value is not None and not o.diverged]
        if self.diverged_value == "penalty" or not finite:
            stand_in = self.penalty if self.diverged_value == "penalty" or not finite else 0.0
        else:
            worst, spread = max(finite), max(finite) - min(finite)
            stand_in = worst + max(spread, 0.1 * abs(worst), 1e-3)
        return np.array(
            [stand_in if o.diverged or o.value is None else o.value for o in self.observations],
            dtype=float,
        )

    def add_prior(self, lr: float, value: float) -> None:
        """Adds a point carried from an earlier stage (it informs the GP, is never 'best')."""
        if self.low <= lr <= self.high and math.isfinite(value):
            self.observations.append(TrialPoint(float(lr), float(value), False, True))

    # ------------------------------------------------------------------ model
    #: Divide the targets by their standard deviation as well as centring them (modern
    #: scikit-learn's ``normalize_y=True``); False centres them only.
    standardize_targets = True

    def _fit(self) -> tuple[GaussianProcessRegressor, float] | None:
        """The GP fitted to the observations and the offset to add to its mean."""
        if not self.observations:
            return None
        u = np.array([[self.to_unit(o.lr)] for o in self.observations])
        y = self.values()
        offset = 0.0 if self.standardize_targets else float(np.mean(y))
        kernel = ConstantKernel(1.0, (0.01, 1000.0)) * Matern(
            length_scale=1.0, length_scale_bounds=(0.01, 100.0), nu=2.5
        ) + WhiteKernel(noise_level=1.0, noise_level_bounds=(1e-5, 1e5))
        gp = GaussianProcessRegressor(
            kernel=kernel,
            normalize_y=self.standardize_targets,
            n_restarts_optimizer=self.restarts,
            random_state=int(self._rng.integers(0, 2**31 - 1)),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            gp.fit(u, y - offset)
        # Predict the latent function, not a new noisy observation: drop the fitted white-noise
        # term from the kernel used at prediction time (as scikit-optimize does), so that the
        # posterior standard deviation shrinks at evaluated points.
        gp.kernel_ = gp.kernel_.k1
        return gp, offset

    def posterior_mean(self, lrs: Sequence[float]) -> np.ndarray:
        """GP posterior mean at the learning rates ``lrs``."""
        mean, _ = self.posterior(np.array([self.to_unit(lr) for lr in lrs]))
        return mean

    def posterior(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """GP posterior mean and standard deviation at normalised positions ``u``."""
        with single_threaded_blas():
            fitted = self._fit()
            if fitted is None:
                return np.zeros_like(u, dtype=float), np.ones_like(u, dtype=float)
            return _predict(*fitted, u)

    # ------------------------------------------------------------------ results
    def best(self, *, use_posterior: bool = False) -> TrialPoint:
        """The best evaluated learning rate of this searcher.

        Args:
            use_posterior: Rank the evaluated points by GP posterior mean rather than by the
                observed value (smooths out one lucky forecast).

        Raises:
            LookupError: If nothing has been evaluated, or every evaluated trial diverged.
        """
        candidates = self.evaluated
        if not candidates:
            raise LookupError("no learning rate has been evaluated yet")
        healthy = [o for o in candidates if not o.diverged]
        if not healthy:
            raise LookupError("every evaluated learning rate diverged")
        return select(healthy, posterior_mean=self.posterior_mean if use_posterior else None)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "low": self.low,
            "high": self.high,
            "observations": [
                [o.lr, o.value, o.diverged, o.prior, o.repeat] for o in self.observations
            ],
            "rng": rng_state(self._rng),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`'s output (the settings come from the constructor)."""
        self.low = float(state["low"])
        self.high = float(state["high"])
        self.observations = [
            TrialPoint(
                float(o[0]), None if o[1] is None else float(o[1]), bool(o[2]), bool(o[3]),
                bool(o[4]) if len(o) > 4 else False,  # states before repeats had four fields
            )
            for o in state["observations"]
        ]
        self._rng = rng_from_state(state["rng"])


def _predict(
    gp: GaussianProcessRegressor, offset: float, u: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    mean, std = gp.predict(np.asarray(u, dtype=float).reshape(-1, 1), return_std=True)
    return np.asarray(mean, dtype=float) + offset, np.asarray(std, dtype=float)


class PaperBayesSearcher(BayesSearcher):
    """The reference code's search: a scikit-optimize ``Optimizer`` as AutoLRS drives it.

    Differences from :class:`BayesSearcher`, each as scikit-optimize 0.8.1 with scikit-learn 0.21
    behaves:

    * The GP's targets are centred on their mean, not divided by their standard deviation, so a
      diverged trial's penalty of 1e6 dominates the fit as it did in the original.
    * The acquisition is minimised over :attr:`samples` uniform random points, then by L-BFGS-B
      (at most 20 iterations) from the best :attr:`starts` of them; the best end point wins.
    * A proposal equal to a rate already evaluated is told again with that rate's value and the
      searcher asks anew, as the original's loop does. The original repeats without bound (it can
      spin over 100 times, or forever when the acquisition keeps its edge); here at most
      :attr:`max_repeats` times, after which the best grid point away from every tried rate is
      proposed (:class:`BayesSearcher`'s rule).

    Args: as :class:`BayesSearcher`.
    """

    standardize_targets = False
    samples = 10_000
    starts = 5
    max_repeats = 10
    _SAME = 1e-9  # in u: a proposal this close to a tried rate repeats it

    def _ask(self) -> float:
        if len(self.evaluated) < self.initial_random:
            return self.from_unit(float(self._rng.uniform(0.0, 1.0)))
        for attempt in range(self.max_repeats + 1):
            u = self._minimise_acquisition()
            tried = next(
                (o for o in self.evaluated if abs(self.to_unit(o.lr) - u) < self._SAME), None
            )
            if tried is None:
                return self.from_unit(u)
            if attempt == self.max_repeats:
                break
            self.observations.append(
                TrialPoint(tried.lr, tried.value, tried.diverged, repeat=True)
            )
        return super()._ask()

    def _minimise_acquisition(self) -> float:
        fitted = self._fit()
        assert fitted is not None  # _ask is only reached with observations

        def score(u: np.ndarray) -> np.ndarray:
            mean, std = _predict(*fitted, np.clip(u, 0.0, 1.0))
            if self.acquisition == "lcb":
                return lower_confidence_bound(mean, std, self.kappa)
            values = self.values()
            scale = float(np.std(values)) or 1.0
            return expected_improvement(mean, std, float(np.min(values)), self.xi * scale)

        points = self._rng.uniform(0.0, 1.0, self.samples)
        best_u, best_score = 0.0, math.inf
        for start in points[np.argsort(score(points))[: self.starts]]:
            result = optimize.minimize(
                lambda z: float(score(z)[0]),
                x0=[start],
                method="L-BFGS-B",
                bounds=[(0.0, 1.0)],
                options={"maxiter": 20},
            )
            if float(result.fun) < best_score:
                best_u, best_score = float(result.x[0]), float(result.fun)
        return min(max(best_u, 0.0), 1.0)
