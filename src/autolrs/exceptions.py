"""Exceptions and warnings raised by autolrs.

Bad arguments raise the built-in :class:`ValueError` or :class:`TypeError` (naming the argument,
the value received and what is accepted). Failures at run time that are autolrs' own raise a
subclass of :class:`AutoLRSError`.
"""

from __future__ import annotations

__all__ = [
    "AutoLRSError",
    "AutoLRSWarning",
    "DivergenceError",
    "StateDictError",
]


class AutoLRSError(RuntimeError):
    """Base class of the run-time errors raised by autolrs."""


class DivergenceError(AutoLRSError):
    """Training kept diverging after every rollback autolrs is allowed to make.

    The model and optimizer have been restored to the last committed (finite) state before this
    is raised, so a checkpoint taken afterwards is safe.
    """


class StateDictError(AutoLRSError, ValueError):
    """A state dict cannot be loaded: wrong version, missing keys or another run's shape."""


class AutoLRSWarning(UserWarning):
    """Base class of the warnings emitted by autolrs."""
