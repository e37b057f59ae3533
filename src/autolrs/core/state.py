"""The controller's saved state: version 2, and the one migration from version 1.

Version 2 (JSON-safe)::

    {"version": 2, "config": {...}, "total_steps": int | None, "validation": bool,
     "rng": {...},                                  # the controller's generator
     "state": {"run": {...},                        # Run.to_dict(): what crosses phases
               "phase": "trial",                    # the current phase's name
               "phase_state": {...} | None}}        # that phase's to_dict() (None before start)

Version 1 (written until the controller was split into phases) kept one flat dict of 30 keys
and the stage's searcher beside it; :func:`upgrade_v1` turns such a state into version 2, filling
in the fields that states older still lacked.
"""

from __future__ import annotations

import copy
from typing import Any

from autolrs.core.config import Config
from autolrs.core.phases.base import BasePhase, Context, Phase
from autolrs.core.phases.exploit import Exploit
from autolrs.core.phases.final import Final
from autolrs.core.phases.ramp import Ramp
from autolrs.core.phases.range_test import RangeTest
from autolrs.core.phases.trials import Trials
from autolrs.core.phases.warmup import Warmup
from autolrs.core.run import Run
from autolrs.exceptions import StateDictError

__all__ = ["PHASES", "VERSION", "check", "phase_from_dict", "read", "upgrade_v1"]

VERSION = 2

PHASES: dict[str, Any] = {
    Phase.WARMUP: Warmup,
    Phase.RANGE_TEST: RangeTest,
    Phase.RAMP: Ramp,
    Phase.TRIAL: Trials,
    Phase.EXPLOIT: Exploit,
    Phase.FINAL: Final,
    Phase.DONE: Final,
}
"""Phase name -> the class whose ``from_dict`` rebuilds it."""

_ADDED_SINCE: dict[str, Any] = {
    "stage_candidates": None,
    "try_optimizer_lr": False,
    "search_upward": False,
    "keep_incumbent_within": None,
    "overfit_guard": None,
    "warmup_fraction": 0.0,
    "expand_factor": None,
    "ramp_segment_fraction": None,
    "discard_budget": None,
    "expand_from_range": False,
    "first_trial_fraction": None,
    "small_budget_ramp": None,
}
"""Config fields added after states were first saved, with the values that keep an older state's
behaviour (a field missing from a saved config must not take today's default)."""

_TOP = ("config", "total_steps", "state", "rng")
_INNER = ("run", "phase", "phase_state")


def check(state: Any) -> dict[str, Any]:
    """A version-2 state (a version-1 state is upgraded), its keys checked.

    Raises:
        StateDictError: If ``state`` is not a dict, is of another version, or misses keys.
    """
    if not isinstance(state, dict):
        raise StateDictError(f"controller state must be a dict, got {type(state).__name__}")
    version = state.get("version")
    if version == 1:
        state = upgrade_v1(state)
    elif version != VERSION:
        raise StateDictError(
            f"controller state has version {version!r}; this autolrs reads versions 1 and "
            f"{VERSION}. Resume with the autolrs release that wrote it."
        )
    _require(state, _TOP, "key(s)")
    _require(state["state"], _INNER, "field(s)")
    return state


def read(state: Any) -> tuple[dict[str, Any], Config, Run]:
    """The checked version-2 state (see :func:`check`), its config and its run.

    Raises:
        StateDictError: If the state cannot be read (the message says what is wrong).
    """
    state = check(state)
    try:
        config = Config.from_dict({**_ADDED_SINCE, **state["config"]})
    except (TypeError, ValueError) as err:
        raise StateDictError(f"controller state holds an invalid config: {err}") from err
    try:
        run = Run.from_dict(state["state"]["run"])
    except (KeyError, TypeError, ValueError) as err:
        raise StateDictError(f"controller state's run is malformed: {err!r}") from err
    return state, config, run


def phase_from_dict(ctx: Context, name: str, data: dict[str, Any] | None) -> BasePhase | None:
    """The phase ``name`` rebuilt from its saved state (None before the controller started).

    Raises:
        StateDictError: If the name is unknown or the phase's state is malformed.
    """
    if data is None:
        return None
    if name not in PHASES:
        raise StateDictError(
            f"controller state names an unknown phase {name!r}; known: {sorted(PHASES)}"
        )
    data = copy.deepcopy(data)
    if name in (Phase.FINAL, Phase.DONE):
        data["done"] = name == Phase.DONE
    try:
        phase: BasePhase = PHASES[name].from_dict(ctx, data)
    except (KeyError, TypeError, ValueError) as err:
        raise StateDictError(f"controller state of phase {name!r} is malformed: {err!r}") from err
    return phase


def _require(data: Any, keys: tuple[str, ...], what: str) -> None:
    if not isinstance(data, dict):
        raise StateDictError(f"controller state must hold dicts, got {type(data).__name__}")
    missing = [k for k in keys if k not in data]
    if missing:
        raise StateDictError(f"controller state misses {what} {missing}")


