"""Layer-wise inference split across ranks (pipeline/inference/ranks.py): two "ranks" in threads
with a barrier write one output equal to the one-process run's, and the ranges partition the nodes."""
from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
import torch

import gstore
from gstore.pipeline.inference.layerwise import layerwise_inference
from gstore.pipeline.inference.ranks import rank_nodes
from store_factory import build_store, random_graph

models = pytest.importorskip("gstore.train.models", reason="train/models.py (GNN) is not in this tree")


class ThreadGroup:
    """A RankGroup of threads (the real one is train/distributed.py's DistContext)."""

    def __init__(self, rank: int, world_size: int, barrier: threading.Barrier) -> None:
        self.rank, self.world_size, self._barrier = rank, world_size, barrier

    def barrier(self) -> None:
        self._barrier.wait(timeout=60)


@pytest.mark.parametrize("world", [1, 2, 3, 7])
def test_rank_ranges_partition_the_nodes(world):
    indptr = np.r_[0, np.cumsum(np.random.default_rng(world).integers(0, 30, 100))].astype(np.int64)
    ranges = [rank_nodes(indptr, r, world) for r in range(world)]
    assert ranges[0][0] == 0 and ranges[-1][1] == 100
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    cost = [int(indptr[hi] - indptr[lo]) + hi - lo for lo, hi in ranges]
    assert max(cost) <= (int(indptr[-1]) + 100) / world + 30 + 1     # within one node of balanced


@pytest.mark.parametrize("extras", [dict(jk="none"), dict(jk="cat", residual=True)])
def test_two_ranks_write_the_one_process_output(tmp_path, extras):
    n = 60
    src, dst = random_graph(n - 6, 300, seed=4)
    src, dst = np.r_[src, np.arange(n - 6)], np.r_[dst, np.full(n - 6, 3)]      # node 3: a hub
    x = np.random.default_rng(1).standard_normal((n, 5)).astype(np.float32)
    build_store(tmp_path / "s", src, dst, n, features=x, directed=True)
    store = gstore.open(tmp_path / "s")
    torch.manual_seed(0)
    model = models.GNN("sage", in_dim=5, hidden=8, out_dim=3, num_layers=3, dropout=0.0, **extras)
    ref = np.asarray(layerwise_inference(store, model, tmp_path / "one", memory_budget=8000).open_output())
    barrier, results, errors = threading.Barrier(2), {}, []

    def rank(r: int) -> None:
        try:
            results[r] = layerwise_inference(store, copy.deepcopy(model), tmp_path / "two", memory_budget=8000,
                                             keep_layers=True, ranks=ThreadGroup(r, 2, barrier))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=rank, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert results[1].output is None and results[0].output is not None
    np.testing.assert_allclose(np.asarray(results[0].open_output()), ref, rtol=1e-5, atol=1e-6)
    assert len(results[0].kept_layers) == 3          # checksums of rows both ranks wrote
    assert not (tmp_path / "two" / ".layerwise.tmp").exists()
