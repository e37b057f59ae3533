"""The methods compared by ``autolrs bench``: one configuration each, shared by all workloads.

A method is a function of a :class:`~autolrs.bench.harness.RunContext` that trains the
workload's model and reports every optimizer step with ``ctx.step``. Adding one is one function
and a :func:`register` line.
"""

from __future__ import annotations

import contextlib
import io
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from autolrs.bench.autolrs_runner import run_autolrs
from autolrs.bench.harness import BudgetSpent, RunContext
from autolrs.bench.tuned import COSINE_PREFIX, is_cosine_grid
from autolrs.core.config import DELETED_FIELDS, Config

__all__ = [
    "METHODS",
    "MethodSpec",
    "cosine_factor",
    "cosine_method",
    "cosine_name",
    "is_cosine_grid",
    "register",
    "resolve_method",
    "split_start_scale",
    "start_scaled_name",
    "wsd_factor",
]


@dataclass(frozen=True)
class MethodSpec:
    """A registered method.

    Attributes:
        name: Registry name.
        run: ``ctx -> None``.
        description: One line for reports.
        tuned: True for the oracle (reported apart from the no-tuning methods).
        requires: Modules it imports (from the ``bench`` extra).
    """

    name: str
    run: Callable[[RunContext], None]
    description: str
    tuned: bool = False
    requires: tuple[str, ...] = ()


METHODS: dict[str, MethodSpec] = {}


def register(
    name: str, description: str, *, tuned: bool = False, requires: tuple[str, ...] = ()
) -> Callable[[Callable[[RunContext], None]], Callable[[RunContext], None]]:
    """Decorator adding a method to :data:`METHODS`."""

    def wrap(fn: Callable[[RunContext], None]) -> Callable[[RunContext], None]:
        METHODS[name] = MethodSpec(name, fn, description, tuned, requires)
        return fn

    return wrap


