"""Shared fixtures: deterministic torch settings for every test."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _deterministic_torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def pytest_addoption(parser):
    parser.addoption(
        "--reliability-seeds",
        default="3",
        help="seeded fault-injection runs in tests/reliability (default 3; e.g. 30 for a soak)",
    )
