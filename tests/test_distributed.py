"""Data-parallel training (train/distributed.py): the shard rule, and 2-rank gloo runs on CPU
launched as users launch them (`gstore train --nproc 2`, torchrun): accuracy, shards, a killed
rank, resume, a mismatched config. Ranks are spawned interpreters (never a fork after numba)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gstore.errors import OptionError
from gstore.pipeline.loader.seeds import SeedPlan, ShardedPlan, epoch_items, shard_counts
from train_graphs import community_store

HERE = Path(__file__).parent
COMMON = ["--epochs", "4", "--hidden", "16", "--fanouts", "5,5", "--num-workers", "1", "--lr", "0.01",
          "--device", "cpu", "--seed", "3"]
BATCH = 28            # per rank; the one-process run takes 2 x BATCH
TIMEOUT_S = 120       # a hang fails the test instead of the CI job


# ---- the shard rule -------------------------------------------------------------------------------
@pytest.mark.parametrize("n,batch,world", [(300, 28, 2), (300, 32, 3), (10, 3, 4), (64, 8, 1), (7, 1, 7)])
def test_shards_partition_each_epoch_with_equal_counts(n, batch, world):
    ids = np.arange(1000, 1000 + n, dtype=np.int64)
    whole = SeedPlan(ids, batch, shuffle=True, drop_last=False, seed=5)
    for epoch in (0, 1):
        full = whole.batches(epoch)
        shards = [ShardedPlan(whole, r, world, drop_remainder=True) for r in range(world)]
        assert len({s.num_batches for s in shards}) == 1           # equal steps: no rank waits
        kept = len(full) - len(full) % world
        got = sorted(int(i) for s in shards for b in s.batches(epoch) for i in b)
        want = sorted(int(i) for b in full[:kept] for i in b)
        assert got == want                                         # disjoint, and every kept seed
        for s in shards:
            # batch seeds and indices are the one-process run's for the same batch
            items = epoch_items(s, epoch, 0, seed=5)
            ref = {it.index: it for it in epoch_items(whole, epoch, 0, seed=5)}
            for it in items:
                assert it.index % world == s.rank
                assert it.seed == ref[it.index].seed and np.array_equal(it.payload, ref[it.index].payload)


class _Clusters:
    """What ClusterPlan reads of a ClusterSampler: parts shuffled by the one seeding rule."""

    num_parts, num_batches, q = 11, 6, 2

    def epoch_batches(self, epoch):
        from gstore.seeding import rng

        ids = rng(7, epoch).permutation(self.num_parts)
        return [ids[i:i + self.q] for i in range(0, self.num_parts, self.q)]


def test_cluster_shards_partition_each_epoch():
    from gstore.pipeline.loader.seeds import ClusterPlan

    whole = ClusterPlan(_Clusters(), 2, drop_last=False)
    for epoch in range(3):
        shards = [list(ShardedPlan(whole, r, 4, drop_remainder=True).batches(epoch)) for r in range(4)]
        assert [len(b) for b in shards] == [1, 1, 1, 1]         # 6 batches over 4 ranks: 2 dropped
        got = sorted(int(c) for b in shards for x in b for c in x)
        assert got == sorted(int(c) for x in whole.batches(epoch)[:4] for c in x)


def test_nproc_inside_a_torchrun_job_is_refused(monkeypatch):
    from gstore.launch import launch_train

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(OptionError, match="--nproc inside a torchrun job"):
        launch_train(2, ["train", "s"])


def test_evaluation_shards_cover_every_batch():
    whole = SeedPlan(np.arange(50, dtype=np.int64), 7, shuffle=False, drop_last=False, seed=0)
    assert shard_counts(8, 3, drop_remainder=False) == [3, 3, 2]
    got = sorted(int(i) for r in range(3) for b in ShardedPlan(whole, r, 3, False).batches(0) for i in b)
    assert got == list(range(50))


def test_resumed_shard_continues_after_its_consumed_batches():
    whole = SeedPlan(np.arange(100, dtype=np.int64), 10, shuffle=True, drop_last=False, seed=1)
    s = ShardedPlan(whole, 1, 2, drop_remainder=True)
    rest = epoch_items(s, 2, 3, seed=1)
    assert [it.index for it in rest] == [7, 9]


def test_history_is_refused_data_parallel_and_devices_follow_local_rank():
    import torch

    from gstore.train.distributed import DistContext, rank_device, refuse_serial_only
    from gstore.train.run_config import TrainConfig

    ctx = DistContext(rank=1, world_size=2, local_rank=1, local_world_size=2)
    with pytest.raises(OptionError, match="history cannot train data-parallel"):
        refuse_serial_only(TrainConfig(store="s", method="history", variant="gas"), ctx)
    refuse_serial_only(TrainConfig(store="s", method="history", variant="gas"), DistContext())
    assert rank_device(torch.device("cuda", 0), ctx) == torch.device("cuda", 1)
    assert rank_device(torch.device("cpu"), ctx) == torch.device("cpu")


def test_the_ranks_on_one_machine_split_the_memory_budget():
    """Each rank sized layer-wise inference to the whole --memory-budget: N ranks used N x it."""
    from gstore.train.distributed import DistContext, rank_budget

    assert rank_budget("2GiB", DistContext()) == 2 << 30
    two_here = DistContext(rank=1, world_size=4, local_rank=1, local_world_size=2)  # 2 machines x 2
    assert rank_budget("2GiB", two_here) == 1 << 30
    assert rank_budget(3 << 20, DistContext(rank=0, world_size=3, local_world_size=3)) == 1 << 20


def test_launcher_passes_arguments_through_and_names_the_failed_rank():
    import signal
    from types import SimpleNamespace as F

    from gstore.launch import failure_line, passthrough_args

    assert passthrough_args(["train", "s", "--nproc", "2", "-o", "r", "--nproc=3"]) == ["train", "s", "-o", "r"]
    line = failure_line({0: F(exitcode=-signal.SIGTERM, pid=10, timestamp=2),
                         1: F(exitcode=-signal.SIGKILL, pid=11, timestamp=3)})
    assert line.startswith("rank 1 (pid 11) was killed by SIGKILL")
    assert failure_line({0: F(exitcode=1, pid=10, timestamp=1)}).startswith("rank 0 (pid 10) exited with status 1")


# ---- real 2-rank runs -----------------------------------------------------------------------------
def gstore(*args, env: dict | None = None, timeout: float = TIMEOUT_S):
    e = {k: v for k, v in os.environ.items() if k != "GSTORE_FAULT_AT"}
    e.update(GSTORE_DIST_TIMEOUT_S="60", **(env or {}))
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "gstore", *map(str, args)], capture_output=True, text=True,
                       env=e, timeout=timeout)
    r.seconds = time.perf_counter() - t0
    return r


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def metrics(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("ddp")
    store = community_store(d / "g.gstore")
    one = gstore("train", store, "-o", d / "one", *COMMON, "--batch-size", 2 * BATCH, "-q")
    assert one.returncode == 0, one.stderr
    two = gstore("train", store, "-o", d / "two", *COMMON, "--batch-size", BATCH, "--nproc", 2, "-v")
    assert two.returncode == 0, two.stderr
    return store, d, one, two


def test_two_ranks_reach_the_one_process_accuracy(runs):
    store, d, one, two = runs
    a, b = summary(d / "one"), summary(d / "two")
    assert b["epochs"] == 4 and a["test_accuracy"] > 0.7
    # same global batch; the tolerance is loose (other batches, dropped remainder), not flaky
    assert abs(a["test_accuracy"] - b["test_accuracy"]) < 0.08, (a["test_accuracy"], b["test_accuracy"])
    assert abs(a["val_accuracy"] - b["val_accuracy"]) < 0.08
    cfg = json.loads((d / "two" / "config.json").read_text())
    assert cfg["world_size"] == 2 and cfg["batch_size"] == BATCH
    assert two.stdout.count("accuracy (layer-wise inference") == 1      # rank 0 alone reports


def test_the_real_run_logs_shards_that_partition_each_epoch(runs):
    import gstore as gs

    store, d, one, two = runs
    train = np.asarray(gs.open(store).split("train"), dtype=np.int64)
    whole = SeedPlan(train, BATCH, shuffle=True, drop_last=False, seed=3)
    pat = re.compile(r"rank (\d)/2 epoch (\d+) shard: (\d+) batches, (\d+) seeds, id sum (\d+), id xor (\d+)")
    logged = {(int(m[1]), int(m[2])): tuple(map(int, m.groups()[2:])) for m in pat.finditer(two.stderr)}
    assert len(logged) == 2 * 4, two.stderr[-2000:]
    for epoch in range(4):
        for rank in (0, 1):
            b = list(ShardedPlan(whole, rank, 2, drop_remainder=True).batches(epoch))
            ids = np.concatenate(b)
            assert logged[rank, epoch] == (len(b), len(ids), int(ids.sum()), int(np.bitwise_xor.reduce(ids)))
        r0, r1 = logged[0, epoch], logged[1, epoch]
        assert r0[0] == r1[0]
        dropped = len(whole.batches(epoch)) % 2
        assert r0[1] + r1[1] == len(train) - sum(len(x) for x in whole.batches(epoch)[len(whole.batches(epoch)) - dropped:])


def test_a_killed_rank_ends_the_job_in_one_line_and_the_run_resumes_exactly(runs):
    store, d, one, two = runs
    run = d / "killed"
    args = ["train", store, "-o", run, *COMMON, "--batch-size", BATCH, "--nproc", 2, "-q", "--checkpoint-every", 2]
    r = gstore(*args, env={"GSTORE_FAULT_AT": "train:rank1:epoch2:batch3"})
    assert r.returncode == 1 and r.seconds < 60, (r.seconds, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    last = [ln for ln in r.stderr.splitlines() if ln.startswith("Error")][-1]
    assert "rank 1" in last and "SIGKILL" in last, r.stderr[-2000:]
    assert len(metrics(run)) == 2                              # epochs 0, 1 finished
    r = gstore(*[a for a in args if a != "-q"], "--resume", "-q")
    assert r.returncode == 0, r.stderr
    want, got = metrics(d / "two"), metrics(run)
    for k in ("loss", "train", "val", "test"):
        assert [m[k] for m in got] == [m[k] for m in want], k
    assert summary(run)["metrics"] == summary(d / "two")["metrics"]


def test_resume_with_another_number_of_ranks_is_refused(runs):
    store, d, one, two = runs
    r = gstore("train", store, "-o", d / "two", *COMMON, "--batch-size", BATCH, "--resume", "--epochs", 5)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "--nproc (ranks): saved 2, now 1" in r.stderr, r.stderr


def test_ranks_with_different_configs_end_with_one_line(runs):
    store, d, one, two = runs
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        str(HERE / "ddp_worker.py"), "train", str(store), "-o", str(d / "mismatch"), *COMMON,
                        "--batch-size", str(BATCH), "-q"], capture_output=True, text=True, timeout=TIMEOUT_S,
                       env=dict(os.environ, DDP_TEST_RANK1_EXTRA="--dropout 0.25", GSTORE_DIST_TIMEOUT_S="60"))
    assert r.returncode != 0 and time.perf_counter() - t0 < 60
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1, r.stderr[-3000:]
    assert "different run configs: rank 1 differs from rank 0 in --dropout (rank 0: 0.5, rank 1: 0.25)" in errors[0]
    assert not (d / "mismatch").exists()


def test_nproc_bad_values_are_one_line(tmp_path, runs):
    store = runs[0]
    r = gstore("train", store, "-o", tmp_path / "r", "--nproc", 0)
    assert r.returncode == 1 and "Traceback" not in r.stderr and "--nproc must be >= 1" in r.stderr
    assert not (tmp_path / "r").exists()


def test_a_check_failing_on_every_rank_prints_one_line(tmp_path, runs):
    store = runs[0]
    r = gstore("train", store, "-o", tmp_path / "r", "--method", "cluster-gcn", "--epochs", "1", "--nproc", 2)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("Error")]
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(errors) == 1 and "needs the store's clusters" in errors[0], r.stderr[-2000:]
    assert not (tmp_path / "r").exists()
