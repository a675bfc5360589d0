"""The one seeding rule (gstore/seeding.py) and the loaders and samplers that follow it."""
from __future__ import annotations

import zlib

import numpy as np
import pytest

from gstore.errors import OptionError
from gstore.seeding import derive_seed, rng
from gstore.pipeline.loader.seeds import SeedPlan, batch_seed
from gstore.pipeline.loader.state import STATE_VERSION, LoaderState
from gstore.pipeline.sampling.cluster import ClusterSampler
from gstore.pipeline.sampling.saint import RandomEdgeSampler, RandomNodeSampler


def test_rng_is_default_rng_of_the_seed_list():
    for keys in [(), (0,), (3, 7), (2**40, 1, 2)]:
        np.testing.assert_array_equal(rng(11, *keys).integers(0, 2**62, 8),
                                      np.random.default_rng([11, *keys]).integers(0, 2**62, 8))
    # strings are their crc32: stable across processes (unlike hash()) and apart from other keys
    np.testing.assert_array_equal(rng(4, "torch", 2).random(4),
                                  np.random.default_rng([4, zlib.crc32(b"torch"), 2]).random(4))
    assert rng(4, "torch", 2).random() != rng(4, 2).random()


def test_seed_plus_epoch_no_longer_collides():
    ids = np.arange(500, dtype=np.int64)
    a = SeedPlan(ids, 100, True, False, seed=5).batches(1)
    b = SeedPlan(ids, 100, True, False, seed=6).batches(0)
    assert not np.array_equal(np.concatenate(a), np.concatenate(b))
    assert derive_seed(5, 1) != derive_seed(6, 0)
    np.testing.assert_array_equal(np.concatenate(a), rng(5, 1).permutation(ids))


def test_derive_seed_range_determinism_and_spread():
    seeds = {derive_seed(s, e, i) for s in range(4) for e in range(4) for i in range(16)}
    assert len(seeds) == 256 and all(0 <= x < 2**63 for x in seeds)
    assert max(seeds) > 2**60                               # uses the high bits too
    assert derive_seed(1, 2, 3) == derive_seed(1, 2, 3) == batch_seed(1, 2, 3)
    assert derive_seed(-1) == derive_seed(2**64 - 1)        # mod 2^64, as the kernels' hashes
    assert derive_seed(np.int64(7), np.uint32(1)) == derive_seed(7, 1)


@pytest.mark.parametrize("bad", [1.5, True, None, b"x", [1]])
def test_keys_must_be_ints_or_strings(bad):
    with pytest.raises(OptionError, match="seed keys must be integers or strings"):
        rng(1, bad)
    with pytest.raises(OptionError):
        derive_seed(bad)


def _ring(n: int):
    src = np.arange(n)
    dst = (src + 1) % n
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.add.at(indptr, dst + 1, 1)
    indptr = np.cumsum(indptr)
    indices = src[np.argsort(dst, kind="stable")].astype(np.int32)
    return indptr, indices


def test_cluster_and_saint_shuffles_follow_the_rule():
    indptr, indices = _ring(40)
    parts = (np.arange(40) % 8).astype(np.int32)
    cs = ClusterSampler(indptr, indices, parts, 8, clusters_per_batch=3, seed=9)
    order = rng(9, 2).permutation(8)
    assert [b.tolist() for b in cs.epoch_batches(2)] == [sorted(order[i:i + 3]) for i in range(0, 8, 3)]
    ns = RandomNodeSampler(indptr, indices, 10, seed=9)
    assert np.concatenate(ns.epoch_batches(2)).tolist() != list(range(40))
    perm = rng(9, 2).permutation(40)
    assert [b.tolist() for b in ns.epoch_batches(2)] == [sorted(perm[i:i + 10]) for i in range(0, 40, 10)]
    es = RandomEdgeSampler(indptr, indices, 5, num_steps=2, seed=9)
    g = rng(9, 2)
    assert [b.tolist() for b in es.epoch_batches(2)] == [g.integers(0, 40, 5).tolist() for _ in range(2)]


def test_a_state_saved_under_the_old_rule_is_refused():
    state = {"version": STATE_VERSION - 1, "epoch": 1, "batches_consumed": 2, "config": {}}
    with pytest.raises(OptionError, match="version 2 was saved by a gstore whose shuffling rule "
                                          "differs") as e:
        LoaderState.from_json(state)
    assert "set_epoch" in str(e.value)
