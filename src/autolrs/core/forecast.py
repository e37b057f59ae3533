"""Extrapolating a short loss series to the end of a stage.

AutoLRS judges a candidate learning rate by the loss it would reach after tau steps, having
trained it for only tau' << tau steps. The paper fits ``L(x) = a * exp(b * x) + c`` (b < 0) to a
de-noised version of the trial's loss series and evaluates it at the horizon.

Two forecasters share the model:

* :func:`paper_forecast` (and :class:`PaperExponentialForecaster` around it) is the reference
  code's ``exp_forecast`` number for number: iterated spline trimming of outliers, a degree-2
  smoothing spline, Nelder-Mead over ``log(-b)`` from ``b = -1``, (a, c) by linear least squares.
  It is fragile on nearly linear windows, where the rate runs off to zero and the forecast
  becomes a long linear extrapolation (negative forecasts are returned as they are).
* :class:`ExponentialForecaster` (robust, the default's) fits the raw points over a bounded grid
  of rates refined by a bounded scalar search, with ``c >= 0`` when the losses are non-negative,
  drops outliers by their residuals, and falls back to the series' level when it is too short or
  flat. Its predictions are never NaN, infinite, or (for a non-negative series) negative.
"""

from __future__ import annotations

import abc
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize
from scipy.interpolate import UnivariateSpline

from autolrs.core._threads import single_threaded_blas

__all__ = [
    "CurveFit",
    "ExponentialForecaster",
    "Forecaster",
    "PaperExponentialForecaster",
    "PaperFit",
    "paper_fit",
    "paper_forecast",
    "paper_trim",
]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class CurveFit:
    """A fitted curve ``a * exp(-rate * x) + c`` and how far to trust it.

    Attributes:
        a: Amplitude (positive for a decreasing curve).
        rate: Decay rate per x unit, ``-b`` in the paper's notation (> 0).
        c: Asymptote.
        r2: Coefficient of determination of the fit on the points it was fitted to.
        noise: Standard deviation of the raw series about the fitted curve.
        level: The last smoothed value of the series; the prediction when ``fallback`` is set.
        nonnegative: Whether the series was non-negative (predictions are then clipped at 0).
        fallback: Why the curve was not used (``None`` when it was).
        points: Number of points in the series.
    """

    a: float
    rate: float
    c: float
    r2: float
    noise: float
    level: float
    nonnegative: bool
    fallback: str | None = None
    points: int = 0

    def predict(self, x: float) -> float:
        """The forecast at ``x`` (same units as the fitted x); always finite."""
        if self.fallback is not None:
            value = self.level
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                value = float(self.a * math.exp(-self.rate * x) + self.c) if math.isfinite(
                    self.rate * x
                ) else math.nan
            if not math.isfinite(value):
                value = self.level
        if self.nonnegative and value < 0.0:
            value = 0.0
        return value

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (for events and logs)."""
        return {
            "a": self.a,
            "rate": self.rate,
            "c": self.c,
            "r2": self.r2,
            "noise": self.noise,
            "level": self.level,
            "fallback": self.fallback,
            "points": self.points,
        }


class Forecaster(abc.ABC):
    """Fits a loss series so that it can be extrapolated to a later step."""

    @abc.abstractmethod
    def fit(self, x: ArrayLike, y: ArrayLike, *, horizon: float) -> CurveFit:
        """Fits the series ``y`` observed at increasing ``x``.

        Args:
            x: Positions of the observations (steps or evaluation indices), increasing.
            y: Finite loss values, same length as ``x``.
            horizon: The x at which the fit will be evaluated; robust fits use it to bound the
                decay rate.

        Returns:
            The fitted curve; ``fit(...).predict(horizon)`` is the forecast.
        """


# --------------------------------------------------------------------------- de-noising
def _spline(x: FloatArray, y: FloatArray) -> UnivariateSpline | None:
    """Degree-2 smoothing spline with SciPy's default smoothing, or None if it cannot be fitted."""
    if len(x) < 4:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            spline = UnivariateSpline(x, y, k=2)
        except Exception:  # noqa: BLE001 - FITPACK raises several types; the caller falls back
            return None
    return spline


