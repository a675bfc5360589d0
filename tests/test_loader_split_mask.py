"""split_mask (cluster batches' loss nodes): the per-run path for runs of consecutive ids (clusters
of a reordered store) and the search path agree with a plain membership test."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gstore.pipeline.loader.gather_stage import RUN_MASK_MIN_RUN_LEN, _runs_mask, split_mask


@st.composite
def mask_case(draw):
    n = draw(st.integers(1, 400))
    runs = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 60)), min_size=1, max_size=6))
    nodes = np.unique(np.concatenate([np.arange(a, min(n, a + length)) for a, length in runs]))
    if draw(st.booleans()):  # runs in any order (each run ascending)
        pieces = np.split(nodes, np.flatnonzero(np.diff(nodes) != 1) + 1)
        order = draw(st.permutations(range(len(pieces))))
        nodes = np.concatenate([pieces[i] for i in order])
    split = np.array(sorted(draw(st.sets(st.integers(0, n - 1), max_size=n))), dtype=np.int64)
    return nodes.astype(np.int64), split


@settings(max_examples=150, deadline=None)
@given(mask_case())
def test_split_mask_matches_membership(case):
    nodes, split = case
    want = np.isin(nodes, split)
    assert np.array_equal(split_mask(nodes, split), want)
    breaks = np.flatnonzero(np.diff(nodes) != 1)
    assert np.array_equal(_runs_mask(nodes, breaks, split), want)


def test_split_mask_scattered_and_empty():
    rng = np.random.default_rng(0)
    nodes = rng.choice(10_000, 500, replace=False).astype(np.int64)   # scattered: search path
    split = np.sort(rng.choice(10_000, 3_000, replace=False)).astype(np.int64)
    assert np.array_equal(split_mask(nodes, split), np.isin(nodes, split))
    assert split_mask(nodes, np.zeros(0, np.int64)).tolist() == [False] * 500
    assert split_mask(np.zeros(0, np.int64), split).tolist() == []
    runs = np.arange(100, 100 + 40 * RUN_MASK_MIN_RUN_LEN, dtype=np.int64)   # one long run
    assert np.array_equal(split_mask(runs, split), np.isin(runs, split))
