"""Samplers built from raw CSR arrays check them before any kernel runs (a bad CSR is an OptionError,
never an out-of-range read); a store's checked CSR (GraphStore.csr()) is not scanned a second time."""
from __future__ import annotations

import numpy as np
import pytest

import gstore
from gstore.errors import OptionError
from gstore.pipeline.sampling import inputs
from gstore.pipeline.sampling.cluster import ClusterSampler
from gstore.pipeline.sampling.neighbor import NeighborSampler
from gstore.pipeline.sampling.saint import RandomEdgeSampler, RandomNodeSampler
from store_factory import build_store, random_graph

# 4 nodes; row 2 is empty. `indptr` ends at len(indices) and starts at 0 (the old checks passed).
GOOD = (np.array([0, 2, 3, 3, 5], np.int64), np.array([1, 2, 0, 0, 1], np.int32))
DECREASING = (np.array([0, 3, 2, 3, 5], np.int64), GOOD[1])       # row 1 would run backwards
OUT_OF_RANGE = (GOOD[0], np.array([1, 2, 0, 9, 1], np.int32))       # source 9 of 4 nodes
NEGATIVE = (GOOD[0], np.array([1, -7, 0, 0, 1], np.int32))

MAKERS = {
    "neighbor": lambda p, i: NeighborSampler(p, i, [2, 2]),
    "cluster": lambda p, i: ClusterSampler(p, i, parts=np.array([0, 0, 1, 1]), num_parts=2,
                                           clusters_per_batch=1),
    "saint-node": lambda p, i: RandomNodeSampler(p, i, batch_size=2),
    "saint-edge": lambda p, i: RandomEdgeSampler(p, i, batch_size=2),
}


@pytest.mark.parametrize("make", MAKERS.values(), ids=MAKERS.keys())
@pytest.mark.parametrize("csr, where", [(DECREASING, "indptr[2]"), (OUT_OF_RANGE, "indices[3]"),
                                        (NEGATIVE, "indices[1]")], ids=["decreasing", "too-big", "negative"])
def test_bad_raw_csr_is_refused_naming_the_entry(make, csr, where):
    with pytest.raises(OptionError) as e:
        make(*csr)
    assert where in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("make", MAKERS.values(), ids=MAKERS.keys())
def test_good_raw_csr_is_accepted(make):
    make(*GOOD)


def test_block_edges_are_checked(monkeypatch):
    """A bad entry right after a block boundary (the overlap of the indptr blocks) is still found."""
    monkeypatch.setattr(inputs, "_CHECK_BLOCK", 2)
    with pytest.raises(OptionError, match=r"indptr\[2\]"):
        NeighborSampler(*DECREASING, [1])
    with pytest.raises(OptionError, match=r"indices\[3\]"):
        NeighborSampler(*OUT_OF_RANGE, [1])


def test_store_csr_is_not_scanned_again(tmp_path, monkeypatch):
    src, dst = random_graph(50, 300, seed=4)
    g = gstore.open(build_store(tmp_path / "s", src, dst, 50))
    calls = []
    monkeypatch.setattr(inputs, "_check_raw_csr", lambda *a: calls.append(a))
    NeighborSampler.from_store(g, [3])
    assert calls == []
    NeighborSampler(np.array(g.indptr), np.array(g.indices), [3])    # copies: not the checked objects
    assert len(calls) == 1