# --------------------------------------------------------------------------- schedules
def cosine_factor(total: int, warmup: int = 0) -> Callable[[int], float]:
    """Linear warm-up over ``warmup`` steps, then cosine decay to zero at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def wsd_factor(total: int, warmup: int, cooldown: float = 0.2) -> Callable[[int], float]:
    """Warm-up, stable, then a linear cool-down to zero over the last ``cooldown`` share."""
    decay_start = int(round(total * (1.0 - cooldown)))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if step < decay_start:
            return 1.0
        return max(0.0, (total - step) / max(1, total - decay_start))

    return factor


def _warmup(budget: int) -> int:
    return max(1, int(round(0.02 * budget)))


def _effective_lr(group: dict[str, Any]) -> float:
    """The step size an adaptive-LR optimizer really uses (d * lr for D-Adaptation/Prodigy)."""
    return float(group["lr"]) * float(group.get("d", 1.0))


def _train_plain(
    ctx: RunContext,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    factor: Callable[[int], float] | None,
    steps: int | None = None,
    batches: Iterator[Any] | None = None,
) -> None:
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, factor) if factor is not None else None
    batches = batches if batches is not None else ctx.batches()
    taken = 0
    for batch in batches:
        lr = _effective_lr(opt.param_groups[0])
        loss = ctx.workload.loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if schedule is not None:
            schedule.step()
        ctx.step(model, loss.detach(), lr)
        taken += 1
        if steps is not None and taken >= steps:
            raise BudgetSpent


# --------------------------------------------------------------------------- autolrs
def paper_lr_range(default_lr: float) -> tuple[float, float]:
    """The ``lr_range`` a user of the original code would give: two decades ending at the
    optimizer family's conventional rate.

    The official example (``run.sh`` with ``cifar10_example.py``: VGG-16, SGD momentum 0.9, whose
    conventional rate is 0.1) starts the server with ``--min_lr 0.001 --max_lr 0.1``; the same rule
    gives AdamW (conventional 1e-3) ``[1e-5, 1e-3]``. The paper's own per-workload intervals were
    chosen with a range test and are not published.
    """
    return (default_lr / 100.0, default_lr)


@register("autolrs", "autolrs default: Config(), total_steps and val_fn only")
def autolrs_default(ctx: RunContext) -> None:
    run_autolrs(ctx, Config())


@register(
    "autolrs-stagewise",
    "autolrs Config.stagewise(): the previous default (a search in every stage), for comparison",
)
def autolrs_stagewise(ctx: RunContext) -> None:
    run_autolrs(ctx, Config.stagewise())


@register(
    "autolrs-upward",
    "the previous default (issue 13): hold the optimizer's rate, one search upward (at most 3x), "
    "for comparison",
)
def autolrs_upward(ctx: RunContext) -> None:
    run_autolrs(ctx, Config.upward())


@register(
    "autolrs-ramp",
    "the experimental Config.ramp() (issue 19): no range test, a ramp from 100x below the "
    "optimizer's rate, a discard budget of 8 %",
)
def autolrs_ramp(ctx: RunContext) -> None:
    run_autolrs(ctx, Config.ramp())




def _parse_value(text: str) -> Any:
    import ast

    if text in ("None", "none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def resolve_method(name: str) -> MethodSpec:
    """A registered method, a tuned cosine grid run ``cosine@<lr>``, or an autolrs variant
    named ``BASE:field=value,field=value``.

    ``BASE`` is ``autolrs`` (the default config) or ``autolrs-paper`` (the paper preset), e.g.
    ``autolrs:keep_winner=False`` or ``autolrs-paper:forecaster='robust'``: one switch toggled
    from a preset, for ablations.

    Raises:
        ValueError: If the name is neither registered nor a valid variant.
    """
    if name in METHODS:
        return METHODS[name]
    if START_MARK in name:
        return _start_scaled(name)
    if is_cosine_grid(name):
        try:
            lr = float(name[len(COSINE_PREFIX) :])
        except ValueError:
            raise ValueError(
                f"method {name!r}: expected cosine@<peak lr>, e.g. cosine@0.0464"
            ) from None
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"method {name!r}: the peak lr must be positive")
        METHODS[name] = _cosine_spec(name, lr)
        return METHODS[name]
    base, sep, spec = name.partition(":")
    if not sep or base not in ("autolrs", "autolrs-paper"):
        raise ValueError(
            f"unknown method {name!r}; known: {sorted(METHODS)} or autolrs[-paper]:field=value,..."
        )
    overrides = {}
    for item in spec.split(","):
        field, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"variant {name!r}: expected field=value, got {item!r}")
        overrides[field.strip()] = _parse_value(value.strip())
    deleted = sorted(set(overrides) & DELETED_FIELDS)
    if deleted:  # Config.from_dict drops them (old saved states); an ablation must not
        raise ValueError(f"variant {name!r}: Config field(s) {deleted} no longer exist")
    preset = Config.paper() if base == "autolrs-paper" else Config()
    config = Config.from_dict({**preset.to_dict(), **overrides})  # validates the fields

    def run(ctx: RunContext) -> None:
        paper = base == "autolrs-paper"
        run_autolrs(ctx, config, paper_lr_range(ctx.workload.default_lr) if paper else None)

    spec_ = MethodSpec(name, run, f"{base} with {overrides}")
    METHODS[name] = spec_
    return spec_


START_MARK = "@x"


def start_scaled_name(method: str, scale: float) -> str:
    """The name of ``method`` (an autolrs method or variant) with its optimizer built at the
    tuned cosine's rate times ``scale``: ``<method>@x<scale>``."""
    return f"{method}{START_MARK}{scale:g}"


def split_start_scale(name: str) -> tuple[str, float | None]:
    """``(method, scale)`` of a start-scaled name; ``(name, None)`` for any other name."""
    base, mark, scale = name.rpartition(START_MARK)
    if not mark or not base:
        return name, None
    try:
        return base, float(scale)
    except ValueError:
        return name, None


def _start_scaled(name: str) -> MethodSpec:
    """``<autolrs method>@x<scale>``: the method with the optimizer built at the tuned rate of
    the run's budget (``workload.extra["tuned_lr"][budget]``, set by the suite from the tuned
    cosine grid chosen on the tuning holdout) times ``scale``."""
    base, scale = split_start_scale(name)
    if scale is None or not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"method {name!r}: expected <autolrs method>@x<positive factor>")
    if not base.startswith("autolrs"):
        raise ValueError(f"method {name!r}: only autolrs methods take a starting rate (@x)")
    inner = resolve_method(base)

    def run(ctx: RunContext) -> None:
        tuned = ctx.workload.extra.get("tuned_lr", {}).get(ctx.budget)
        if tuned is None:
            raise ValueError(
                f"{name}: no tuned cosine rate for {ctx.workload.name} at B={ctx.budget}; the "
                "suite must run the cosine grid (--oracle-grid) at that budget first"
            )
        ctx.start_lr = tuned * scale
        ctx.result.extra.update(start_lr=ctx.start_lr, start_scale=scale, tuned_lr=tuned)
        inner.run(ctx)

    description = f"{inner.description}; optimizer built at {scale:g} x the tuned rate"
    spec = MethodSpec(name, run, description)
    METHODS[name] = spec
    return spec


