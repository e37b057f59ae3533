"""Where the controller's events go: the ``autolrs`` logger and, optionally, a JSONL file.

Each event is a JSON-safe dict with an ``"event"`` key (``start``, ``range_test``, ``stage``,
``candidate``, ``decision``, ``segment``, ``rollback``, ``final``, ``done``, ``overrun``,
``resume``) and the ``"step"`` at which it happened. The JSONL file also holds ``train_loss``
records (the mean training loss of the steps ``start`` to ``step``), for ``autolrs plot``
only: they are neither logged nor part of ``AutoLRS.events``. In the JSONL file every record
also carries ``"run"``, the identity of the run that wrote it: a file appended to by several
runs (a script run twice with the same ``log_file``) holds them apart, and ``autolrs plot``
draws the last one unless told otherwise (:func:`split_runs`).

JSON has no NaN or infinity: a non-finite float in an event is written to the file as the string
``"nan"``, ``"inf"`` or ``"-inf"`` (:func:`json_safe`, the rule the benchmark's result files
follow too) and :func:`read_events` reads it back as a float (:func:`json_restore`). Files written
before this rule hold ``null`` for them.

Log levels: the search's normal course (stages, decisions, the range test, the final phase, and
the rollbacks that are part of the method: a stage whose rate made the loss worse, a trial
retried) is logged at INFO; what needs the user's attention (a non-finite loss or parameter,
training past ``total_steps``) at WARNING; every candidate and segment at DEBUG.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Iterable
from typing import IO, Any

__all__ = [
    "ACCOUNTS",
    "EventLog",
    "describe",
    "json_restore",
    "json_safe",
    "level",
    "new_run_id",
    "read_events",
    "split_runs",
    "step_accounting",
]

logger = logging.getLogger("autolrs")

_LEVELS = {
    "rollback": logging.INFO,  # WARNING when a non-finite value caused it: see level()
    "overrun": logging.WARNING,
    "stage": logging.INFO,
    "decision": logging.INFO,
    "range_test": logging.INFO,
    "ramp": logging.INFO,
    "final": logging.INFO,
    "done": logging.INFO,
    "resume": logging.INFO,
    "start_rate": logging.INFO,
    "start": logging.DEBUG,
    "candidate": logging.DEBUG,
    "segment": logging.DEBUG,
    "overfitting": logging.INFO,
    "validation_check": logging.DEBUG,
}


def level(event: dict[str, Any]) -> int:
    """The logging level of an event (see the module docstring)."""
    kind = str(event.get("event"))
    if kind == "rollback" and "non-finite" in str(event.get("reason", "")):
        return logging.WARNING
    return _LEVELS.get(kind, logging.DEBUG)


def new_run_id() -> str:
    """A fresh run identity: the start time and a random suffix, e.g. ``20261130-021503-3fa2``."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"


def describe(event: dict[str, Any]) -> str:
    """A one-line human description of an event."""
    kind = str(event.get("event"))
    says = _SAYS.get(kind)
    return f"step {event.get('step')}: " + (kind if says is None else says(event))


def _range_test_line(event: dict[str, Any]) -> str:
    return (
        f"range test over {len(event['lrs'])} steps -> search lr in "
        f"[{event['low']:.3g}, {event['high']:.3g}]"
        + (f" (diverged at {_fmt(event['diverged_lr'])})" if event.get("diverged_lr") else "")
        + ("" if event.get("informative", True) else
           "; its loss never fell nor diverged (a pre-trained model?): the range's low end "
           "is no bound")
        + _start_line(event)
    )


def _stage_line(event: dict[str, Any]) -> str:
    if event["candidates"] == 1:
        return (
            f"stage {event['stage']}: holds one rate for "
            f"{event['trial_steps'] + event['tau']} steps (no search)"
        )
    caveat = (
        " (no val_fn: the candidates are scored on the training loss, which favours small "
        "rates; pass val_fn to score them on held-out data)" if event["mode"] == "train" else ""
    )
    return (
        f"stage {event['stage']}: {event['candidates']} candidates x "
        f"{event['trial_steps']} steps, then {event['tau']} steps; {event['mode']} loss; "
        f"lr in [{event['search_range'][0]:.3g}, {event['search_range'][1]:.3g}]{caveat}"
    )


