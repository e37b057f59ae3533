"""Benchmarks: real offline workloads, baselines and the harness that compares them.

The protocol (``docs/bench-fair.md``): every method gets the same model, data, step budget and
seeds; every optimizer step a method takes is charged, autolrs' trials included.
"""

from __future__ import annotations

from autolrs.bench.workloads import WORKLOADS, Workload, get_workload

__all__ = ["WORKLOADS", "Workload", "get_workload"]
