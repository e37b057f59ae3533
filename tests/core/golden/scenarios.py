"""Recorded decision traces of the controller: what pins its behaviour across refactors.

Each scenario drives a :class:`~autolrs.core.StageController` on :class:`~autolrs.testing.NoisyQuadratic`
through the controller's public protocol, as an executor would (one step at a time, or in batches
of ``quiet_steps + 1`` like the buffered torch executor), optionally injecting faults, and records
for every told step: the rate used, ``in_trial``, ``phase``, the look-ahead (``quiet_steps``,
``needs_finite_check``, ``planned_lr``), the actions returned and the events emitted. Floats are
written by ``repr`` (JSON's), so a comparison is exact.

Regenerate (only when a behaviour change is intended, and say so in the commit):
``python -m tests.core.golden.scenarios`` from the repository root.

The traces are recorded, and checked, with numpy's and OpenBLAS's AVX2 kernels
(:func:`kernel_settings`): AVX-512 kernels add in another order, and the
paper preset's ill-conditioned forecaster turns that last bit into other proposals within a few
hundred steps. Both regenerating and ``tests/core/test_golden.py`` run the scenarios in a child
process with that environment wherever the CPU has AVX2.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autolrs.core import Config, Evaluate, Restore, SetLR, Snapshot, StageController
from autolrs.core.actions import Discard
from autolrs.testing import NoisyQuadratic

HERE = Path(__file__).parent
ROOT = HERE.parents[2]

def kernel_settings() -> dict[str, str] | None:
    """The environment variables that make numpy and OpenBLAS compute as on the AVX2 machine the
    traces were recorded on: OpenBLAS's Haswell kernels (a DYNAMIC_ARCH build's; other BLAS
    libraries ignore it) and numpy's AVX-512 dispatch targets off (their names as this numpy
    spells them). They are read when numpy is first imported, hence the child process.

    Returns:
        None where they cannot apply: no AVX2 (or no ``/proc/cpuinfo``: not Linux), or AVX-512
        in numpy's baseline (it cannot be turned off). There the scenarios run with the
        process's own kernels, and the paper preset's traces may differ from the recorded ones.
    """
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    if " avx2" not in cpuinfo:
        return None
    try:
        from numpy._core import _multiarray_umath as umath  # numpy 2
    except ImportError:  # pragma: no cover - numpy 1
        from numpy.core import _multiarray_umath as umath

    def wide(name: str) -> bool:
        return name.startswith("AVX512") or name == "X86_V4"

    if any(wide(name) for name in umath.__cpu_baseline__):
        return None
    settings = {"OPENBLAS_CORETYPE": "Haswell"}
    targets = [name for name in umath.__cpu_dispatch__ if wide(name)]
    if targets:
        settings["NPY_DISABLE_CPU_FEATURES"] = " ".join(targets)
    return settings


def in_recording_env() -> bool:
    """Whether this process already computes with :func:`kernel_settings` (or cannot)."""
    settings = kernel_settings()
    return settings is None or all(os.environ.get(k) == v for k, v in settings.items())


@dataclass(frozen=True)
class Scenario:
    """One recorded run.

    Attributes:
        name: Unique name (the key in its file).
        preset: ``"stagewise"`` (``Config.stagewise()``, the default of version 0.1, which the
            scenarios named ``default_*`` and the switches were recorded with), ``"default"``
            (today's ``Config()``) or ``"paper"``.
        overrides: Config fields changed from the preset.
        total_steps: Passed to the controller.
        lr_range: Passed to the controller (None: range test).
        validation: Whether a validation function is available.
        steps: Training steps driven.
        batched: Tell losses in batches of ``quiet_steps + 1`` (the buffered executor).
        nan_in: Phases in which one NaN loss is told (the first step of that phase after
            ``fault_after``).
        bad_model_after: The first commit (``needs_finite_check``) after this step is told
            ``model_finite=False``.
        raise_validation: The n-th validation call (1-based) raises instead of answering.
        fault_after: See ``nan_in``.
        seed: Seed of the controller and the problem.
        curvature: The problem's curvature range (a tiny one makes a range test flat).
        default_lr: The optimizer's own rate, passed to the controller.
        overfit_after: From this step on, the validation loss rises by 1 % of its value per
            step (a model that overfits).
    """

    name: str
    preset: str = "stagewise"
    overrides: dict[str, Any] = field(default_factory=dict)
    total_steps: int | None = 600
    lr_range: tuple[float, float] | None = None
    validation: bool = True
    steps: int = 600
    batched: bool = False
    nan_in: tuple[str, ...] = ()
    bad_model_after: int | None = None
    raise_validation: int | None = None
    fault_after: int = 0
    seed: int = 0
    curvature: tuple[float, float] = (1e-2, 1.0)
    default_lr: float | None = None
    overfit_after: int | None = None

    def config(self) -> Config:
        if self.preset == "paper":
            return Config.paper(**self.overrides)
        if self.preset == "default":
            return Config(**self.overrides)
        return Config.stagewise(**self.overrides)

    def controller(self) -> StageController:
        return StageController(
            self.config(),
            total_steps=self.total_steps,
            lr_range=self.lr_range,
            validation=self.validation,
            seed=self.seed,
            default_lr=self.default_lr,
        )


def _action(action: Any) -> list[Any]:
    if isinstance(action, SetLR):
        return ["lr", action.lr]
    if isinstance(action, (Snapshot, Restore, Discard)):
        return [type(action).__name__.lower(), action.slot]
    if isinstance(action, Evaluate):
        return ["evaluate"]
    raise TypeError(f"unknown action {action!r}")


class Driver:
    """Carries out a controller's actions on a problem and records the trace."""

    def __init__(self, scenario: Scenario, controller: StageController, problem: NoisyQuadratic):
        self.scenario = scenario
        self.controller = controller
        self.problem = problem
        self.lr = controller.lr
        self.validations = 0
        self.nan_done: set[str] = set()
        self.bad_model_done = False
        self.trace: list[dict[str, Any]] = []

    def validate(self) -> float:
        self.validations += 1
        if self.validations == self.scenario.raise_validation:
            raise RuntimeError("validation failed (injected)")
        value = self.problem.loss()
        after = self.scenario.overfit_after
        if after is not None and self.controller.step > after:
            value *= 1.0 + 0.01 * (self.controller.step - after)
        return value

    def execute(self, actions: tuple[Any, ...], record: list[list[Any]]) -> None:
        pending = list(actions)
        while pending:
            action = pending.pop(0)
            record.append(_action(action))
            if isinstance(action, SetLR):
                self.lr = action.lr
            elif isinstance(action, Snapshot):
                self.problem.snapshot(action.slot)
            elif isinstance(action, Restore):
                self.problem.restore(action.slot)
            elif isinstance(action, Discard):
                self.problem.discard(action.slot)
            elif isinstance(action, Evaluate):
                try:
                    value = self.validate()
                except RuntimeError as err:
                    record.append(["abort", str(err)])
                    pending = list(self.controller.abort_trial(str(err)))
                else:
                    record.append(["value", value])
                    pending = list(self.controller.tell_validation(value))

    def start(self) -> None:
        actions: list[list[Any]] = []
        self.execute(self.controller.start(), actions)
        self.trace.append({"start": actions, "events": self.controller.pop_events()})

    def _loss(self, step_phase: str, step: int) -> float:
        loss = self.problem.train_step(float(self.lr))
        s = self.scenario
        if step >= s.fault_after and step_phase in s.nan_in and step_phase not in self.nan_done:
            self.nan_done.add(step_phase)
            return math.nan
        return loss

    def _finite(self, step: int) -> bool:
        s = self.scenario
        if s.bad_model_after is not None and not self.bad_model_done and step >= s.bad_model_after:
            self.bad_model_done = True
            return False
        return self.problem.finite()

    def run(self, steps: int) -> None:
        c = self.controller
        done = 0
        while done < steps:
            quiet = c.quiet_steps
            line: dict[str, Any] = {
                "step": c.step,
                "phase": c.phase,
                "in_trial": c.in_trial,
                "lr": self.lr,
                "quiet": min(quiet, 1 << 20),
                "check": c.needs_finite_check,
                "planned": [c.planned_lr(k) for k in range(min(quiet, 3) + 1)],
            }
            n = min(quiet + 1, steps - done) if self.scenario.batched else 1
            losses, lrs = [], []
            for k in range(n):
                lrs.append(c.planned_lr(k) if self.scenario.batched else self.lr)
                self.lr = lrs[-1]
                losses.append(self._loss(c.phase, c.step + k))
            line["losses"] = losses
            actions: list[list[Any]] = []
            if n == 1:
                finite = self._finite(c.step) if c.needs_finite_check else True
                self.execute(c.tell_loss(losses[0], model_finite=finite), actions)
            else:
                self.execute(
                    c.tell_losses(losses, model_finite=lambda: self._finite(c.step)), actions
                )
            line["actions"] = actions
            events = c.pop_events()
            if events:
                line["events"] = events
            self.trace.append(line)
            done += n


def run(scenario: Scenario, steps: int | None = None) -> Driver:
    problem = NoisyQuadratic(seed=scenario.seed, curvature=scenario.curvature)
    driver = Driver(scenario, scenario.controller(), problem)
    driver.start()
    driver.run(scenario.steps if steps is None else steps)
    return driver


def as_lines(trace: list[dict[str, Any]]) -> list[str]:
    return [json.dumps(line, sort_keys=True) for line in trace]


DELETED_FIELDS = ("converged_decades",)
"""Config fields deleted after the traces were recorded (``Config.DELETED_FIELDS``): the start
event of a recorded trace still lists them; a comparison drops them there and nowhere else."""


def without_deleted_fields(line: str) -> str:
    """A recorded trace line with the deleted Config fields taken out of its start event."""
    if '"event": "start"' not in line:
        return line
    record = json.loads(line)
    for event in record.get("events", []):
        if event["event"] == "start":
            for name in DELETED_FIELDS:
                event["config"].pop(name, None)
    return json.dumps(record, sort_keys=True)


_SWITCHES: dict[str, dict[str, Any]] = {
    "keep_winner_off": {"keep_winner": False},
    "warm_start": {"warm_start": True},
    "no_trust_region": {"trust_region": None},
    "no_start_at_previous": {"start_at_previous": False},
    "select_posterior": {"select": "posterior"},
    "no_prefer_larger": {"prefer_larger_within": None},
    "diverged_penalty": {"diverged_value": "penalty"},
    "objective_train": {"objective": "train"},
    "objective_validation": {"objective": "validation"},
    "forecaster_paper": {"forecaster": "paper"},
    "searcher_paper": {"searcher": "paper"},
    "no_divergence_factor": {"divergence_factor": None},
    "no_early_stop": {"early_stop_fraction": None},
    "anneal": {"anneal_fraction": 0.2},
    "no_stage_guard": {"stage_guard": None},
    "edge_shift": {"edge_shift": 3.0},
    "later_candidates": {"later_candidates": 3},
    "acquisition_ei": {"acquisition": "ei"},
    "kappa_paper": {"kappa": 1e6},
    "gp_restarts": {"gp_restarts": 2},
    "no_final_decay": {"final_decay_fraction": 0.0},
    "warmup": {"warmup_steps": 20, "warmup_lr": 0.1},
}

FILES: dict[str, list[Scenario]] = {
    "presets": [
        Scenario("default_range_test_600"),
        Scenario("default_given_range_600", lr_range=(1e-3, 1.0)),
        Scenario("default_no_budget", total_steps=None, lr_range=(1e-3, 1.0), steps=2500),
        Scenario("paper_given_range_no_budget", "paper", total_steps=None, lr_range=(1e-3, 1.0), steps=2600),
        Scenario("paper_range_test_600", "paper"),
        Scenario("paper_given_range_3000", "paper", total_steps=3000, lr_range=(1e-3, 1.0), steps=3000),
    ],
    "budgets": [
        Scenario("default_25", total_steps=25, steps=30),
        Scenario("default_25_given_range", total_steps=25, lr_range=(1e-3, 1.0), steps=30),
        Scenario("default_3000", total_steps=3000, steps=3000),
        Scenario("default_3000_no_validation", total_steps=3000, steps=3000, validation=False),
        Scenario("default_validation_objective_3000", overrides={"objective": "validation"}, total_steps=3000, steps=3000),
        Scenario("default_no_budget_range_test", total_steps=None, steps=1500),
        Scenario("flat_sweep_refined", total_steps=400, steps=400, curvature=(1e-4, 1e-3)),
    ],
    "switches": [Scenario(f"switch_{k}", overrides=v) for k, v in _SWITCHES.items()],
    "faults": [
        Scenario("nan_in_range_test", nan_in=("range_test",), fault_after=5),
        Scenario("nan_in_trial", nan_in=("trial",), fault_after=60),
        Scenario("nan_in_exploit", nan_in=("exploit",)),
        Scenario("nan_in_final", nan_in=("final",)),
        Scenario("nan_in_every_phase", nan_in=("range_test", "trial", "exploit", "final"), fault_after=40),
        Scenario("nan_in_warmup", overrides={"warmup_steps": 20, "warmup_lr": 0.1}, nan_in=("warmup",), fault_after=5),
        Scenario("bad_model_at_commit", bad_model_after=120),
        Scenario("bad_model_late", bad_model_after=400),
        Scenario("validation_raises", overrides={"objective": "validation"}, raise_validation=3),
        Scenario("paper_nan_in_trial", "paper", lr_range=(1e-3, 1.0), nan_in=("trial",), fault_after=30),
        Scenario("paper_validation_raises", "paper", overrides={"objective": "validation"}, lr_range=(1e-3, 1.0), raise_validation=5),
    ],
    "batched": [
        Scenario("batched_default_600", batched=True),
        Scenario("batched_default_3000", total_steps=3000, steps=3000, batched=True),
        Scenario("batched_paper_600", "paper", lr_range=(1e-3, 1.0), batched=True),
        Scenario("batched_faults", batched=True, nan_in=("trial", "exploit", "final"), fault_after=100),
        Scenario("batched_anneal_warmup", overrides={"anneal_fraction": 0.2, "warmup_steps": 16, "warmup_lr": 0.05}, batched=True),
    ],
    "method": [  # today's default (Config()): hold, one cooled search, hold, decay
        Scenario("method_600", "default", default_lr=0.1),
        Scenario("method_600_no_optimizer_lr", "default"),
        Scenario("method_600_too_high_optimizer_lr", "default", default_lr=50.0),
        Scenario("method_600_no_validation", "default", default_lr=0.1, validation=False),
        Scenario("method_given_range_600", "default", lr_range=(1e-3, 1.0), default_lr=0.1),
        Scenario("method_3000", "default", total_steps=3000, steps=3000, default_lr=0.1),
        Scenario("method_no_budget", "default", total_steps=None, steps=2500, default_lr=0.1),
        Scenario("method_25", "default", total_steps=25, steps=30, default_lr=0.1),
        # Under about 400 steps a ramp replaces the range test and the first search
        # (Config.small_budget_ramp); from too low and too high a rate.
        Scenario("method_200_ramp", "default", total_steps=200, steps=200, default_lr=1e-3),
        Scenario("method_200_ramp_high", "default", total_steps=200, steps=200, default_lr=50.0),
        Scenario("method_overfits", "default", default_lr=0.1, overfit_after=200),
        Scenario("method_overfits_batched", "default", default_lr=0.1, overfit_after=200, batched=True),
        Scenario("method_nan_in_every_phase", "default", default_lr=0.1, nan_in=("range_test", "trial", "exploit", "final"), fault_after=40),
        Scenario("method_bad_model_at_commit", "default", default_lr=0.1, bad_model_after=120),
        Scenario("method_validation_raises", "default", default_lr=0.1, raise_validation=2),
        Scenario("method_batched_600", "default", default_lr=0.1, batched=True),
    ],
}

SCENARIOS = {s.name: s for scenarios in FILES.values() for s in scenarios}


def path(file: str) -> Path:
    return HERE / f"{file}.jsonl.gz"


def read(file: str) -> dict[str, list[str]]:
    """The recorded traces of ``file``: scenario name -> trace lines (deleted Config fields
    dropped from the start event, see :func:`without_deleted_fields`)."""
    out: dict[str, list[str]] = {}
    with gzip.open(path(file), "rt", encoding="utf-8") as fh:
        for raw in fh:
            record = json.loads(raw)
            out[record["scenario"]] = [without_deleted_fields(x) for x in record["trace"]]
    return out


def write(file: str) -> None:
    with gzip.open(path(file), "wt", encoding="utf-8", compresslevel=9) as fh:
        for scenario in FILES[file]:
            trace = as_lines(run(scenario).trace)
            fh.write(json.dumps({"scenario": scenario.name, "trace": trace}) + "\n")


# Where a state written by the version-1 controller (before the phase objects) was saved:
# (what it is, scenario, steps told before saving). ``v1-states.json`` holds them; each must load
# into today's controller and continue exactly as the recorded trace does.
STATE_POINTS: list[tuple[str, str, int]] = [
    ("range test, mid-sweep", "default_range_test_600", 11),
    ("range test, just after a retry", "nan_in_range_test", 7),
    ("range test, mid-refinement of a flat sweep", "flat_sweep_refined", 28),
    ("first trial of stage 1", "default_range_test_600", 33),
    ("trial, the winner's state live in its slot", "default_range_test_600", 42),
    ("trial, just after a retry", "nan_in_trial", 62),
    ("exploit phase, before its checkpoint", "default_range_test_600", 83),
    ("exploit phase, after its checkpoint", "default_3000", 182),
    ("stage 2's first trial", "default_3000", 227),
    ("final decay", "default_range_test_600", 451),
    ("validation-mode trial", "default_validation_objective_3000", 248),
    ("paper preset, mid-trial", "paper_given_range_no_budget", 150),
    ("paper preset, exploit phase", "paper_given_range_no_budget", 1003),
    ("warm-up", "switch_warmup", 10),
]


def states_path() -> Path:
    return HERE / "v1-states.json"


def write_states() -> None:
    out = []
    for what, name, steps in STATE_POINTS:
        driver = run(SCENARIOS[name], steps)
        state = driver.controller.state_dict()
        out.append({"what": what, "scenario": name, "steps": steps, "state": state})
    states_path().write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


def continuations_path() -> Path:
    return HERE / "v1-continuations.jsonl.gz"


def resume_v1(point: dict[str, Any]) -> list[str]:
    """The trace lines a version-1 state gives when resumed by today's controller: the
    scenario's steps after the state's point."""
    scenario = SCENARIOS[point["scenario"]]
    driver = run(scenario, point["steps"])
    before = len(driver.trace)
    resumed = StageController()  # settings come from the state
    resumed.load_state_dict(json.loads(json.dumps(point["state"])))
    driver.controller = resumed
    driver.run(scenario.steps - point["steps"])
    return as_lines(driver.trace[before:])


def write_continuations() -> None:
    """Records what each version-1 state does when resumed (behaviour changes since the states
    were saved make some differ from the uninterrupted trace of today's controller)."""
    points = json.loads(states_path().read_text(encoding="utf-8"))
    with gzip.open(continuations_path(), "wt", encoding="utf-8", compresslevel=9) as fh:
        for point in points:
            fh.write(json.dumps({"what": point["what"], "trace": resume_v1(point)}) + "\n")


def computed() -> dict[str, dict[str, list[str]]]:
    """Every scenario's trace and every version-1 state's continuation, computed as recorded:
    in a child process with :func:`kernel_settings` unless this one computes so already.

    Returns:
        ``{"traces": {scenario: lines}, "continuations": {what: lines}}``.

    Raises:
        RuntimeError: The child process failed (its error output is in the message).
    """
    if in_recording_env():
        points = json.loads(states_path().read_text(encoding="utf-8"))
        return {
            "traces": {name: as_lines(run(s).trace) for name, s in SCENARIOS.items()},
            "continuations": {p["what"]: resume_v1(p) for p in points},
        }
    settings = kernel_settings()
    assert settings is not None
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"} | settings
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "computed.json"
        child = subprocess.run(
            [sys.executable, "-m", "tests.core.golden.scenarios", "--computed", str(out)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=280,
        )
        if child.returncode != 0:
            raise RuntimeError(f"computing the golden traces with {settings} failed "
                               f"(exit {child.returncode}):\n{child.stderr[-3000:]}")
        result: dict[str, dict[str, list[str]]] = json.loads(out.read_text(encoding="utf-8"))
    return result


if __name__ == "__main__":
    if "--computed" in sys.argv:
        Path(sys.argv[sys.argv.index("--computed") + 1]).write_text(
            json.dumps(computed()), encoding="utf-8")
        sys.exit(0)
    if not in_recording_env():  # record as the checks compute: with the AVX2 kernels
        settings = kernel_settings()
        assert settings is not None
        os.execve(sys.executable, [sys.executable, "-m", "tests.core.golden.scenarios",
                                   *sys.argv[1:]], {**os.environ, **settings})
    if "--states" in sys.argv:  # only while the controller still writes version-1 states
        write_states()
        print(f"wrote {states_path()}")
    for name in FILES:
        write(name)
        print(f"wrote {path(name)} ({path(name).stat().st_size // 1024} KiB)")
    write_continuations()
    print(f"wrote {continuations_path()}")