def _candidate_line(event: dict[str, Any]) -> str:
    status = f"diverged ({event['reason']})" if event["diverged"] else (
        f"forecast {_fmt(event['forecast'])}"
    )
    return f"stage {event['stage']} candidate {event['index']}: lr {event['lr']:.3g} {status}"


def _decision_line(event: dict[str, Any]) -> str:
    if len(event.get("candidates") or []) == 1 and not event.get("reason"):
        return f"stage {event['stage']}: holds lr {event['lr']:.3g}"
    extra = f" ({event['reason']})" if event.get("reason") else ""
    return (
        f"stage {event['stage']}: chose lr {event['lr']:.3g} "
        f"(forecast {_fmt(event['forecast'])}) for {event['exploit_steps']} steps{extra}"
    )


def _ramp_line(event: dict[str, Any]) -> str:
    """What a ramp's event says: where it went, why it stopped, where the stages search."""
    path = event.get("path") or [[event["lr"], None]]
    head = (
        f"ramp over {len(path)} segments of {event['segment']} steps, lr {path[0][0]:.3g} to "
        f"{path[-1][0]:.3g}"
    )
    if event.get("failed_lr") is None:
        stop = f" ({event['reason']})"
    else:
        stop = (
            f"; lr {event['failed_lr']:.3g} did not help ({event['reason']}): its "
            f"{event['segment']} steps rolled back"
        )
    hint = event.get("optimizer_lr")
    said = "" if hint is None else (
        f"; the optimizer's lr {hint:.3g} only set where the ramp began"
    )
    return f"{head}{stop}; the first stage searches around lr {event['lr']:.3g}{said}"


def _start_line(event: dict[str, Any]) -> str:
    """What a range test's event says of the optimizer's own rate (nothing when it has none)."""
    if event.get("optimizer_lr") is None:
        return ""
    if event.get("start_reason") is None:
        return f"; starts from the optimizer's lr {event['optimizer_lr']:.3g}"
    return (
        f"; the optimizer's lr {event['optimizer_lr']:.3g} is not used as it is: "
        f"{event['start_reason']}; starts from {_fmt(event.get('start_lr'))} instead"
    )


_SAYS: dict[str, Callable[[dict[str, Any]], str]] = {
    "range_test": _range_test_line,
    "ramp": _ramp_line,
    "start_rate": lambda e: _start_line(e)[2:],  # (its leading "; " dropped)
    "stage": _stage_line,
    "candidate": _candidate_line,
    "decision": _decision_line,
    "rollback": lambda e: (
        f"rolled back to the last committed state during the {e['phase']} "
        f"phase ({e['reason']}); training goes on from there"
    ),
    "final": lambda e: (
        f"final phase to step {e['end']}: {'linear decay' if e['decay'] else 'constant'} "
        f"from lr {e['lr']:.3g}"
    ),
    "overfitting": lambda e: (
        f"the validation loss rose while the training loss fell (best "
        f"{_fmt(e['best'])}): back to the state of that best, then the rate decays to zero"
    ),
    "validation_check": lambda e: (
        f"validation {_fmt(e['value'])} (best {_fmt(e['best'])}, "
        f"{e['rises']} rise(s) in a row)"
    ),
    "overrun": lambda e: (
        f"training continues past total_steps={e['total_steps']}; holding lr {e['lr']:.3g}"
    ),
}
"""How :func:`describe` words each kind of event (after ``step N: ``)."""


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float written as a string: the one JSON-safe rule.

    JSON has no NaN or infinity, so NaN becomes ``"nan"``, +inf ``"inf"`` and -inf ``"-inf"``,
    inside dicts, lists and tuples too (tuples become lists); everything else is kept. The rule
    loses nothing: :func:`json_restore` turns the strings back into floats. Event files
    (:class:`EventLog`) and the benchmark's result files (``autolrs.bench.harness``) both use it.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def json_restore(value: Any) -> Any:
    """The inverse of :func:`json_safe`: ``"nan"``, ``"inf"`` and ``"-inf"`` become floats again,
    inside dicts and lists too."""
    if isinstance(value, str) and value in _NON_FINITE:
        return float(value)
    if isinstance(value, dict):
        return {k: json_restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_restore(v) for v in value]
    return value


