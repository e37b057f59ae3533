"""Carrying the controller's actions out on a PyTorch model and optimizer."""

from __future__ import annotations

from autolrs.torch.scheduler import AutoLRS
from autolrs.torch.snapshot import SnapshotStore

__all__ = ["AutoLRS", "SnapshotStore"]