def paper_trim(y: ArrayLike, *, validation: bool = False) -> NDArray[np.bool_]:
    """The reference code's outlier trimming (``spline_iter``), on x = 0..n-1.

    Training loss: 10 passes; each fits a degree-2 smoothing spline to the points still kept and
    drops the ``round(3 %)`` largest residuals among them, but only those whose index *in the kept
    array* lies below ``x[(n - 1) // 2]`` (the original compares the shrinking array's indices with
    an x value fixed before the first pass). Validation loss: one pass dropping the single
    largest residual if it lies in that first half. Ties go to the later point, as Python's
    stable sort does in the original.

    Two guards where the original raises: below 17 points ``round(3 %)`` is 0 and the original's
    slice ``[-0:]`` drops every first-half point each pass until its spline fails; here nothing is
    dropped. A pass that would leave fewer than 4 points is not made.

    Args:
        y: The loss series (finite).
        validation: Validation-loss mode (one pass, one point).

    Returns:
        The mask of kept points.
    """
    ys = np.asarray(y, dtype=float)
    n = len(ys)
    index = np.arange(n)  # positions in the original series of the points still kept
    bound = float(int((n - 1) * 0.5))  # x[int((n - 1) * bound)] with x = 0..n-1
    for _ in range(1 if validation else 10):
        spline = _spline(index.astype(float), ys[index])
        if spline is None:
            break
        residual = np.abs(ys[index] - spline(index.astype(float)))
        order = np.argsort(residual, kind="stable")
        count = 1 if validation else -int(round(-len(index) * 0.03))
        if count <= 0:
            break
        drop = [i for i in order[len(order) - count :] if i < bound]
        if len(index) - len(drop) < 4:
            break
        index = np.delete(index, drop)
    kept = np.zeros(n, dtype=bool)
    kept[index] = True
    return kept