@register(
    "autolrs-paper",
    "autolrs Config.paper() with the lr_range a paper user gives (two decades ending at the "
    "optimizer's conventional rate), stages scaled to the budget",
)
def autolrs_paper(ctx: RunContext) -> None:
    run_autolrs(ctx, Config.paper(), lr_range=paper_lr_range(ctx.workload.default_lr))


@register(
    "autolrs-paper-rangetest",
    "autolrs Config.paper() with no lr_range: our range test finds it (not in the paper)",
)
def autolrs_paper_rangetest(ctx: RunContext) -> None:
    run_autolrs(ctx, Config.paper())


# --------------------------------------------------------------------------- baselines
def _planned_cosine(ctx: RunContext, lr: float) -> None:
    """Warm-up (2 % of the budget) + cosine to zero at the budget, at peak ``lr``."""
    model = ctx.model()
    opt = ctx.workload.make_optimizer(model.parameters(), lr=lr)
    _train_plain(ctx, model, opt, cosine_factor(ctx.budget, _warmup(ctx.budget)))


@register(
    "oracle",
    "the committed grid's best peak lr, warm-up 2 % + cosine planned for the budget B",
    tuned=True,
)
def oracle(ctx: RunContext) -> None:
    # The first protocol ran cosine over the step hint H inside a 1.5H budget; the oracle is now
    # planned for the run's budget like every other method (reports of old runs read their
    # stored results and never rerun it).
    lr = ctx.workload.extra.get("oracle_lr")
    if lr is None:
        raise ValueError(
            f"no oracle learning rate for {ctx.workload.name}: "
            "run `autolrs bench --set-targets` first"
        )
    _planned_cosine(ctx, lr)


def cosine_name(lr: float) -> str:
    """The method name of the tuned cosine grid's run at peak ``lr``: ``cosine@<lr>``."""
    return f"{COSINE_PREFIX}{lr:.3g}"


def _cosine_spec(name: str, lr: float) -> MethodSpec:
    def run_cosine(ctx: RunContext) -> None:
        ctx.result.extra["lr"] = lr
        _planned_cosine(ctx, lr)

    description = f"tuned cosine grid: peak lr {lr:.3g}, warm-up 2 % + cosine over B"
    return MethodSpec(name, run_cosine, description, tuned=True)


def cosine_method(lr: float) -> str:
    """Registers the tuned cosine grid's run at exactly ``lr`` (a committed grid's LR, which
    its 3-digit name may round) and returns its name."""
    name = cosine_name(lr)
    METHODS[name] = _cosine_spec(name, lr)
    return name


@register("naive", "the optimizer's default lr (SGD 0.1 / AdamW 1e-3), 2% warm-up + cosine")
def naive(ctx: RunContext) -> None:
    model = ctx.model()
    opt = ctx.workload.make_optimizer(model.parameters(), lr=ctx.workload.default_lr)
    _train_plain(ctx, model, opt, cosine_factor(ctx.budget, _warmup(ctx.budget)))


@register("wsd", "warm-up, stable, 20% linear cool-down; the naive default's peak")
def wsd(ctx: RunContext) -> None:
    model = ctx.model()
    opt = ctx.workload.make_optimizer(model.parameters(), lr=ctx.workload.default_lr)
    _train_plain(ctx, model, opt, wsd_factor(ctx.budget, _warmup(ctx.budget)))


