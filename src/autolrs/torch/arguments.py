"""Checks of what users hand :class:`autolrs.AutoLRS`: its constructor's arguments, each
reported loss, and a state dict to resume from.

Each check raises the ``TypeError``/``ValueError`` (or ``StateDictError``) that names the
argument, what it got and what it accepts.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterable
from typing import Any

import torch

from autolrs.core.config import Config
from autolrs.exceptions import StateDictError

__all__ = [
    "check_arguments",
    "check_optimizer_matches_model",
    "check_state",
    "check_tensorboard",
    "default_sync_every",
    "extra_state_list",
    "loss_value",
    "parse_snapshot_device",
]

STATE_VERSION = 1  # the version of AutoLRS.state_dict()'s format


def check_arguments(
    model: Any,
    optimizer: Any,
    *,
    val_fn: Any,
    config: Any,
    extra_state: Any,
    sync_every: Any,
    seed: Any,
    log_file: Any,
    tensorboard: Any,
    snapshot_device: Any,
) -> tuple[list[Any], torch.device | None]:
    """Checks AutoLRS' constructor arguments (those the controller does not check itself).

    Returns:
        The ``extra_state`` entries as a list, and ``snapshot_device`` as a ``torch.device``
        (None stays None).

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If ``sync_every`` or ``snapshot_device`` is invalid, the optimizer has no
            parameters, or none of its parameters is one of the model's.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    if not any(len(g["params"]) for g in optimizer.param_groups):
        raise ValueError("optimizer has no parameters: pass it the model's parameters")
    check_optimizer_matches_model(optimizer, model)
    if val_fn is not None and not callable(val_fn):
        raise TypeError(f"val_fn must be callable or None, got {type(val_fn).__name__}")
    if config is not None and not isinstance(config, Config):
        raise TypeError(f"config must be an autolrs.Config, got {type(config).__name__}")
    extra = extra_state_list(extra_state)
    if sync_every is not None and (
        isinstance(sync_every, bool) or not isinstance(sync_every, int) or sync_every < 1
    ):
        raise ValueError(f"sync_every must be an integer >= 1 or None, got {sync_every!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
    if log_file is not None and not isinstance(log_file, (str, os.PathLike)):
        raise TypeError(
            f"log_file must be a path (str or os.PathLike) or None, got "
            f"{type(log_file).__name__} ({log_file!r:.40}); e.g. log_file='runs/autolrs.jsonl'"
        )
    check_tensorboard(tensorboard)
    return extra, parse_snapshot_device(snapshot_device)


def default_sync_every(
    sync_every: int | None, optimizer: torch.optim.Optimizer, distributed: bool
) -> int:
    """``sync_every``, or its default: 1 on CPU, 16 on accelerators, and under
    ``torch.distributed`` only where the controller may act."""
    if sync_every is not None:
        return sync_every
    on_cpu = all(p.device.type == "cpu" for g in optimizer.param_groups for p in g["params"])
    return (1 << 30) if distributed else (1 if on_cpu else 16)


def extra_state_list(extra_state: Any) -> list[Any]:
    """``extra_state`` as a list, each entry checked to have ``state_dict``/``load_state_dict``."""
    if isinstance(extra_state, (str, bytes)) or not isinstance(extra_state, Iterable):
        raise TypeError("extra_state must be a sequence of objects with state_dict()")
    extra = list(extra_state)
    for obj in extra:
        if not (callable(getattr(obj, "state_dict", None)) and callable(
            getattr(obj, "load_state_dict", None)
        )):
            raise TypeError(
                f"extra_state entries need state_dict() and load_state_dict(); "
                f"a {type(obj).__name__} has not"
            )
    return extra


def check_optimizer_matches_model(
    optimizer: torch.optim.Optimizer, model: torch.nn.Module
) -> None:
    """Raises ValueError if none of the optimizer's parameters belongs to the model."""
    owned = {id(p) for p in model.parameters()}
    params = [p for g in optimizer.param_groups for p in g["params"]]
    if any(id(p) in owned for p in params):
        return
    # Lenient for models that keep trainable tensors in their state dict only.
    state = model.state_dict(keep_vars=True)
    owned.update(id(t) for t in state.values() if isinstance(t, torch.Tensor))
    if any(id(p) in owned for p in params):
        return
    raise ValueError(
        f"optimizer and model must match: none of the optimizer's {len(params)} parameters is a "
        f"parameter of the model ({type(model).__name__}). Build the optimizer from this "
        "model's parameters (e.g. torch.optim.SGD(model.parameters(), ...)) and pass the same "
        "model to AutoLRS; rollbacks restore the model, so they must be the same tensors."
    )


def check_tensorboard(target: Any) -> None:
    """Raises TypeError unless ``target`` is None, a writer or a log directory."""
    if target is None or hasattr(target, "add_scalar"):
        return
    if isinstance(target, (str, os.PathLike)) and not isinstance(target, bool):
        return
    raise TypeError(
        f"tensorboard must be a torch.utils.tensorboard.SummaryWriter (or an object with "
        f"add_scalar), a log directory (str or os.PathLike) or None, got "
        f"{type(target).__name__} ({target!r:.40}); e.g. tensorboard='runs/autolrs'"
    )


def parse_snapshot_device(device: Any) -> torch.device | None:
    """``snapshot_device`` as a ``torch.device`` (None stays None), checked to be usable."""
    accepted = "'cpu', 'cuda', 'cuda:0', a torch.device, or None (each tensor stays on its device)"
    if device is None:
        return None
    if not isinstance(device, (str, torch.device)):
        raise TypeError(
            f"snapshot_device must be a device name or torch.device, got "
            f"{type(device).__name__} ({device!r:.40}); accepted: {accepted}"
        )
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError) as err:
        raise ValueError(
            f"snapshot_device={device!r} is not a device; accepted: {accepted}"
        ) from err
    try:
        torch.empty(0, device=parsed)
    except (RuntimeError, AssertionError, ValueError) as err:
        raise ValueError(
            f"snapshot_device={device!r} is not usable in this process ({err}); accepted: "
            f"{accepted}"
        ) from err
    return parsed