_NON_FINITE = ("nan", "inf", "-inf")


class EventLog:
    """Sends events to the ``autolrs`` logger and appends them to a JSONL file.

    Args:
        path: JSONL file to append to, or None for the logger only.
        enabled: False silences both (e.g. on non-zero ranks of a distributed run).
        run: The run's identity, written into every record (default: a new one; a resumed run
            passes the identity it had).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        enabled: bool = True,
        run: str | None = None,
    ) -> None:
        self.path = None if path is None else os.fspath(path)
        self.enabled = enabled
        self.run = run or new_run_id()
        self._file: IO[str] | None = None
        self._held: list[dict[str, Any]] | None = None

    def hold(self) -> None:
        """Keeps records back from the file until :meth:`release` (or :meth:`discard`): a run
        that may yet turn out to be the resumption of a saved one writes nothing of its own."""
        if self._held is None:
            self._held = []

    def release(self) -> None:
        """Writes the records held back, and stops holding."""
        held, self._held = self._held, None
        if held:
            self._write(held)

    def discard(self) -> None:
        """Drops the records held back (e.g. the start of a run replaced by a resumed one)."""
        self._held = None

    def emit(self, events: Iterable[dict[str, Any]]) -> None:
        """Logs and records each event."""
        if not self.enabled:
            return
        for event in events:
            lvl = level(event)
            if logger.isEnabledFor(lvl):
                logger.log(lvl, "%s", describe(event))
            if self.path is not None:
                record = dict(event)
                record.setdefault("time", time.time())
                if self._held is not None:
                    self._held.append(record)
                else:
                    self._write([record])

    def record(self, events: Iterable[dict[str, Any]]) -> None:
        """Appends each event to the file only (no logger line): e.g. the training-loss
        records that ``autolrs plot`` draws."""
        if not self.enabled or self.path is None:
            return
        records = [dict(event, time=time.time()) for event in events]
        if self._held is not None:
            self._held.extend(records)
        else:
            self._write(records)

    def _write(self, records: list[dict[str, Any]]) -> None:
        assert self.path is not None
        if self._file is None:
            directory = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(directory, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        for record in records:
            record.setdefault("run", self.run)
            self._file.write(json.dumps(json_safe(record)) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Writes what is held back and closes the file (it reopens on the next event)."""
        self.release()
        if self._file is not None:
            self._file.close()
            self._file = None