def _recalibrate_batchnorm(ctx: RunContext, model: nn.Module, batches: int = 20) -> None:
    """Recomputes BatchNorm statistics for the current weights (charged as the method's)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    start = time.perf_counter()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the recalibration batches
    stream = ctx.workload.batches(ctx.seed + 7919)
    was_training = model.training
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            x, _ = next(stream)
            model(x)
    model.train(was_training)
    for m in norms:
        m.momentum = 0.1
    ctx.add_charge(time.perf_counter() - start)


@register(
    "schedulefree",
    "Schedule-Free AdamW (AlgoPerf self-tuning settings): lr 2.5e-3, betas (0.9, 0.9955), "
    "2% warm-up",
    requires=("schedulefree",),
)
def schedule_free(ctx: RunContext) -> None:
    import schedulefree

    model = ctx.model()
    opt = schedulefree.AdamWScheduleFree(
        model.parameters(),
        lr=2.5e-3,
        betas=(0.9, 0.9955),
        weight_decay=ctx.workload.weight_decay,
        warmup_steps=_warmup(ctx.budget),
    )
    opt.train()

    def prepare() -> None:
        opt.eval()
        _recalibrate_batchnorm(ctx, model)

    ctx.prepare_eval = prepare
    ctx.finish_eval = opt.train
    _train_plain(ctx, model, opt, None)


@register(
    "prodigy",
    "Prodigy: lr 1.0, safeguard warm-up, bias correction, cosine decay",
    requires=("prodigyopt",),
)
def prodigy(ctx: RunContext) -> None:
    from prodigyopt import Prodigy

    model = ctx.model()
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its weight-decay mode
        opt = Prodigy(
            model.parameters(),
            lr=1.0,
            weight_decay=ctx.workload.weight_decay,
            safeguard_warmup=True,
            use_bias_correction=True,
        )
    _train_plain(ctx, model, opt, cosine_factor(ctx.budget))


@register(
    "dadapt",
    "D-Adaptation Adam: lr 1.0, decoupled weight decay, cosine decay",
    requires=("dadaptation",),
)
def dadapt(ctx: RunContext) -> None:
    from dadaptation import DAdaptAdam

    model = ctx.model()
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its weight-decay mode
        opt = DAdaptAdam(
            model.parameters(), lr=1.0, weight_decay=ctx.workload.weight_decay, decouple=True
        )
    _train_plain(ctx, model, opt, cosine_factor(ctx.budget))


def _criterion(loss: Callable[[Any, Any], torch.Tensor]) -> Callable[..., torch.Tensor]:
    """The workload's own loss as a ``criterion(outputs, targets)`` (cross-entropy for the
    classifiers, MSE for the regressions): every workload's loss is ``f(model(x), y)``."""

    def criterion(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return loss(lambda _inputs: outputs, (None, targets))

    return criterion


def steepest_slope(
    lrs: list[float], losses: list[float], skip_start: int = 10, skip_end: int = 5
) -> float | None:
    """torch-lr-finder's suggestion: the rate where the (smoothed) loss falls fastest."""
    if len(lrs) < skip_start + skip_end + 2:
        return None
    lrs, losses = lrs[skip_start:-skip_end], losses[skip_start:-skip_end]
    arr = np.asarray(losses, dtype=float)
    if not np.all(np.isfinite(arr)):
        return None
    return float(lrs[int(np.gradient(arr).argmin())])


@register(
    "lrfinder-onecycle",
    "LR range test (torch-lr-finder, 100-step exponential sweep, steepest slope) + OneCycleLR",
    requires=("torch_lr_finder",),
)
def lrfinder_onecycle(ctx: RunContext) -> None:
    from torch_lr_finder import LRFinder, TrainDataLoaderIter

    class _Stream(TrainDataLoaderIter):
        def __init__(self, batches: Iterator[Any]) -> None:  # noqa: D107 - no DataLoader here
            self.data_loader = None
            self._iterator = batches
            self.auto_reset = False

        def __next__(self) -> Any:
            return next(self._iterator)

    work = ctx.workload
    model = ctx.model()
    opt = work.make_optimizer(model.parameters(), lr=1e-7)
    batches = ctx.batches()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        finder = LRFinder(model, opt, _criterion(work.loss))
        # 100 sweep steps; a budget under 200 steps keeps half of itself for training
        sweep_steps = min(100, ctx.budget // 2)
        finder.range_test(
            _Stream(batches), start_lr=1e-7, end_lr=10, num_iter=sweep_steps, step_mode="exp"
        )
    sweep = len(finder.history["lr"])
    suggestion = steepest_slope(finder.history["lr"], finder.history["loss"])
    finder.reset()
    ctx.skip(sweep, lrs=finder.history["lr"])
    max_lr = suggestion if suggestion is not None else work.default_lr
    ctx.result.extra["lrfinder"] = {
        "sweep_steps": sweep,
        "suggested_lr": suggestion,
        "max_lr": max_lr,
    }
    opt = work.make_optimizer(model.parameters(), lr=max_lr)
    remaining = ctx.budget - sweep
    onecycle = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=remaining)
    for batch in batches:
        lr = opt.param_groups[0]["lr"]
        loss = work.loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if onecycle.last_epoch + 1 < remaining:
            onecycle.step()
        ctx.step(model, loss.detach(), lr)


def grid_cosine(lr: float) -> Callable[[RunContext], None]:
    """The target-setting method: warm-up (2%) + cosine over the step hint at peak ``lr``."""

    def run(ctx: RunContext) -> None:
        model = ctx.model()
        opt = ctx.workload.make_optimizer(model.parameters(), lr=lr)
        hint = ctx.workload.step_hint
        _train_plain(ctx, model, opt, cosine_factor(hint, _warmup(hint)), steps=hint)

    return run
