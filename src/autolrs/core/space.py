"""The search space: the learning-rate interval stages search, and the rules that move it.

* the **range**, given by the user or found by the range test (then ``auto``: a guess that may
  move, where a given range is a bound);
* the **ceiling** (``cap``): no later search reaches half a rate that diverged in the range test
  or made a stage worse;
* the **trust region** around the previous stage's rate (``Config.trust_region``);
* the **shifts**: a committed rate at an edge moves a found range that way
  (``Config.edge_shift``), and a stage whose every candidate diverged moves it below them.

Each rule that moves the range keeps its width in log space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["SearchSpace", "trust_region"]


def trust_region(low: float, high: float, center: float, factor: float) -> tuple[float, float]:
    """``[center / factor, center * factor]`` clipped to ``[low, high]`` (never empty)."""
    lo, hi = max(low, center / factor), min(high, center * factor)
    if lo >= hi:  # the previous choice lies outside the range: search next to the nearest end
        if center <= low:
            lo, hi = low, min(high, low * factor * factor)
        else:
            lo, hi = max(low, high / (factor * factor)), high
    return lo, hi


@dataclass
class SearchSpace:
    """Where stages search.

    Attributes:
        range: ``[low, high]`` (None until the range test has found it).
        cap: The lowest rate known to break training (None: none known); later searches stay
            below half of it.
        auto: Whether the range test found the range (then edge shifts may move it).
        informative: False when the range test's sweep neither diverged nor lowered the loss
            (a pre-trained model): its lowest point is noise, so the range's low end is no
            bound on the rate (only ``cap`` is known).
        placed: Whether the range test's loss fell clearly below its start, so that its pick
            says where rates train (``Config.expand_from_range`` starts the first search below
            it); False for a given range and for a sweep whose lowest point is noise.
    """

    range: list[float] | None = None
    cap: float | None = None
    auto: bool = False
    informative: bool = True
    placed: bool = False

    @property
    def bounds(self) -> tuple[float, float]:
        """``(low, high)``.

        Raises:
            RuntimeError: If no range is known yet.
        """
        if self.range is None:
            raise RuntimeError("no search range is known yet: the range test has not ended")
        low, high = self.range
        return low, high

    def found(self, low: float, high: float, cap: float, informative: bool = True,
              placed: bool = False) -> None:
        """The range test found ``[low, high]``; ``cap`` is where its sweep diverged;
        ``informative``: whether the sweep's lowest point means anything; ``placed``: whether
        its loss fell clearly (see the attribute)."""
        self.range = [low, high]
        self.cap = cap
        self.auto = True
        self.informative = informative
        self.placed = placed

    @property
    def floor(self) -> float | None:
        """The lowest rate worth training at: the range's low end, when the range is known and
        means something (None otherwise)."""
        if self.range is None or not self.informative:
            return None
        return self.range[0]

    @property
    def ceiling(self) -> float:
        """The highest rate worth training at: half the lowest rate known to break training."""
        return math.inf if self.cap is None else self.cap / 2.0

    def clip(self, lr: float) -> float:
        """``lr`` moved into ``[floor, ceiling]``: the nearest usable rate, so that the rate
        trained at moves smoothly with the optimizer's (no jump to another end)."""
        floor = self.floor
        if floor is not None and lr < floor:
            lr = floor
        return min(lr, self.ceiling)

    def pick(self, sweep_top: float) -> float:
        """The rate to hold when the optimizer's own is unusable: the top of a range found by
        a sweep that diverged below ``sweep_top`` (its lowest-loss rate times
        ``Config.range_headroom``, capped below divergence: an LR finder's pick), else the
        range's geometric middle (a sweep that never diverged does not say where the top is
        safe; nor does a range the user gave).

        Raises:
            RuntimeError: If no range is known yet.
        """
        low, high = self.bounds
        swept_to_divergence = self.auto and self.cap is not None and self.cap < sweep_top
        return high if swept_to_divergence else math.sqrt(low * high)

    def start_rate(
        self, optimizer_lr: float | None, sweep_top: float, *, smooth: bool
    ) -> float | None:
        """The rate to start training at from the optimizer's: that rate when usable
        (:meth:`admits`); else, with ``smooth``, the nearest usable rate (:meth:`clip`: the
        result moves smoothly with the optimizer's rate), or :meth:`pick`. Without a range:
        the optimizer's rate.
        """
        if self.range is None or (optimizer_lr is not None and self.admits(optimizer_lr)):
            return optimizer_lr
        if smooth and optimizer_lr is not None:
            return self.clip(optimizer_lr)
        return self.pick(sweep_top)

    def why_not(self, lr: float) -> str | None:
        """Why ``lr`` is not a rate to train at (None: it is; :meth:`admits`)."""
        floor = self.floor
        if floor is not None and lr < floor:
            where = "the range the range test found" if self.auto else "the lr_range given"
            return f"below {where} ({floor:.3g} and up)"
        if lr > self.ceiling:
            return f"above half the rate where the range test diverged ({self.cap:.3g})"
        return None

    def admits(self, lr: float) -> bool:
        """Whether ``lr`` is a rate to train at: not below the range (when one is known) and
        below half the lowest rate known to break training."""
        floor = self.floor
        if floor is not None and lr < floor:
            return False
        return lr <= self.ceiling

    def around(self, center: float | None, factor: float | None) -> tuple[float, float]:
        """The range, narrowed to the trust region around ``center`` when both are given."""
        low, high = self.bounds
        if factor is not None and center is not None:
            return trust_region(low, high, center, factor)
        return low, high

    def lower_ceiling(self, failed_lr: float) -> bool:
        """Keeps later searches below half of ``failed_lr`` (a rate that made a stage worse).

        Returns:
            Whether the range moved.
        """
        low, high = self.bounds
        self.cap = failed_lr if self.cap is None else min(self.cap, failed_lr)
        if failed_lr / 2.0 < high:
            self._move(low, high, failed_lr / 2.0)
            return True
        return False

    def shift_at_edge(self, lr: float, factor: float | None, *, diverged_above: bool) -> bool:
        """With ``Config.edge_shift``: a committed rate at an edge of a found range moves it.

        Up (capped below half the ceiling) when ``lr`` lies in the top tenth of the range's
        log width and no rate above it diverged; down when in the bottom tenth.

        Returns:
            Whether the range moved.
        """
        if factor is None or self.range is None or not self.auto:
            return False  # a range the user gave is a bound, not a guess
        low, high = self.bounds
        position = math.log(lr / low) / math.log(high / low)
        if position >= 0.9:
            if diverged_above:
                return False  # the edge is where training breaks: stay
            assert self.cap is not None  # a found range always has one
            new_high = min(high * factor, self.cap / 2.0)
            if new_high <= high:
                return False
        elif position <= 0.1:
            new_high = high / factor
        else:
            return False
        self._move(low, high, new_high)
        return True

    def below(self, lr: float) -> None:
        """Every candidate diverged and ``lr`` is the fallback: search up to ten times it."""
        low, high = self.bounds
        width = high / low
        self.range = [lr * 10.0 / width, lr * 10.0]

    def _move(self, low: float, high: float, new_high: float) -> None:
        self.range = [new_high * low / high, new_high]

    # ------------------------------------------------------------------ state
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state."""
        return {
            "range": None if self.range is None else list(self.range),
            "cap": self.cap,
            "auto": self.auto,
            "informative": self.informative,
            "placed": self.placed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpace:
        """Rebuilds :meth:`to_dict`'s output."""
        rng = data["range"]
        return cls(
            None if rng is None else list(rng),
            data["cap"],
            bool(data["auto"]),
            bool(data.get("informative", True)),
            bool(data.get("placed", False)),
        )
