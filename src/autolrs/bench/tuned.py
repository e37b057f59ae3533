"""The tuned cosine at one budget: which of its grid's rates counts as "tuned".

A user tunes on the data they may look at, so the grid's rate is chosen on the tuning holdout
(the split a method's ``val_fn`` sees: the best median, over seeds, of the final holdout loss)
and then scored on the score split like every other method. Runs recorded before the holdout
was stored fall back to choosing on the score split, and say so (``chosen_on``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from autolrs.bench.harness import RunResult

__all__ = ["COSINE_PREFIX", "is_cosine_grid", "tuned_point"]

COSINE_PREFIX = "cosine@"


def is_cosine_grid(method: str) -> bool:
    """Whether ``method`` is a run of the tuned cosine grid (``cosine@<lr>``)."""
    return method.startswith(COSINE_PREFIX)


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else math.nan


def tuned_point(by_method: dict[str, list[RunResult]]) -> dict[str, Any] | None:
    """The tuned cosine's point at one budget from the grid's runs there (None: no grid run).

    Returns:
        ``{"score", "lr", "chosen_on", "lrs"}``: the chosen rate's median final score, the rate,
        ``"holdout"`` or ``"score"``, and per rate its runs' medians.
    """
    per_lr: dict[float, dict[str, Any]] = {}
    for method, runs in by_method.items():
        if not is_cosine_grid(method):
            continue
        lr = float(runs[0].extra.get("lr", method[len(COSINE_PREFIX):]))
        holdouts = [r.extra.get("final_holdout") for r in runs]
        per_lr[lr] = {
            "method": method,
            "seeds": len(runs),
            "median": _median([r.final_score for r in runs]),
            "holdout": _median(holdouts) if all(h is not None for h in holdouts) else None,
        }
    if not per_lr:
        return None
    on_holdout = all(v["holdout"] is not None for v in per_lr.values())
    key = "holdout" if on_holdout else "median"
    finite = {lr: v for lr, v in per_lr.items() if math.isfinite(v[key])}
    best = min(finite, key=lambda lr: finite[lr][key]) if finite else min(per_lr)
    return {
        "score": per_lr[best]["median"],
        "lr": best,
        "chosen_on": "holdout" if on_holdout else "score",
        "lrs": {f"{lr:.3g}": v for lr, v in sorted(per_lr.items())},
    }
