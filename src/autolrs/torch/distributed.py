"""torch.distributed support: every rank runs AutoLRS, rank 0 decides.

Each rank buffers its own losses; at a sync point (the end of a trial, a checkpoint of the
search, a validation request) one ``all_reduce`` averages the buffered losses over the ranks,
rank 0 tells the controller, and the decision's actions, events and failure are broadcast with
the controller's state (:meth:`Collective.broadcast`, handed to
:class:`~autolrs.core.executor.Executor`; the other ranks load the state and rebuild the
outlook from it). Every rank then carries the actions out on its own model and optimizer (its
own snapshots: no weights move over the network).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

__all__ = ["Collective"]


class Collective:
    """The collectives AutoLRS needs, or local no-ops outside a process group.

    Args:
        group: The process group (default: the world).
    """

    def __init__(self, group: Any = None) -> None:
        self.group = group
        self.enabled = dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1
        self.rank = dist.get_rank(group) if self.enabled else 0
        self.world = dist.get_world_size(group) if self.enabled else 1
        self.device = torch.device("cpu")
        if self.enabled and dist.get_backend(group) == "nccl":
            self.device = torch.device("cuda", torch.cuda.current_device())

    @property
    def is_leader(self) -> bool:
        """Whether this process decides (rank 0)."""
        return self.rank == 0

    def mean(self, values: list[float]) -> list[float]:
        """Element-wise mean of ``values`` over the ranks (same length on every rank)."""
        if not self.enabled or not values:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=self.group)
        return (tensor / self.world).cpu().tolist()

    def all_true(self, flag: bool) -> bool:
        """True only if ``flag`` holds on every rank."""
        if not self.enabled:
            return flag
        tensor = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN, group=self.group)
        return bool(tensor.item() > 0.5)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (any picklable object)."""
        if not self.enabled:
            return obj
        box = [obj if self.is_leader else None]
        src = dist.get_global_rank(self.group, 0) if self.group is not None else 0
        dist.broadcast_object_list(box, src=src, group=self.group, device=self.device)
        return box[0]
