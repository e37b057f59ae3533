"""Thin adapters of :class:`autolrs.AutoLRS` for training frameworks (optional extras).

- :mod:`autolrs.integrations.huggingface`: ``AutoLRSCallback`` for ``transformers.Trainer``
  (``pip install "autolrs[hf]"``).
- :mod:`autolrs.integrations.lightning`: ``AutoLRSCallback`` for ``lightning.Trainer``
  (``pip install "autolrs[lightning]"``).

Each module is imported on its own; a missing framework raises an ImportError naming the extra.
"""

from __future__ import annotations

from typing import Any

__all__ = ["require"]


def require(module: str, extra: str, feature: str) -> Any:
    """Imports ``module`` or raises an ImportError naming ``pip install "autolrs[extra]"``."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{feature} needs the `{module}` package; install it with: pip install \"autolrs[{extra}]\""
        ) from err