def loss_value(loss: Any) -> float | torch.Tensor:
    """A reported loss as a float or a detached 0-d tensor.

    Raises:
        TypeError: If ``loss`` is not a real number or a real 0-d tensor.
    """
    if isinstance(loss, torch.Tensor):
        if loss.dim() != 0:
            raise TypeError(
                f"loss must be a Python number or a 0-d tensor, got a tensor of shape "
                f"{tuple(loss.shape)}; reduce it first (e.g. loss.mean())"
            )
        if loss.is_complex() or loss.dtype == torch.bool:
            raise TypeError(f"loss must be a real number, got a {loss.dtype} tensor")
        return loss.detach()
    if isinstance(loss, bool) or not isinstance(loss, numbers.Real):
        raise TypeError(
            f"loss must be a Python number or a 0-d tensor, got {type(loss).__name__} "
            f"({loss!r:.40})"
        )
    return float(loss)


def check_state(state: Any, groups: int) -> None:
    """Raises StateDictError unless ``state`` is an AutoLRS state dict of this version for an
    optimizer with ``groups`` parameter groups."""
    if not isinstance(state, dict):
        raise StateDictError(
            f"state must be a dict from AutoLRS.state_dict(), got {type(state).__name__}"
        )
    if state.get("version") != STATE_VERSION:
        raise StateDictError(
            f"AutoLRS state has version {state.get('version')!r}; this release reads "
            f"version {STATE_VERSION}"
        )
    missing = [k for k in ("controller", "snapshots", "replay", "lr_ratios") if k not in state]
    if missing:
        raise StateDictError(f"AutoLRS state misses key(s) {missing}")
    if len(state["lr_ratios"]) != groups:
        raise StateDictError(
            f"the saved run had {len(state['lr_ratios'])} parameter groups, this optimizer "
            f"has {groups}"
        )
