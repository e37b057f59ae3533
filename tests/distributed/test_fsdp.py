"""AutoLRS under FSDP2 (``fully_shard``): 2 gloo CPU processes, each writing its own results.

The worker is :mod:`tests.distributed.fsdp_check` (its docstring says what each scenario does);
two launches in all: ``train``, ``memory`` and ``mixed`` in one pair of processes, then
``resume`` in a fresh pair, from the DCP checkpoint the ``train`` run took mid-trial.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch.distributed.fsdp", reason="FSDP2 needs a torch built with distributed")

from tests.distributed import fsdp_check  # noqa: E402 - after the skip
from tests.distributed.launch import launch  # noqa: E402

MODULE = "tests.distributed.fsdp_check"
pytestmark = pytest.mark.slow  # two launches of 2 processes each


def results(out: Path, scenario: str, world: int = 2) -> list[dict[str, Any]]:
    """Each rank's own JSON file for ``scenario``."""
    ranks = [json.loads((out / f"{scenario}-rank{r}.json").read_text()) for r in range(world)]
    assert [(r["rank"], r["world_size"]) for r in ranks] == [(r, world) for r in range(world)]
    return ranks


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fsdp")
    launch(MODULE, ["train", "memory", "mixed"], out, timeout=240)
    return out


@pytest.fixture(scope="module")
def train(out):
    return results(out, "train")


@pytest.fixture(scope="module")
def resumed(out, train):
    launch(MODULE, ["resume"], out, timeout=240)
    return results(out, "resume")


def test_every_rank_applies_the_same_rates_to_its_own_shards(train):
    rank0, rank1 = train
    assert len(rank0["lrs"]) == fsdp_check.TOTAL and rank0["lrs"] == rank1["lrs"]
    assert rank0["decisions"] and rank0["decisions"] == rank1["decisions"]
    # each rank holds and updates its own half of the parameters and of AdamW's state
    assert rank0["params"] != rank1["params"]
    assert rank0["optimizer_local_numel"] + rank1["optimizer_local_numel"] == rank0["global_numel"]
    assert all(r["all_finite"] and not r["in_trial"] for r in train)


def test_every_restore_is_bit_exact_on_local_shards_and_optimizer_state(train):
    rank0, rank1 = train
    assert [r[:2] for r in rank0["restores"]] == [r[:2] for r in rank1["restores"]]
    assert {slot for _, slot, _ in rank0["restores"]} >= {"stage", "winner"}
    for rank in train:
        assert len(rank["restores"]) >= 5
        assert all(exact is True for _, _, exact in rank["restores"]), rank["restores"]


def test_a_nan_on_rank_1_alone_rolls_back_every_rank(train):
    expected = [step + 1 for step in fsdp_check.NAN_STEPS]  # steps_taken after the NaN step
    assert train[0]["rollbacks"] == train[1]["rollbacks"] == expected


def test_val_fn_with_collectives_is_called_by_every_rank_at_the_same_steps(train):
    # val_fn all-gathers weights and all-reduces its loss: had one rank called it alone, that
    # rank would have hung until the gloo timeout and the launch would have failed.
    calls = train[0]["val_calls"]
    assert len(calls) >= 20 and calls == train[1]["val_calls"]


def test_a_dcp_checkpoint_mid_trial_resumes_exactly_in_fresh_processes(train, resumed):
    saved = train[0]["checkpoint"]
    assert saved["in_trial"] and saved["phase"] == "trial"
    assert saved["step"] >= fsdp_check.CHECKPOINT_AFTER
    start = saved["step"] + 1
    for before, after in zip(train, resumed):
        assert after["resumed_after"] == saved["step"]
        assert after["warnings"] == []
        assert after["lrs"] == before["lrs"][start:]
        assert after["decisions"] == before["decisions"]
        assert after["params"] == before["params"]  # every rank's final local shards, exactly
        # val_fn records steps_taken, which counts the step it runs in: a call recorded at
        # saved + 1 ran inside the step the checkpoint follows.
        assert after["val_calls"] == [s for s in before["val_calls"] if s > saved["step"] + 1]
    # the NaN after the checkpoint rolls back the resumed run too
    assert max(fsdp_check.NAN_STEPS) + 1 in resumed[0]["rollbacks"]


def test_a_snapshot_holds_each_ranks_local_shards_only(out):
    ranks = results(out, "memory")
    single = ranks[0]["single"]
    unsharded = single["unsharded_param_bytes"]
    assert single["None"]["model"] == unsharded  # world size 1: the whole model
    assert single["None"]["optimizer"] >= 2 * unsharded  # AdamW: two moments (+ step counters)
    assert sum(r["sharded"]["None"]["model"] for r in ranks) == unsharded
    for rank in ranks:
        sharded = rank["sharded"]
        assert sharded["shards"] == 2
        assert sharded["None"]["model"] == sharded["local_param_bytes"] < 0.51 * unsharded
        assert sharded["None"]["optimizer"] < 0.51 * single["None"]["optimizer"]
        assert sharded["None"]["total"] < 0.55 * single["None"]["total"]
        for kind in ("single", "sharded"):
            for device in ("None", "cpu"):  # kept where the shards are, or offloaded to the host
                snap = rank[kind][device]
                assert snap["restored_exactly"] and snap["local_shapes_match"]
            assert rank[kind]["cpu"]["total"] == rank[kind]["None"]["total"]


def test_mixed_precision_with_bf16_parameters_and_host_snapshots(out):
    rank0, rank1 = results(out, "mixed")
    assert rank0["output_dtype"] == "torch.bfloat16"  # computed in bf16 ...
    assert rank0["param_dtypes"] == ["torch.float32"]  # ... from float32 sharded parameters
    assert rank0["lrs"] == rank1["lrs"] and rank0["decisions"] == rank1["decisions"]
    assert rank0["rollbacks"] == rank1["rollbacks"] == [fsdp_check.MIXED_NAN_STEP + 1]
    for rank in (rank0, rank1):
        assert rank["restores"] and all(exact is True for _, _, exact in rank["restores"])
        assert rank["all_finite"]
