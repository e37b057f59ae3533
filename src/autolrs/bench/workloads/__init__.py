"""Benchmark workloads, by name.

Each loader reads data that ships inside an installed package (nothing is downloaded); a
missing package raises an error naming the command that installs it.
"""

from __future__ import annotations

from collections.abc import Callable

from autolrs.bench.workloads.base import Split, Workload
from autolrs.bench.workloads.digits import make_digits
from autolrs.bench.workloads.fashion import make_fashion_cnn, make_fashion_resnet
from autolrs.bench.workloads.shakespeare import make_shakespeare_char
from autolrs.bench.workloads.tabular import make_diabetes_overfit, make_diamonds

__all__ = ["WORKLOADS", "Split", "Workload", "get_workload"]

WORKLOADS: dict[str, Callable[[], Workload]] = {
    "digits": make_digits,
    "fashion-cnn": make_fashion_cnn,
    "fashion-resnet": make_fashion_resnet,
    "shakespeare-char": make_shakespeare_char,
    "diamonds": make_diamonds,
    "diabetes-overfit": make_diabetes_overfit,
}


def get_workload(name: str) -> Workload:
    """Builds the workload called ``name``.

    Raises:
        ValueError: If no workload has that name.
    """
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; known: {sorted(WORKLOADS)}")
    return WORKLOADS[name]()
