"""The expanding search: from the held rate outward, one factor at a time, while it pays.

The optimizer's rate is a hint, not the answer: it may lie two decades below the rate that
trains best, or one above. A search over the whole range found by the range test costs too many
trials (its top may lie 1000x above the right rate), and a short trial's score is noisy. So the
search starts at the rate training holds (the centre) and steps outward by ``factor``:

1. the centre, then one step up (``centre * factor``);
2. up again while each step beats its inner neighbour: by more than ``margin`` (relative), or,
   when a ``reference`` (the loss where the trials start) is known, by more than a quarter of
   the neighbour's progress below it, whichever is less: at rates far too small every trial
   barely moves the loss (2.3026 to 2.2987 on digits), yet a step that makes three times the
   progress is no noise;
3. if the first step up did not beat the centre, one step down, and down again while each step
   beats its inner neighbour (from near the initial model also while the best score so far
   does not beat it beyond noise: the lowest such rate wins, so the walk finds where they
   end); a loss curve of the rate has one valley, so when a step up won
   there is nothing to find below (a later search, from a trained model, never steps down:
   there a short trial favours small rates, on fashion-cnn 0.0316 over 0.1 by 2.6 %, and the
   guards bring the rate down where it breaks training);
4. no step up from a centre that breaks training itself;
5. never more than ``max_steps`` steps either way (but for one probe upward, below), nor outside
   ``[low, high]`` (the caller keeps ``high`` below half of a rate known to break training).

Far from the valley a step changes the score by far more than the noise, so the search walks
there in a few trials; near it the steps tie and it stops (from near the initial model, walking
down, only where the ties end). Which of the tried rates wins is the
searcher's :meth:`ExpandSearcher.choose` (from near the initial model the lowest rate the best
does not beat beyond noise; later the best, unless it does not beat the centre beyond noise),
among those not at the edge of stability (:meth:`ExpandSearcher.at_edge`). A search from near
the initial model whose every rate tried broke training or lies at its edge steps on below the
lowest (within the reach), so that some rate may win.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from autolrs.core.search import Searcher

__all__ = ["PROGRESS_SHARE", "ExpandSearcher", "grid_point"]


class _Scored(Protocol):
    lr: float
    value: Any


S = TypeVar("S", bound=_Scored)

_EDGE = 1e-9  # relative slack when comparing a step with the interval's ends
EDGE_STEPS = 2  # a rate this many steps or fewer below one that broke training does not win
PROGRESS_SHARE = 0.25  # a step beats its neighbour with this much more progress (see above)


def grid_point(rate: float, factor: float, low: float | None = None,
               high: float | None = None) -> float:
    """The point of the grid ``factor ** k`` (``k`` an integer) nearest to ``rate`` in log,
    moved one point inward when it falls outside ``[low, high]`` (the rate itself when no point
    of the grid lies there): with ``factor`` sqrt(10), 1e-3, 3.16e-3, 1e-2, ... The first search
    starts there, so that the rates it tries depend on the decade of the optimizer's rate, not
    on its digits.

    Example:
        >>> round(grid_point(0.05, 10.0**0.5), 4)
        0.0316
        >>> round(grid_point(0.07, 10.0**0.5), 4)
        0.1
        >>> round(grid_point(0.06, 10.0**0.5, high=0.07), 4)
        0.0316
    """
    point = factor ** round(math.log(rate) / math.log(factor))
    if math.isclose(point, rate, rel_tol=1e-9):
        point = rate  # on the grid already: no rounding error in the last digit
    if high is not None and point > high * (1 + _EDGE):
        point /= factor
    if low is not None and point < low * (1 - _EDGE):
        point *= factor
    inside = (low is None or point >= low * (1 - _EDGE)) and (
        high is None or point <= high * (1 + _EDGE))
    return point if inside else rate


class ExpandSearcher(Searcher):
    """Steps outward from ``center`` by ``factor`` while each step beats its inner neighbour.

    Args:
        center: The rate training holds: the first candidate.
        low: The lowest rate to try.
        high: The highest rate to try.
        factor: The ratio of neighbouring candidates (> 1).
        max_steps: Steps at most either way (a search from near the initial model may probe
            one more upward, :meth:`_probes`; the probe never wins).
        margin: By how much (relative) a step must beat its inner neighbour to go on.
        reference: The loss where every trial starts, on the scale of the told values (None:
            unknown; only ``margin`` applies).
        progress_share: A step also beats its neighbour with this much more progress below
            ``reference`` (None: only ``margin``). For a search from near the initial model,
            where rates far too small all end at the reference; later, a short trial barely
            moves the loss at any rate and tiny differences are noise.
        up_only: Never step down (a later search: a short trial from a trained model favours
            small rates, so lower rates are left to the guards).

    Example:
        >>> s = ExpandSearcher(0.01, 1e-4, 1.0, factor=10.0)
        >>> s.tell(s.ask(), 1.0); s.ask()
        0.1
        >>> s.tell(0.1, 0.5); s.ask()
        1.0
        >>> s.tell(1.0, 0.6); s.exhausted
        True
    """

    kind = "expand"

    def __init__(
        self,
        center: float,
        low: float,
        high: float,
        *,
        factor: float = math.sqrt(10.0),
        max_steps: int = 4,
        margin: float = 0.02,
        reference: float | None = None,
        progress_share: float | None = PROGRESS_SHARE,
        up_only: bool = False,
    ) -> None:
        if not (center > 0 and factor > 1 and max_steps >= 1 and margin >= 0):
            raise ValueError(
                f"ExpandSearcher needs center > 0, factor > 1, max_steps >= 1, margin >= 0; got "
                f"{center!r}, {factor!r}, {max_steps!r}, {margin!r}"
            )
        self.center, self.low, self.high = float(center), float(low), float(high)
        self.factor, self.max_steps, self.margin = float(factor), int(max_steps), float(margin)
        known = reference is not None and math.isfinite(reference)
        self.reference = float(reference) if known else None  # type: ignore[arg-type]
        self.progress_share, self.up_only = progress_share, bool(up_only)
        self.values: dict[int, float | None] = {}

    @property
    def from_start(self) -> bool:
        """Whether this is a search from near the initial model: both ways, progress counting
        (``progress_share`` set, not ``up_only``)."""
        return self.progress_share is not None and not self.up_only

    # ------------------------------------------------------------------ positions
    def rate(self, offset: int) -> float:
        """The candidate ``offset`` steps from the centre."""
        return self.center * self.factor**offset

    def _offset(self, lr: float) -> int:
        return int(round(math.log(lr / self.center) / math.log(self.factor)))

    def _inside(self, offset: int) -> bool:
        return not self._beyond_reach(offset) and self._in_interval(offset)

    def _in_interval(self, offset: int) -> bool:
        return self.low * (1 - _EDGE) <= self.rate(offset) <= self.high * (1 + _EDGE)

    def _beyond_reach(self, offset: int) -> bool:
        return abs(offset) > self.max_steps

    def _beats(self, outer: int, inner: int) -> bool:
        """Whether the step at ``outer`` beat its inner neighbour by more than the margin."""
        return self.better(self.values.get(outer), self.values.get(inner))

    def better(self, a: float | None, b: float | None) -> bool:
        """Whether the score ``a`` beats ``b`` beyond noise: by more than ``margin`` (relative),
        or by more than :data:`PROGRESS_SHARE` of ``b``'s progress below the reference,
        whichever is less (None: diverged)."""
        if a is None:
            return False
        if b is None:
            return True
        needed = self.margin * abs(b)
        if self.reference is not None and self.progress_share is not None:
            needed = min(needed, self.progress_share * max(self.reference - b, 0.0))
        return a < b - needed

    def choose(self, candidates: Sequence[S]) -> S:
        """The winner among ``candidates`` (each with ``lr`` and ``value``; none diverged).

        A search from near the initial model (:attr:`from_start`) takes the lowest rate whose
        score the best does not beat beyond noise (:meth:`better`): there a short trial shows
        how fast a rate makes early progress, which stops growing near the right rate while the
        risk keeps growing (on the char transformer 2.15e-3 and 6.8e-3 tied within 0.4 %, and
        6.8e-3 held ended 16 % behind), and the optimizer's rate, a hint, gets no say. A later
        search keeps the best score, unless it does not beat the centre beyond noise: then the
        centre, the rate training held, stays (from a trained model a short trial favours small
        rates). A probe beyond the reach (:meth:`_probes`) is left out unless nothing else is
        left.

        Raises:
            ValueError: If ``candidates`` is empty.
        """
        if not candidates:
            raise ValueError("choose() needs at least one candidate")
        reached = [c for c in candidates if not self._beyond_reach(self._offset(c.lr))]
        candidates = reached or list(candidates)
        best = min(candidates, key=lambda c: c.value)
        if self.from_start:
            ties = [c for c in candidates if not self.better(best.value, c.value)]
            return min(ties, key=lambda c: c.lr)
        held = [c for c in candidates if math.isclose(c.lr, self.center, rel_tol=1e-9)]
        if held and not self.better(best.value, held[0].value):
            return held[0]
        return best

    def broke(self, lr: float) -> bool:
        """Whether the candidate at ``lr`` broke training (see :meth:`_broke`)."""
        return self._broke(self._offset(lr))

    def _broke(self, offset: int) -> bool:
        """Whether the candidate at ``offset`` diverged or ended clearly above the reference
        (by more than the margin): it breaks training. (A rate far too small ends *at* the
        reference: it is not broken, only slow.)"""
        value = self.values.get(offset, math.nan)
        if value is None:
            return True
        ref = self.reference
        return ref is not None and value > ref + self.margin * abs(ref)

    def at_edge(self, lr: float) -> bool:
        """Whether ``lr`` lies within :data:`EDGE_STEPS` steps below a rate that broke training:
        at the edge of stability a short trial can show. Such a rate tends to break over a
        longer run (on digits, SGD at 0.316 won its 10-step trial next to a failing 1.0, then
        broke the model within 50 steps; the tuned rate is 0.1), so it does not win."""
        return self._at_edge(self._offset(lr))

    def _at_edge(self, offset: int) -> bool:
        return any(self._broke(offset + k) for k in range(1, EDGE_STEPS + 1))

    def _walk(self, sign: int) -> int | None:
        """The next step in direction ``sign``, or None when that direction is finished."""
        told = [k for k in self.values if k * sign > 0]
        last = max(told, key=abs, default=0)
        if last != 0 and not self._beats(last, last - sign) and not self._ties_best(last, sign):
            return None
        nxt = last + sign
        if nxt in self.values:
            return None
        if self._inside(nxt) or (sign > 0 and self._probes(nxt)):
            return nxt
        return None

    def _ties_best(self, offset: int, sign: int) -> bool:
        """Whether the walk down from near the initial model goes on past ``offset``, which the
        best score so far does not beat beyond noise: the winner is the lowest such rate
        (:meth:`choose`), so the walk looks for where they end. On the char transformer from
        10x its tuned rate, 2.15e-2 and 6.8e-3 tied (3.445, 3.432), the walk stopped and 6.8e-3
        won (ending at 2.57); 2.15e-3, one step lower, ties as well and ends near 2.1."""
        if sign > 0 or not self.from_start or self.reference is None:
            return False  # (without the start's loss every rate far too small ties)
        best = min((v for v in self.values.values() if v is not None), default=None)
        return best is not None and not self.better(best, self.values.get(offset))

    def _probes(self, offset: int) -> bool:
        """Whether ``offset``, one step beyond the reach upward, is tried as a probe: in a
        search from near the initial model whose upward walk reached its last step still
        improving, so that it has not seen where rates break. A probe only shows whether it
        breaks training (then the rates at its edge do not win, :meth:`at_edge`); it never
        wins itself (:meth:`choose`). From 1/10 of the tuned rate on digits the walk reached
        1.0 still improving and held it (the net broke later, three seeds of five); a probe
        at 3.16 breaks, and 0.1 wins."""
        return self.from_start and offset == self.max_steps + 1 and self._in_interval(offset)

    def next_offset(self) -> int | None:
        """Where the next candidate lies (None: the search is over)."""
        if 0 not in self.values:
            return 0
        if not self._broke(0) or 1 in self.values:
            up = self._walk(+1)
            if up is not None:
                return up
        if self.up_only or (1 in self.values and self._beats(1, 0)):
            down = None  # the valley lies above the centre (or below is left to the guards)
        else:
            down = self._walk(-1)
        if down is None and self.from_start and not self._any_usable():
            down = self._below_edge()
        return down

    def _any_usable(self) -> bool:
        """Whether some tried rate may win: it neither broke training nor lies at the edge."""
        return any(not self._broke(k) and not self._at_edge(k) for k in self.values)

    def _below_edge(self) -> int | None:
        """One step below the lowest rate tried, when every rate tried broke training or lies
        at its edge (a search from near the initial model must end with a rate that may win:
        from 10x above the tuned rate on digits, 1.0 won its trial next to a failing 3.16 and
        was held, and broke the net later); None outside the reach. From there the walk down
        goes on as usual (:meth:`_walk`)."""
        nxt = min(self.values) - 1
        return nxt if self._inside(nxt) else None

    # ------------------------------------------------------------------ the Searcher protocol
    @property
    def exhausted(self) -> bool:
        return self.next_offset() is None

    def ask(self) -> float:
        offset = self.next_offset()
        if offset is None:
            raise RuntimeError("the expanding search is over: check `exhausted` before asking")
        return self.rate(offset)

    def tell(self, lr: float, value: float | None, *, diverged: bool = False) -> None:
        ok = not diverged and value is not None and math.isfinite(value)
        self.values[self._offset(lr)] = float(value) if ok else None  # type: ignore[arg-type]

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "center": self.center,
            "low": self.low,
            "high": self.high,
            "factor": self.factor,
            "max_steps": self.max_steps,
            "margin": self.margin,
            "reference": self.reference,
            "progress_share": self.progress_share,
            "up_only": self.up_only,
            "values": [[k, v] for k, v in sorted(self.values.items())],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.center, self.low, self.high = state["center"], state["low"], state["high"]
        self.factor, self.max_steps = state["factor"], state["max_steps"]
        self.margin, self.reference = state["margin"], state.get("reference")
        self.progress_share = state.get("progress_share", PROGRESS_SHARE)
        self.up_only = bool(state.get("up_only", False))
        self.values = {int(k): v for k, v in state["values"]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ExpandSearcher:
        """A searcher rebuilt from :meth:`state_dict`'s output."""
        searcher = cls(state["center"], state["low"], state["high"])
        searcher.load_state_dict(state)
        return searcher
