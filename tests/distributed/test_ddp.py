"""AutoLRS under torch.distributed: 2 gloo processes on CPU against a single-process run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from autolrs import AutoLRS

from tests.distributed import ddp_check

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def torchrun(script: str, *args: str, nproc: int = 2, timeout: int = 300) -> subprocess.CompletedProcess:
    # this checkout's sources first: an installed autolrs may come from another checkout
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "src")]),
               OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", script, *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT,
    )


def single_process_run():
    """The same training on whole global batches in one process (the reference)."""
    model = ddp_check.make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    # the same deferred reads as under torch.distributed (tell at the controller's sync points)
    sched = AutoLRS(model, opt, total_steps=ddp_check.TOTAL, config=ddp_check.CONFIG, seed=0, sync_every=1 << 30)
    lrs = []
    for step, (x, y) in enumerate(ddp_check.global_batches(ddp_check.TOTAL)):
        lrs.append(sched.get_last_lr()[0])
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step(torch.tensor(float("nan")) if step == ddp_check.NAN_STEP else loss)
    sched.finish()
    return lrs, [[d["step"], d["lr"]] for d in sched.decisions]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    proc = torchrun(os.path.join(HERE, "ddp_check.py"), str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.load(open(out / f"rank{r}.json")) for r in range(2)]


def test_every_rank_applies_the_same_learning_rates(ranks):
    assert len(ranks[0]["lrs"]) == ddp_check.TOTAL
    assert ranks[0]["lrs"] == ranks[1]["lrs"]
    assert ranks[0]["decisions"] == ranks[1]["decisions"] and ranks[0]["decisions"]


def test_parameters_stay_identical_across_ranks_through_rollbacks(ranks):
    assert ranks[0]["rollbacks"], "the NaN on rank 1 must roll the trial back on every rank"
    assert ranks[0]["rollbacks"] == ranks[1]["rollbacks"]
    for a, b in zip(ranks[0]["checks"], ranks[1]["checks"]):
        assert a == b
    assert all(math.isfinite(v) for v in ranks[0]["checks"][-1])
    assert not ranks[0]["in_trial"]


def test_decisions_match_a_single_process_run(ranks):
    lrs, decisions = single_process_run()
    assert len(decisions) == len(ranks[0]["decisions"])
    for (step_a, lr_a), (step_b, lr_b) in zip(decisions, ranks[0]["decisions"]):
        assert step_a == step_b and lr_a == pytest.approx(lr_b, rel=1e-6)
    assert lrs == pytest.approx(ranks[0]["lrs"], rel=1e-6)
