"""Selection among evaluated learning rates: the one rule for which rate a stage exploits.

Used by the trials phase (which candidate is best so far, is a trial worth finishing), by the
exploit phase (which rate to exploit, and which next after a rollback) and by
:meth:`~autolrs.core.search.BayesSearcher.best`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import numpy as np

__all__ = ["PosteriorMean", "Scored", "fallback_lr", "select"]


class Scored(Protocol):
    """Anything with a learning rate and a finite score (lower is better)."""

    @property
    def lr(self) -> float: ...

    @property
    def value(self) -> float | None: ...


S = TypeVar("S", bound=Scored)

PosteriorMean = Callable[[Sequence[float]], "np.ndarray | None"]
"""The searcher's posterior mean at some learning rates (None: the searcher has no model)."""


def select(
    healthy: Sequence[S],
    *,
    prefer_larger_within: float | None = None,
    posterior_mean: PosteriorMean | None = None,
    incumbent: float | None = None,
    keep_incumbent_within: float | None = None,
) -> S:
    """The best of ``healthy`` (rates that did not diverge, each with a finite score).

    Args:
        healthy: The candidates, in the order they were evaluated (ties go to the earliest).
        prefer_larger_within: The largest rate whose score lies within this fraction of the
            lowest score (relative) wins instead of the lowest: short trials favour small rates,
            whose lower noise reads as progress (``Config.prefer_larger_within``).
        posterior_mean: Rank by the searcher's posterior mean instead of the observed scores
            (``Config.select="posterior"``), once there are at least 3 candidates.
        incumbent: The rate training held before this search (with ``keep_incumbent_within``).
        keep_incumbent_within: The incumbent wins unless another candidate's score beats it by
            more than this fraction (relative): moving away from a rate that trains well needs
            evidence beyond a short trial's noise (``Config.keep_incumbent_within``).

    Raises:
        ValueError: If ``healthy`` is empty.
    """
    if not healthy:
        raise ValueError("select() needs at least one candidate that did not diverge")
    if posterior_mean is not None and len(healthy) >= 3:
        mean = posterior_mean([c.lr for c in healthy])
        if mean is not None:
            return healthy[int(np.argmin(mean))]
    best = min(healthy, key=_score)
    if incumbent is not None and keep_incumbent_within is not None:
        return _incumbent_or(best, healthy, incumbent, keep_incumbent_within)
    if prefer_larger_within is None:
        return best
    bound = _score(best) + prefer_larger_within * abs(_score(best))
    return max((c for c in healthy if _score(c) <= bound), key=lambda c: c.lr)


def _incumbent_or(best: S, healthy: Sequence[S], incumbent: float, within: float) -> S:
    """The incumbent when it scores within ``within`` (relative) of ``best``, else ``best``."""
    held = [c for c in healthy if c.lr == incumbent]
    if held and _score(held[0]) <= _score(best) + within * abs(_score(best)):
        return held[0]
    return best


def fallback_lr(tried: Sequence[float]) -> float:
    """A learning rate well below everything tried (when every candidate diverged)."""
    return min(tried) / 10.0


def _score(candidate: Scored) -> float:
    value = candidate.value
    if value is None:
        raise ValueError(f"candidate at lr={candidate.lr!r} has no score; it cannot be selected")
    return value
