"""gstore/set_kernels.py (bitmap and counting passes over dense ids) against plain-Python twins, and
the callers that replaced np.unique / np.sort with them: the loader's seed check, the union of a
batch's edges, GraphSAINT node chunks, reorder's splits."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference_sets as ref
from gstore import set_kernels as S
from gstore.errors import OptionError

ids_lists = st.integers(1, 200).flatmap(
    lambda n: st.tuples(st.just(n), st.lists(st.integers(0, n - 1), max_size=300)))


@settings(max_examples=60, deadline=None)
@given(ids_lists)
def test_first_duplicate_and_sorted_unique_match_twins(case):
    n, ids = case
    a = np.array(ids, dtype=np.int64)
    assert S.first_duplicate(a, n) == ref.first_duplicate(ids)
    assert S.sorted_unique_ids(a, n).tolist() == ref.sorted_unique_ids(ids)


@settings(max_examples=60, deadline=None)
@given(ids_lists)
def test_counting_groups_match_twin(case):
    k, keys = case
    starts = np.empty(k + 1, dtype=np.int64)
    members = np.empty(len(keys), dtype=np.int64)
    S.counting_groups(np.array(keys, dtype=np.int64), np.int64(k), starts, members)
    assert [members[starts[g]:starts[g + 1]].tolist() for g in range(k)] == ref.counting_groups(keys, k)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 30).flatmap(lambda n: st.tuples(
    st.just(n), st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=200))))
def test_first_pair_positions_match_twin(case):
    n, pairs = case
    src = np.array([p[0] for p in pairs], dtype=np.int64)
    dst = np.array([p[1] for p in pairs], dtype=np.int64)
    assert S.first_pair_positions(src, dst, n).tolist() == ref.first_pair_positions(src.tolist(), dst.tolist())


def test_bitmap_words_edges():
    # ids on word boundaries and the last bit of a word
    ids = np.array([0, 63, 64, 127, 128, 5000, 63], dtype=np.int64)
    assert S.sorted_unique_ids(ids, 5001).tolist() == [0, 63, 64, 127, 128, 5000]
    assert S.first_duplicate(ids, 5001) == 6
    assert S.sorted_unique_ids(np.zeros(0, np.int64), 10).tolist() == []


def test_loader_seed_check_uses_the_bitmap(monkeypatch):
    """The loader's duplicate check of explicit seed ids (np.unique: 82 s at 33.5M seeds)."""
    from gstore.pipeline.loader import loader as L

    class Store:
        num_nodes = 1000
    monkeypatch.setattr(np, "unique", lambda *a, **k: pytest.fail("np.unique over the seeds"))
    ids = np.random.default_rng(0).permutation(1000)[:600]
    assert np.array_equal(L._seed_ids(Store(), ids), ids)
    with pytest.raises(OptionError, match="duplicates .*id 7 at position 3"):
        L._seed_ids(Store(), np.array([1, 7, 9, 7, 2]))


def test_saint_node_chunks_are_sorted_chunks_of_the_permutation():
    from gstore.pipeline.sampling.saint import RandomNodeSampler, _epoch_rng

    indptr = np.zeros(1001, dtype=np.int64)
    s = RandomNodeSampler(indptr, np.zeros(0, dtype=np.int32), 64, seed=3)
    got = s.epoch_batches(2)
    order = _epoch_rng(3, 2).permutation(1000)
    want = [np.sort(order[i:i + 64]) for i in range(0, 1000, 64)]
    assert len(got) == len(want) and all(np.array_equal(a, b) for a, b in zip(got, want))
