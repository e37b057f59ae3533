"""JSON-safe round trips of NumPy random generators."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["rng_from_state", "rng_state", "spawn"]


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """The generator's bit-generator state as JSON-safe primitives (Python ints may be big)."""
    state = rng.bit_generator.state
    return {"bit_generator": state["bit_generator"], "state": _plain(state)}


def rng_from_state(data: dict[str, Any]) -> np.random.Generator:
    """A generator in the state :func:`rng_state` recorded."""
    name = data["bit_generator"]
    bit_generator_cls = getattr(np.random, name)
    bit_generator = bit_generator_cls()
    bit_generator.state = data["state"]
    return np.random.Generator(bit_generator)


def spawn(rng: np.random.Generator) -> np.random.Generator:
    """A child generator seeded from ``rng`` (advances ``rng`` deterministically)."""
    return np.random.default_rng(int(rng.integers(0, 2**63 - 1)))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value