# ---------------------------------------------------------------------- version 1
_V1_TOP = ("config", "total_steps", "state", "searcher", "rng")
_V1_FIELDS = (
    "started", "step", "phase", "lr", "stage", "nominal_tau", "tau_max", "stages_at_max",
    "search_range", "range_test", "plan", "trial", "results", "winner", "winner_slot", "exploit",
    "final", "recent", "stage_reference", "stage_spread", "lr_cap", "range_auto", "initial_loss",
    "last_lr", "rollbacks", "awaiting_validation", "failure", "overrun_reported", "default_lr",
)  # and "warmup" (added late: optional), "user_range" (never read: dropped)


def upgrade_v1(state: dict[str, Any]) -> dict[str, Any]:
    """The version-2 form of a state written by the version-1 controller.

    Raises:
        StateDictError: If a key or field the version-1 controller always wrote is missing.
    """
    _require(state, _V1_TOP, "key(s)")
    s = copy.deepcopy(state["state"])
    _require(s, _V1_FIELDS, "field(s)")
    _fill_v1_defaults(s)
    out = {
        "version": VERSION,
        "config": {**_ADDED_SINCE, **state["config"]},
        "total_steps": state["total_steps"],
        "rng": state["rng"],
        "state": {
            "run": _v1_run(s),
            "phase": s["phase"],
            "phase_state": _v1_phase(s, state["searcher"]),
        },
    }
    if "validation" in state:  # states older still lack it: the constructor's value stands
        out["validation"] = state["validation"]
    return out


def _v1_run(s: dict[str, Any]) -> dict[str, Any]:
    """The run inside a version-1 state (the fields added since take their ``codec.since``
    values: :meth:`Run.from_dict`).

    Raises:
        StateDictError: If a value is malformed.
    """
    run = {
        "started": s["started"],
        "step": s["step"],
        "lr": s["lr"],
        "stage": s["stage"],
        "taus": {
            "nominal": s["nominal_tau"],
            "maximum": s["tau_max"],
            "stages_at_max": s["stages_at_max"],
        },
        "last_lr": s["last_lr"],
        "rollbacks": s["rollbacks"],
        "failure": s["failure"],
        "level": {
            "recent": s["recent"],
            "reference": s["stage_reference"],
            "spread": s["stage_spread"],
            "initial": s["initial_loss"],
        },
        "space": {
            "range": s["search_range"], "cap": s["lr_cap"], "auto": s["range_auto"],
            "informative": True,
        },
        "default_lr": s["default_lr"],
    }
    try:
        return Run.from_dict(run).to_dict()
    except (KeyError, TypeError, ValueError) as err:
        raise StateDictError(f"version-1 controller state's run is malformed: {err!r}") from err


def _v1_plan(plan: dict[str, Any] | None) -> dict[str, Any] | None:
    """A version-1 trial plan with the fields added since (trials never ramped then)."""
    return None if plan is None else {"anneal_steps": 0, "ramp_steps": 0, **plan}


def _v1_phase(s: dict[str, Any], searcher: dict[str, Any] | None) -> dict[str, Any] | None:
    """The current phase's own state inside a version-1 state."""
    phase = s["phase"]
    if not s["started"]:
        return None
    if phase == Phase.WARMUP:
        return dict(s["warmup"])
    if phase == Phase.RANGE_TEST:
        return dict(s["range_test"])
    if phase == Phase.TRIAL:
        keys = ("trial", "results", "winner", "winner_slot", "awaiting_validation")
        return {**{k: s[k] for k in keys}, "plan": _v1_plan(s["plan"]), "measuring": False,
                "searcher": searcher}
    if phase == Phase.EXPLOIT:
        exploit = {"awaiting": False, **s["exploit"]}
        plan = _v1_plan(s["plan"])
        return {**exploit, "plan": plan, "results": s["results"], "searcher": searcher}
    if phase in (Phase.FINAL, Phase.DONE):
        final = {"early": False, "decay_end": s["final"]["end_step"], "awaiting": False, **s["final"]}
        return {**final, "overrun_reported": bool(s["overrun_reported"])}
    raise StateDictError(f"version-1 controller state names an unknown phase {phase!r}")


def _fill_v1_defaults(s: dict[str, Any]) -> None:
    """Fills in, in a state written before retries, phase checkpoints and the warm-up, the
    fields they use."""
    s.setdefault("warmup", None)
    for phase_state in (s.get("exploit"), s.get("final")):
        if phase_state is not None:
            phase_state.setdefault("checkpoint_step", phase_state["start_step"])
    if s.get("exploit") is not None:
        s["exploit"].setdefault("lift", False)
    if s.get("trial") is not None:
        s["trial"].setdefault("retries", 0)
    rt = s.get("range_test")
    if rt is not None:
        rt.setdefault("origin", rt["start_step"])
        for key, value in (("first_index", 0), ("retries", 0), ("refined", False)):
            rt.setdefault(key, value)