def read_events(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Reads a JSONL event file written by :class:`EventLog` (non-finite values back as floats:
    :func:`json_restore`; files written before that rule hold None for them).

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If a line is not JSON (the message names the line).
    """
    events = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                events.append(json_restore(json.loads(line)))
            except json.JSONDecodeError as err:
                raise ValueError(f"{os.fspath(path)} line {number} is not JSON: {err}") from err
    return events


def split_runs(events: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The events of each run in a JSONL file, in the order the runs first appear.

    Records carry the ``"run"`` that wrote them; in files written before runs had an identity,
    each ``start`` event begins a new run, named ``"1"``, ``"2"``, ...
    """
    runs: dict[str, list[dict[str, Any]]] = {}
    unnamed = 0
    for event in events:
        run = event.get("run")
        if run is None:
            if event.get("event") == "start" or unnamed == 0:
                unnamed += 1
            run = str(unnamed)
        runs.setdefault(str(run), []).append(event)
    return runs


ACCOUNTS = (
    "warmup", "range_test", "discarded_trials", "kept_trials", "exploit", "final",
    "early_stopped", "rolled_back",
)
"""Where a run's steps went (:func:`step_accounting`), in the order they usually happen."""


def _covered(intervals: list[tuple[int, int]]) -> int:
    """Steps covered by the union of half-open ``[start, end)`` intervals."""
    total, reach = 0, None
    for start, end in sorted(intervals):
        if reach is None or start >= reach:
            total += max(end - start, 0)
            reach = end
        elif end > reach:
            total += end - reach
            reach = end
    return total


def _outside(intervals: list[tuple[int, int]], cut: list[tuple[int, int]]) -> int:
    """Steps covered by ``intervals`` and not by ``cut`` (both half-open)."""
    return _covered(intervals + cut) - _covered(cut)


def _shared(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> int:
    """Steps covered by both ``a`` and ``b`` (half-open intervals)."""
    return _covered(a) + _covered(b) - _covered(a + b)


def step_accounting(events: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Where the steps of a run went, from its events.

    Accounts (:data:`ACCOUNTS`): ``warmup`` (a linear warm-up, and the early part of a range test
    that training resumes from), ``range_test`` (the rest of the sweep: discarded),
    ``discarded_trials`` (candidates rolled back), ``kept_trials`` (a winner's trial steps that
    training continued from), ``exploit`` and ``final`` (committed training at the chosen rates),
    ``early_stopped`` (the steps after the lowest validation loss that the overfitting guard's
    return to it undid: early stopping, not the search; from the events that carry
    ``early_stopped_from`` to them, the committed steps and the segments marked
    ``early_stopped``) and ``rolled_back``: every other step told (exploit, final or
    warm-up steps undone by a rollback, a retried trial's first attempt, steps told in a batch
    after a fault). The sum is the number of steps told up to the last event.
    """
    spans: dict[str, list[tuple[int, int]]] = {}
    stopped: list[tuple[int, int]] = []  # from the best check to an early stop
    undone_by_stop: list[tuple[int, int]] = []  # uncommitted steps the early stop itself undid
    last = 0
    for e in events:
        if e.get("event") == "train_loss":
            continue  # a log file's loss records: the steps are told by the other events
        last = max(last, int(e.get("step", 0) or 0))
        if e.get("early_stopped_from") is not None:
            stopped.append((int(e["early_stopped_from"]), int(e["step"])))
        if e.get("event") != "segment":
            continue
        start, end = int(e["start"]), int(e["end"])
        last = max(last, end)
        kind, committed = e.get("kind"), bool(e.get("committed"))
        if kind in ("range_test", "trial", "kept_trial"):
            account = kind
        elif not committed:
            if e.get("early_stopped"):
                undone_by_stop.append((start, end))
            continue  # undone: counted in rolled_back (or early_stopped)
        else:
            account = {"warmup": "warmup", "exploit": "exploit"}.get(str(kind), "final")
        spans.setdefault(account, []).append((start, end))
    warmup = spans.get("warmup", [])
    sweeps = spans.get("range_test", [])
    kept_sweep = [w for w in warmup if any(w[0] < e and s < w[1] for s, e in sweeps)]
    kept_trials = spans.get("kept_trial", [])
    out = {
        "warmup": _covered(warmup),
        "range_test": _outside(sweeps, kept_sweep),
        "discarded_trials": _covered(spans.get("trial", [])) - _covered(kept_trials),
        "kept_trials": _covered(kept_trials),
        "exploit": _covered(spans.get("exploit", [])),
        "final": _covered(spans.get("final", [])),
    }
    # Early stopping undid the steps after the best check: the committed ones and those of the
    # stopped phase move to its account; what a guard or a fault undid there stays rolled back.
    committed = {"warmup": warmup, "kept_trials": kept_trials,
                 "exploit": spans.get("exploit", []), "final": spans.get("final", [])}
    out["early_stopped"] = _shared(undone_by_stop, stopped)
    for account, intervals in committed.items():
        undone = _shared(intervals, stopped)
        out[account] -= undone
        out["early_stopped"] += undone
    out["rolled_back"] = max(last - sum(out.values()), 0)
    return out
