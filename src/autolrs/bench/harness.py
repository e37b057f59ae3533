"""Running one method on one workload with one seed, charging every step it takes.

The harness scores the model on the workload's score split every ``budget / 50`` steps (not
charged), records each step's learning rate, and times the method's own work (charged): its
optimizer steps, trials and validation calls, but not the harness's scoring.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from autolrs.bench.workloads.base import Batch, Workload
from autolrs.events import json_restore as _json_restore
from autolrs.events import json_safe as _json_safe

__all__ = ["RunContext", "RunResult", "eval_steps", "median_curve", "steps_to_target"]


def eval_steps(budget: int, points: int = 50) -> list[int]:
    """The steps at which the harness scores: every ``budget / points`` steps."""
    return sorted({max(1, int(round(budget * k / points))) for k in range(1, points + 1)})


def median_curve(curves: list[list[tuple[int, float]]]) -> list[tuple[int, float]]:
    """The median over runs of the score at each scoring step (steps common to all runs)."""
    if not curves:
        return []
    common = set.intersection(*(set(s for s, _ in c) for c in curves))
    by_step = [dict(c) for c in curves]
    out = []
    for step in sorted(common):
        values = sorted(d[step] for d in by_step)
        n = len(values)
        mid = values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1] + values[n // 2])
        out.append((step, mid))
    return out


def steps_to_target(curve: list[tuple[int, float]], target: float | None) -> float:
    """First scored step whose score is at or below ``target`` (inf if never)."""
    if target is None:
        return math.inf
    for step, score in curve:
        if math.isfinite(score) and score <= target:
            return float(step)
    return math.inf


@dataclass
class RunResult:
    """The outcome of one run.

    Attributes:
        workload, method, seed: What ran.
        budget: Steps allowed.
        steps: Steps the method took (trials and range-test sweeps included).
        curve: ``(step, score loss)`` at each scoring point; in a trial, the last committed score.
        accuracy: ``(step, accuracy)`` likewise (empty without accuracy).
        seconds: ``(step, charged seconds)`` at each scoring point.
        lrs: ``(step, lr)`` at each change of the learning rate.
        final_score, final_accuracy: Score at the last scoring point.
        target, steps_to_target, seconds_to_target: Against the workload's target.
        diverged: Whether the method produced a non-finite training loss it could not handle.
        seconds_per_step: Charged seconds per step.
        extra: Method-specific facts (autolrs' decisions and overheads, the LR finder's pick).
    """

    workload: str
    method: str
    seed: int
    budget: int
    steps: int = 0
    curve: list[tuple[int, float]] = field(default_factory=list)
    accuracy: list[tuple[int, float]] = field(default_factory=list)
    seconds: list[tuple[int, float]] = field(default_factory=list)
    lrs: list[tuple[int, float]] = field(default_factory=list)
    final_score: float = math.inf
    final_accuracy: float | None = None
    target: float | None = None
    steps_to_target: float = math.inf
    seconds_to_target: float = math.inf
    diverged: bool = False
    seconds_per_step: float = math.nan
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict (inf/nan become strings: :func:`autolrs.events.json_safe`)."""
        return _json_safe(asdict(self))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunResult:
        """Inverse of :meth:`to_json`."""
        data = _json_restore(dict(data))
        for key in ("curve", "accuracy", "seconds", "lrs"):
            data[key] = [tuple(x) for x in data.get(key, [])]
        return cls(**data)


_MAX_LR_POINTS = 300


class BudgetSpent(Exception):
    """Raised inside a method when its step budget is spent."""


