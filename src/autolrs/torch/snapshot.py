"""In-memory snapshots of everything a trial changes, restored bit for bit.

A snapshot holds clones of ``model.state_dict()``, ``optimizer.state_dict()``, the
``state_dict()`` of every extra stateful object (a ``GradScaler``, an EMA) and the random number
generators' states (Python, NumPy, PyTorch CPU and every initialised CUDA device). It is built
from ``state_dict``\\ s, never from ``model.parameters()``, so any optimizer with a proper
``state_dict`` works (SGD, AdamW, Schedule-Free, Prodigy, ...).

Memory: a snapshot costs one copy of the model's parameters and buffers plus one copy of the
optimizer's state: 2x the parameter bytes for SGD with momentum, 3x for Adam/AdamW. Up to three
snapshots are alive at once (the stage start, the best candidate with ``keep_winner``, and during
the range test two warm-up checkpoints). ``device="cpu"`` keeps them in host memory instead of on
the accelerator, at the cost of a device-host copy per snapshot and restore.

Sharded models (FSDP2's ``fully_shard``, whose ``state_dict`` holds ``DTensor``\\ s): a snapshot
clones each ``DTensor`` locally, so every rank holds its own shards only and no collective runs;
:func:`state_bytes` and :meth:`SnapshotStore.model_finite` look at the local shards too.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


__all__ = ["SnapshotStore", "clone_state", "local_tensor", "state_bytes"]


def clone_state(value: Any, device: torch.device | None = None) -> Any:
    """Deep copy of a (nested) state dict: tensors are cloned (to ``device`` if given)."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
        if device is not None and tensor.device != device:
            return tensor.to(device=device, copy=True)
        return tensor.clone()
    if isinstance(value, dict):
        out = value.__class__()  # dict or OrderedDict
        for key, item in value.items():
            out[key] = clone_state(item, device)
        return out
    if isinstance(value, list):
        return [clone_state(item, device) for item in value]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(clone_state(item, device) for item in value)
    return value


def local_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """This process's part of ``tensor``: a ``DTensor``'s local shard, any other tensor itself."""
    # No DTensor exists unless torch.distributed.tensor was imported (importing it here would
    # cost every `import autolrs` over half a second).
    dtensor = getattr(sys.modules.get("torch.distributed.tensor"), "DTensor", None)
    if dtensor is not None and isinstance(tensor, dtensor):
        return tensor.to_local()
    return tensor


def state_bytes(value: Any) -> int:
    """Bytes this process holds in the tensors of a (nested) state (a ``DTensor``: its local
    shard only)."""
    if isinstance(value, torch.Tensor):
        local = local_tensor(value)
        return local.numel() * local.element_size()
    if isinstance(value, dict):
        return sum(state_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(state_bytes(v) for v in value)
    return 0


def rng_states() -> dict[str, Any]:
    """The global random generators' states."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_states(state: dict[str, Any]) -> None:
    """Sets the global random generators to ``state`` (from :func:`rng_states`)."""
    random.setstate(_as_tuple(state["python"]))
    name, keys, *rest = state["numpy"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else keys
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    return value


class SnapshotStore:
    """Named in-memory snapshots of a model, its optimizer and extra stateful objects.

    Args:
        model: The model whose ``state_dict`` is saved.
        optimizer: Its optimizer.
        extra_state: Further objects with ``state_dict()``/``load_state_dict()`` that a rollback
            must rewind too (``torch.amp.GradScaler``, an EMA of the weights, ...).
        device: ``None`` keeps each tensor on its own device; ``"cpu"`` (or any device) copies
            snapshots there.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        extra_state: Sequence[Any] = (),
        *,
        device: str | torch.device | None = None,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.extra_state = list(extra_state)
        self.device = None if device is None else torch.device(device)
        self._slots: dict[str, dict[str, Any]] = {}

    @property
    def slots(self) -> list[str]:
        """Names of the snapshots held."""
        return list(self._slots)

    def __contains__(self, slot: str) -> bool:
        return slot in self._slots

    def save(self, slot: str) -> None:
        """Copies the current state into ``slot``."""
        self._slots[slot] = {
            "model": clone_state(self.model.state_dict(), self.device),
            "optimizer": clone_state(self.optimizer.state_dict(), self.device),
            "extra": [clone_state(obj.state_dict(), self.device) for obj in self.extra_state],
            "rng": clone_state(rng_states()),
        }

    def restore(self, slot: str) -> None:
        """Loads ``slot`` back into the model, optimizer, extra objects and RNGs (bit-exact).

        Raises:
            KeyError: If the slot holds no snapshot.
        """
        snap = self._slots[slot]
        with torch.no_grad():
            self.model.load_state_dict(snap["model"])
        # Optimizer.load_state_dict keeps the tensors it is given (no copy when dtype and
        # device match), so it must get a clone or later steps would modify the snapshot.
        self.optimizer.load_state_dict(clone_state(snap["optimizer"]))
        for obj, state in zip(self.extra_state, snap["extra"]):
            obj.load_state_dict(clone_state(state))
        set_rng_states(snap["rng"])

    def discard(self, slot: str) -> None:
        """Frees ``slot`` (no error if empty)."""
        self._slots.pop(slot, None)

    def nbytes(self) -> int:
        """Bytes held by all snapshots' tensors."""
        return sum(state_bytes(s) for s in self._slots.values())

    def model_finite(self) -> bool:
        """Whether every floating-point parameter and buffer of the model is finite.

        A sharded model's ``DTensor``\\ s are checked on their local shards (no collective: under
        ``torch.distributed`` the caller combines the ranks' answers).
        """
        flags: dict[torch.device, list[torch.Tensor]] = {}
        for value in self.model.state_dict().values():
            tensor = local_tensor(value) if isinstance(value, torch.Tensor) else value
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
                flags.setdefault(tensor.device, []).append(torch.isfinite(tensor).all())
        return all(bool(torch.stack(group).all()) for group in flags.values())

    def state_dict(self) -> dict[str, Any]:
        """The snapshots, for a checkpoint (tensors are shared, not copied)."""
        return {"version": 1, "slots": dict(self._slots)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replaces the held snapshots with a checkpoint's."""
        self._slots = {slot: clone_state(snap, self.device) for slot, snap in state["slots"].items()}
