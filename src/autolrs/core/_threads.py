"""Keeping the controller's small linear algebra off the training threads.

The GP fits and curve fits work on matrices of a few dozen rows; BLAS threads buy nothing there,
but OpenBLAS worker threads keep spinning after each call and, on a machine with few cores, slow
down the training steps that follow (measured: 2x slower steps on 2 cores). Every heavy core
computation therefore runs with BLAS limited to one thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["single_threaded_blas"]

_controller = None


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Limits BLAS libraries to one thread inside the block."""
    global _controller
    try:
        if _controller is None:
            from threadpoolctl import ThreadpoolController

            _controller = ThreadpoolController()
        limiter = _controller.limit(limits=1, user_api="blas")
    except Exception:  # noqa: BLE001 - threadpoolctl missing or failing: run as is
        yield
        return
    with limiter:
        yield