class RunContext:
    """What a method sees: the workload, its seed and budget, and :meth:`step` to report.

    Args:
        workload: The workload.
        method: The method's name.
        seed: Seed of the initial weights, the batch order and any search.
        budget: Steps the method may take.
        target: The workload's target score (None: steps to target are not computed).
        points: Scoring points per budget.
    """

    def __init__(
        self, workload: Workload, method: str, seed: int, budget: int, target: float | None, points: int = 50
    ) -> None:
        self.workload = workload
        self.seed = seed
        self.budget = budget
        self.result = RunResult(workload.name, method, seed, budget, target=target)
        self._eval_at = set(eval_steps(budget, points))
        self._committed_score: tuple[float, float | None] = (math.inf, None)
        self._charged = 0.0
        self._clock = time.perf_counter()
        self._last_lr: float | None = None
        self._last_eval = max(self._eval_at) if self._eval_at else 0
        self.prepare_eval: Callable[[], None] | None = None
        self.finish_eval: Callable[[], None] | None = None
        self.start_lr: float | None = None
        """The rate the optimizer is built with where a method takes one (None: the workload's
        default). The start-rate sweep sets it to the tuned cosine's rate times a factor."""

    # ------------------------------------------------------------------ helpers for methods
    def model(self) -> nn.Module:
        """The workload's model with this seed's initial weights."""
        return self.workload.model(self.seed)

    def batches(self) -> Iterator[Batch]:
        """This seed's endless training batches (the same for every method)."""
        return self.workload.batches(self.seed)

    @contextmanager
    def uncharged(self) -> Iterator[None]:
        """Time spent inside is not charged to the method."""
        self._charge()
        try:
            yield
        finally:
            self._clock = time.perf_counter()

    def _charge(self) -> None:
        now = time.perf_counter()
        self._charged += now - self._clock
        self._clock = now

    # ------------------------------------------------------------------ the protocol
    def add_charge(self, seconds: float) -> None:
        """Charges work done inside an uncharged section (e.g. BatchNorm recalibration)."""
        self._charged += seconds

    def skip(self, steps: int, lrs: list[float] | None = None) -> None:
        """Counts ``steps`` optimizer steps taken outside :meth:`step` (e.g. an LR sweep whose
        model is then reset): scoring points inside them carry the last committed score."""
        res = self.result
        for i in range(steps):
            res.steps += 1
            if lrs is not None and i < len(lrs):
                res.lrs.append((res.steps, float(lrs[i])))
            if res.steps in self._eval_at:
                self._charge()
                self._score(None, committed=False)  # type: ignore[arg-type]
                self._clock = time.perf_counter()
        self._last_lr = None

    def step(
        self,
        model: nn.Module,
        loss: torch.Tensor | float,
        lr: float,
        *,
        committed: bool = True,
        survives: bool = False,
    ) -> None:
        """Reports one optimizer step; scores the model at scoring points.

        Args:
            model: The model (scored as it is when ``committed``).
            loss: The step's training loss.
            lr: The learning rate the step used.
            committed: False while the model is in a trial state that may be rolled back
                (the last committed score is then carried).
            survives: The method handles non-finite losses itself (autolrs rolls back).

        Raises:
            BudgetSpent: When the budget is spent, or the training loss is non-finite and
                ``committed`` (the method diverged).
        """
        res = self.result
        res.steps += 1
        value = float(loss)
        if self._last_lr is None or lr != self._last_lr:
            res.lrs.append((res.steps, float(lr)))
            self._last_lr = float(lr)
        if res.steps in self._eval_at:
            self._charge()
            self._score(model, committed)
            self._clock = time.perf_counter()
        if committed and not survives and not math.isfinite(value):
            res.diverged = True
            raise BudgetSpent
        if res.steps >= self.budget:
            raise BudgetSpent

    def _score(self, model: nn.Module, committed: bool) -> None:
        res = self.result
        if committed:
            if self.prepare_eval is not None:
                self.prepare_eval()
            metrics = self.workload.evaluate(model, "score")
            if res.steps >= self._last_eval:
                # The tuning holdout at the end: how a tuned baseline's rate is chosen.
                res.extra["final_holdout"] = self.workload.evaluate(model, "holdout")["loss"]
            if self.finish_eval is not None:
                self.finish_eval()
            score = metrics["loss"] if math.isfinite(metrics["loss"]) else math.inf
            self._committed_score = (score, metrics.get("accuracy"))
        score, accuracy = self._committed_score
        res.curve.append((res.steps, score))
        if accuracy is not None:
            res.accuracy.append((res.steps, accuracy))
        res.seconds.append((res.steps, self._charged))

    def finalize(self) -> RunResult:
        """Completes the result (scores the remaining points of a diverged run as inf)."""
        self._charge()
        res = self.result
        if res.diverged:
            for step in sorted(s for s in self._eval_at if s > res.steps):
                res.curve.append((step, math.inf))
        if res.curve:
            res.final_score = res.curve[-1][1]
        if res.accuracy:
            res.final_accuracy = res.accuracy[-1][1] if not res.diverged else None
        res.steps_to_target = steps_to_target(res.curve, res.target)
        if math.isfinite(res.steps_to_target):
            res.seconds_to_target = dict(res.seconds).get(int(res.steps_to_target), math.inf)
        res.seconds_per_step = self._charged / max(res.steps, 1)
        res.extra["charged_seconds"] = self._charged
        if len(res.lrs) > _MAX_LR_POINTS:  # keep files small: a smooth schedule needs few points
            stride = len(res.lrs) / _MAX_LR_POINTS
            keep = sorted({int(i * stride) for i in range(_MAX_LR_POINTS)} | {len(res.lrs) - 1})
            res.lrs = [res.lrs[i] for i in keep]
        return res


def run_method(
    fn: Callable[[RunContext], None],
    workload: Workload,
    method: str,
    seed: int,
    *,
    budget: int | None = None,
    target: float | None = None,
    points: int = 50,
    threads: int | None = None,
) -> RunResult:
    """Runs ``fn`` under a fresh :class:`RunContext` and returns its result.

    Args:
        threads: Torch intra-op threads for the run (None leaves the setting alone).
    """
    if threads is not None:
        torch.set_num_threads(threads)
    ctx = RunContext(workload, method, seed, budget or workload.budget, target, points)
    try:
        fn(ctx)
    except BudgetSpent:
        pass
    return ctx.finalize()


def write_jsonl(path: str, results: list[RunResult], header: dict[str, Any] | None = None) -> None:
    """Appends results (and an optional header line) to a JSONL file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        if header is not None:
            f.write(json.dumps({"header": _json_safe(header)}) + "\n")
        for r in results:
            f.write(json.dumps(r.to_json()) + "\n")


def read_jsonl(path: str) -> list[RunResult]:
    """Reads the run results of a JSONL file (header lines are skipped)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith('{"header"'):
                out.append(RunResult.from_json(json.loads(line)))
    return out
