"""autolrs: the learning-rate schedule, found on the fly (AutoLRS, Jin et al., ICLR 2021).

    from autolrs import AutoLRS

    sched = AutoLRS(model, optimizer, total_steps=10_000, val_fn=evaluate)
    for x, y in sched.wrap(loader):
        loss = loss_fn(model(x), y)
        loss.backward(); optimizer.step(); optimizer.zero_grad()
        sched.step(loss)

``AutoLRS`` (which needs PyTorch) is imported lazily, so ``autolrs.core`` and ``Config`` can be
used without PyTorch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autolrs._version import __version__
from autolrs.core.config import Config
from autolrs.exceptions import AutoLRSError, AutoLRSWarning, DivergenceError, StateDictError

if TYPE_CHECKING:
    from autolrs.torch.scheduler import AutoLRS

__all__ = [
    "AutoLRS",
    "AutoLRSError",
    "AutoLRSWarning",
    "Config",
    "DivergenceError",
    "StateDictError",
    "__version__",
]

__bibtex__ = """
@inproceedings{jin2021autolrs,
  title     = {{AutoLRS}: Automatic Learning-Rate Schedule by {B}ayesian Optimization on the Fly},
  author    = {Jin, Yuchen and Zhou, Tianyi and Zhao, Liangyu and Zhu, Yibo and Guo, Chuanxiong
               and Canini, Marco and Krishnamurthy, Arvind},
  booktitle = {International Conference on Learning Representations},
  year      = {2021},
  url       = {https://openreview.net/forum?id=SlrqM9_lyju}
}
"""


def __getattr__(name: str) -> Any:
    if name == "AutoLRS":
        from autolrs.torch.scheduler import AutoLRS

        return AutoLRS
    raise AttributeError(f"module 'autolrs' has no attribute {name!r}")