def _level(smoothed: FloatArray, y: FloatArray) -> float:
    """A robust 'current value' of the series: the last smoothed point, or the tail median."""
    last = float(smoothed[-1])
    tail = float(np.median(y[-max(1, len(y) // 4) :]))
    if not math.isfinite(last):
        return tail
    # The spline's end point can overshoot on short noisy series; stay within the data.
    return float(np.clip(last, np.min(y), np.max(y)))


def _prepare(x: ArrayLike, y: ArrayLike) -> tuple[FloatArray, FloatArray]:
    xs = np.asarray(x, dtype=float).ravel()
    ys = np.asarray(y, dtype=float).ravel()
    if xs.shape != ys.shape:
        raise ValueError(f"x and y must have the same length, got {len(xs)} and {len(ys)}")
    if len(ys) == 0:
        raise ValueError("cannot fit an empty loss series")
    if not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys))):
        raise ValueError("the loss series must be finite; score diverged trials separately")
    if len(xs) > 1 and np.any(np.diff(xs) <= 0):
        raise ValueError("x must be strictly increasing")
    return xs, ys


def _constant_fit(level: float, y: FloatArray, reason: str) -> CurveFit:
    return CurveFit(
        a=0.0,
        rate=1.0,
        c=level,
        r2=0.0,
        noise=float(np.std(y)) if len(y) > 1 else 0.0,
        level=level,
        nonnegative=bool(np.all(y >= 0)),
        fallback=reason,
        points=len(y),
    )


def _r2(y: FloatArray, fitted: FloatArray) -> float:
    with np.errstate(over="ignore", invalid="ignore"):
        sse = float(np.sum((y - fitted) ** 2))
        sst = float(np.sum((y - np.mean(y)) ** 2))
    if not (math.isfinite(sse) and math.isfinite(sst)):
        return 0.0
    if sst <= 0.0:
        return 1.0 if sse <= 1e-24 else 0.0
    return 1.0 - sse / sst


# --------------------------------------------------------------------------- paper
@dataclass(frozen=True)
class PaperFit:
    """The reference code's fit ``a * exp(-rate * x) + c`` of a series on x = 0..n-1.

    Attributes:
        a: Amplitude.
        rate: Decay rate per x unit (``-b`` in the original; positive by construction).
        c: Asymptote.
        removed: How many points the outlier trimming dropped.
        smoothed: The final spline (fitted to the kept points) evaluated at every x: the series
            the curve was fitted to.
    """

    a: float
    rate: float
    c: float
    removed: int
    smoothed: FloatArray

    def predict(self, x: float) -> float:
        """The forecast at ``x``, as the original computes it (it may be negative or non-finite)."""
        with np.errstate(over="ignore", invalid="ignore"):
            return float(self.a * np.exp(-self.rate * x) + self.c)


def _paper_residual(beta: NDArray[np.float64], x: FloatArray, smoothed: FloatArray) -> float:
    """The original's objective: the least-squares residual of [exp(-exp(beta) x), 1].

    Where the design matrix is numerically rank one (beta far below zero), NumPy returns no
    residual and the original's Nelder-Mead never moves there (every comparison with the empty
    array is false); NaN has the same effect on SciPy's Nelder-Mead.
    """
    design = np.column_stack([np.exp(-np.exp(beta[0]) * x), np.ones_like(x)])
    residual = np.linalg.lstsq(design, smoothed, rcond=None)[1]
    return float(residual[0]) if residual.size else math.nan


def paper_fit(losses: ArrayLike, *, validation: bool = False) -> PaperFit:
    """Fits a loss series exactly as the reference code's ``exp_forecast`` does.

    x runs from 0 to n-1; the series is trimmed (:func:`paper_trim`), a degree-2 smoothing spline
    is fitted to the kept points and evaluated at every x, ``beta`` is found by Nelder-Mead from 0
    (``xtol = ftol = 1e-5``) on the residual of the linear least-squares fit of
    ``[exp(-exp(beta) x), 1]``, and ``(a, c)`` by least squares at that beta.

    Args:
        losses: The trial's loss series, oldest first (at least 4 finite values).
        validation: Validation-loss mode (one trimming pass that drops at most one point).

    Raises:
        ValueError: If the series has fewer than 4 points or a non-finite value.
    """
    y = np.asarray(losses, dtype=float).ravel()
    if len(y) < 4:
        raise ValueError(f"the paper's forecaster needs at least 4 losses, got {len(y)}")
    if not np.all(np.isfinite(y)):
        raise ValueError("the loss series must be finite; score diverged trials separately")
    x = np.arange(len(y), dtype=float)
    kept = paper_trim(y, validation=validation)
    spline = _spline(x[kept], y[kept])
    smoothed = y.copy() if spline is None else np.asarray(spline(x), dtype=float)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        beta = optimize.fmin(
            _paper_residual, x0=0.0, args=(x, smoothed), xtol=1e-5, ftol=1e-5, disp=False
        )[0]
        rate = float(np.exp(beta))
        design = np.column_stack([np.exp(-rate * x), np.ones_like(x)])
        a, c = np.linalg.lstsq(design, smoothed, rcond=None)[0]
    return PaperFit(float(a), rate, float(c), int(len(y) - kept.sum()), smoothed)


def paper_forecast(losses: ArrayLike, at: float, *, validation: bool = False) -> float:
    """The reference code's forecast of a loss series at ``x = at`` (x = 0..n-1 for the series).

    Example:
        >>> y = 0.5 + 1.5 * np.exp(-np.arange(100) / 20)  # its value at 1000 is 0.5
        >>> round(paper_forecast(y, 1000), 3)  # SciPy's default smoothing flattens the curve
        0.425
    """
    return paper_fit(losses, validation=validation).predict(at)


class PaperExponentialForecaster(Forecaster):
    """The reference implementation's forecaster (:func:`paper_fit`) behind :class:`Forecaster`.

    The series must be observed at consecutive x (one training step or one evaluation apart),
    as the original's ring buffer is. Its forecast is the original's, negative values included;
    only where the original would fail (fewer than 4 points) or return a non-finite number does
    :meth:`CurveFit.predict` give the series' last smoothed value instead.

    Args:
        validation: Validation-loss mode (one trimming pass of at most one point).
    """

    def __init__(self, *, validation: bool = False) -> None:
        self.validation = bool(validation)

    def fit(self, x: ArrayLike, y: ArrayLike, *, horizon: float) -> CurveFit:
        with single_threaded_blas():
            return self._fit(x, y)

    def _fit(self, x: ArrayLike, y: ArrayLike) -> CurveFit:
        xs, ys = _prepare(x, y)
        if len(xs) > 1 and not np.allclose(np.diff(xs), 1.0):
            raise ValueError("the paper's forecaster needs consecutive x (one unit apart)")
        if len(ys) < 4:
            return _constant_fit(float(np.mean(ys)), ys, "too few points")
        fit = paper_fit(ys, validation=self.validation)
        # Express the curve in the caller's x: a * exp(-rate * (x - x0)) + c.
        with np.errstate(over="ignore", invalid="ignore"):
            a = fit.a * math.exp(min(fit.rate * xs[0], 700.0))
            fitted = a * np.exp(-fit.rate * xs) + fit.c
        level = _level(fit.smoothed, ys)
        if not (math.isfinite(a) and math.isfinite(fit.c) and np.all(np.isfinite(fitted))):
            return _constant_fit(level, ys, "non-finite fit")
        return CurveFit(
            a=a,
            rate=fit.rate,
            c=fit.c,
            r2=_r2(ys, fitted),
            noise=float(np.std(ys - fitted)),
            level=level,
            nonnegative=False,  # the original returns negative forecasts as they are
            fallback=None,
            points=len(ys),
        )


# --------------------------------------------------------------------------- robust
class ExponentialForecaster(Forecaster):
    """A bounded, constrained fit of ``a * exp(-rate * x) + c`` to the raw series.

    The rate is searched on a log grid between ``min_saturation / horizon`` (the curve is at
    least that far saturated at the horizon) and ``max_rate`` per x unit, then refined by a
    bounded scalar search; for each rate (a, c) solve a least-squares problem with ``c >= 0``
    when the series is non-negative. Outliers in the first half of the window (residuals beyond
    ``outlier_sigmas`` robust standard deviations of the first fit) are dropped and the curve
    refitted once; late points are always kept, since a late jump signals divergence. Too short or
    flat series fall back to their last smoothed value.

    Unlike the reference fit it does not fit a quadratic spline's output, whose trimming drops
    the steep, informative start of a saturating curve.

    Args:
        min_saturation: Lower bound on ``rate * horizon``: 0.5 means the fitted curve is at
            least 1 - exp(-0.5) = 39 % of the way to its asymptote at the horizon, which keeps a
            nearly linear window from being extrapolated linearly over a long horizon.
        max_rate: Upper bound on the rate per x unit.
        outlier_sigmas: Residuals beyond this many robust standard deviations are outliers.
        grid: Number of grid rates.
    """

    def __init__(
        self,
        *,
        min_saturation: float = 0.5,
        max_rate: float = 5.0,
        outlier_sigmas: float = 3.5,
        grid: int = 48,
    ) -> None:
        if min_saturation <= 0 or max_rate <= 0 or outlier_sigmas <= 0 or grid < 4:
            raise ValueError(
                "min_saturation, max_rate and outlier_sigmas must be > 0 and grid >= 4, got "
                f"{min_saturation!r}, {max_rate!r}, {outlier_sigmas!r}, {grid!r}"
            )
        self.min_saturation = float(min_saturation)
        self.max_rate = float(max_rate)
        self.outlier_sigmas = float(outlier_sigmas)
        self.grid = int(grid)

    def fit(self, x: ArrayLike, y: ArrayLike, *, horizon: float) -> CurveFit:
        with single_threaded_blas():
            return self._fit(x, y, horizon)

    def _fit(self, x: ArrayLike, y: ArrayLike, horizon: float) -> CurveFit:
        xs, ys = _prepare(x, y)
        nonneg = bool(np.all(ys >= 0))
        if len(ys) < 4:
            return _constant_fit(float(np.median(ys)), ys, "too few points")
        if float(np.ptp(ys)) <= 1e-12 * max(1.0, abs(float(np.mean(ys)))):
            return _constant_fit(float(np.median(ys)), ys, "flat series")
        # Work in x measured from the first point, so that rates do not depend on the offset.
        x0 = xs[0]
        xr = xs - x0
        span_h = max(float(horizon) - x0, float(xr[-1]), 1.0)
        low = self.min_saturation / span_h
        high = max(self.max_rate / max(float(np.min(np.diff(xs))), 1e-12), low * 10.0)
        kept = np.ones(len(xs), dtype=bool)
        a, rate, c = self._fit_curve(xr, ys, nonneg, low, high)
        resid = ys - (a * np.exp(-rate * xr) + c)
        sigma = 1.4826 * float(np.median(np.abs(resid - np.median(resid))))
        if sigma > 0:
            # Only the first half may lose points (as in the reference code): a jump at the end
            # of a trial is the start of a divergence, not noise.
            first_half = xr < xr[-1] / 2.0
            outliers = first_half & (np.abs(resid) > self.outlier_sigmas * sigma)
            if outliers.any() and (~outliers).sum() >= 4:
                kept = ~outliers
                a, rate, c = self._fit_curve(xr[kept], ys[kept], nonneg, low, high)
        fitted = a * np.exp(-rate * xr) + c
        if not (math.isfinite(a) and math.isfinite(c) and np.all(np.isfinite(fitted))):
            tail = ys[-max(1, len(ys) // 4) :]
            return _constant_fit(float(np.median(tail)), ys, "non-finite fit")
        level = float(np.clip(fitted[-1], np.min(ys), np.max(ys)))
        # Express the curve in the caller's x: a*exp(-rate*(x - x0)) + c.
        a_shift = a * math.exp(rate * x0) if rate * x0 < 700 else math.inf
        if not math.isfinite(a_shift):
            return _constant_fit(level, ys, "non-finite fit")
        return CurveFit(
            a=a_shift,
            rate=rate,
            c=c,
            r2=_r2(ys[kept], fitted[kept]),
            noise=float(np.std(ys[kept] - fitted[kept])),
            level=level,
            nonnegative=nonneg,
            fallback=None,
            points=len(ys),
        )

    def _fit_curve(
        self, x: FloatArray, y: FloatArray, nonneg: bool, low: float, high: float
    ) -> tuple[float, float, float]:
        """Best (a, rate, c) over the bounded rate interval."""
        log_rates = np.linspace(math.log(low), math.log(high), self.grid)
        sse = self._sse(np.exp(log_rates), x, y, nonneg)[2]
        best = int(np.argmin(sse))
        log_rate = float(log_rates[best])
        lo_idx, hi_idx = max(best - 1, 0), min(best + 1, self.grid - 1)
        res = optimize.minimize_scalar(
            lambda lr: float(self._sse(np.array([math.exp(lr)]), x, y, nonneg)[2][0]),
            bounds=(log_rates[lo_idx], log_rates[hi_idx]),
            method="bounded",
            options={"xatol": 1e-4},
        )
        if res.fun <= sse[best]:
            log_rate = float(res.x)
        rate = math.exp(log_rate)
        a_arr, c_arr, _ = self._sse(np.array([rate]), x, y, nonneg)
        return float(a_arr[0]), rate, float(c_arr[0])

    @staticmethod
    def _sse(
        rates: FloatArray, x: FloatArray, y: FloatArray, nonneg: bool
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Least-squares (a, c) for each rate, with c >= 0 if ``nonneg``; returns (a, c, sse)."""
        e = np.exp(-np.outer(rates, x))  # (R, n)
        n = float(len(x))
        se, see = e.sum(axis=1), (e * e).sum(axis=1)
        sy, sey = float(y.sum()), e @ y
        det = n * see - se * se
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.where(det > 1e-12 * n * see, (n * sey - se * sy) / det, 0.0)
            c = np.where(det > 1e-12 * n * see, (see * sy - se * sey) / det, sy / n)
        if nonneg:
            clip = c < 0
            if np.any(clip):
                a = np.where(clip, np.where(see > 0, sey / np.where(see > 0, see, 1.0), 0.0), a)
                c = np.where(clip, 0.0, c)
        resid = y[None, :] - (a[:, None] * e + c[:, None])
        sse = np.sum(resid * resid, axis=1)
        sse = np.where(np.isfinite(sse), sse, np.inf)
        return a, c, sse
