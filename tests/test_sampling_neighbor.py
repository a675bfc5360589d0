"""NeighborSampler: kernels vs the plain-Python twin, plus the rules every sampled batch must obey."""
from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gstore
from gstore.errors import OptionError
from gstore.pipeline.sampling.neighbor import NeighborSampler
from reference_sampling import full_neighborhood, sample_neighbors
from store_factory import build_store, random_graph, reference_csr

# a small directed graph: rows are destinations; node 0 has in-neighbors 1..5, node 5 is isolated
SRC = [1, 2, 3, 4, 5, 2, 3, 0, 6, 6, 1, 4]
DST = [0, 0, 0, 0, 0, 1, 1, 2, 2, 3, 6, 6]
N_TINY = 8  # node 7 has no edges at all


def tiny(index_dtype=np.int32):
    indptr, indices = reference_csr(np.array(SRC), np.array(DST), N_TINY, directed=True)
    return indptr, indices.astype(index_dtype)


def as_lists(sub):
    return {"nodes": sub.nodes.tolist(), "hop_sizes": list(sub.hop_sizes),
            "blocks": [(b.src.tolist(), b.dst.tolist(), b.edge_ids.tolist()) for b in sub.blocks]}


def check_rules(sub, indptr, indices, seeds, fanouts, replace):
    """Everything a sampled batch must satisfy, whatever the random draws."""
    n, num_layers = len(indptr) - 1, len(fanouts)
    nodes = sub.nodes
    assert nodes.dtype == np.int64
    assert nodes[:len(seeds)].tolist() == list(seeds)  # seeds first, in order
    assert len(np.unique(nodes)) == len(nodes)  # no duplicate nodes
    assert len(nodes) == 0 or (nodes.min() >= 0 and nodes.max() < n)
    hs = sub.hop_sizes
    assert len(hs) == num_layers + 1 and hs[0] == len(seeds) and hs[-1] == len(nodes)
    assert all(a <= b for a, b in zip(hs, hs[1:]))
    assert len(sub.blocks) == num_layers
    assert sub.blocks[-1].num_dst == len(seeds)
    deg = np.diff(indptr)
    for b_idx, block in enumerate(sub.blocks):
        layer = num_layers - 1 - b_idx  # hop layer+1 from the seeds
        f = fanouts[layer]
        assert block.num_dst == hs[layer] and block.num_src == hs[layer + 1]
        for arr in (block.src, block.dst, block.edge_ids):
            assert arr.dtype == np.int64 and len(arr) == block.num_edges
        if block.num_edges:
            assert block.src.min() >= 0 and block.src.max() < block.num_src
            assert block.dst.min() >= 0 and block.dst.max() < block.num_dst
        dst_nodes = nodes[block.dst]
        # every sampled edge is an edge of the graph: src is the indices entry, in the dst's row
        assert np.array_equal(np.asarray(indices)[block.edge_ids], nodes[block.src])
        assert np.all(block.edge_ids >= indptr[dst_nodes]) and np.all(block.edge_ids < indptr[dst_nodes + 1])
        counts = np.bincount(block.dst, minlength=block.num_dst)
        d = deg[nodes[:block.num_dst]]
        if f < 0:
            expect = d
        elif replace:
            expect = np.where(d > 0, f, 0)
        else:
            expect = np.minimum(d, f)
        assert np.array_equal(counts, expect)
        if not replace:
            assert len(np.unique(block.edge_ids)) == block.num_edges
        # new nodes of this hop are exactly the new sources, numbered in order of first appearance
        src = block.src.tolist()
        firsts = list(dict.fromkeys(s for s in src if s >= block.num_dst))
        assert firsts == list(range(block.num_dst, block.num_src))


def test_full_fanout_matches_twin_and_spec():
    indptr, indices = tiny()
    seeds = [0, 3]
    sampler = NeighborSampler(indptr, indices, fanouts=[-1, -1])
    sub = sampler.sample(np.array(seeds), seed=1)
    assert as_lists(sub) == sample_neighbors(indptr, indices, seeds, [-1, -1], batch_seed=1)
    check_rules(sub, indptr, indices, seeds, [-1, -1], False)
    hops, edges = full_neighborhood(indptr, indices, seeds, 2)
    for k in range(3):
        assert set(sub.nodes[:sub.hop_sizes[k]].tolist()) == hops[k]
    for layer, block in enumerate(reversed(sub.blocks)):
        got = set(zip(sub.nodes[block.src].tolist(), sub.nodes[block.dst].tolist(), block.edge_ids.tolist()))
        assert got == edges[layer]
    # hand-checked: hop 1 of {0, 3} is 1..5 (in-neighbors of 0) and 6 (of 3)
    assert sub.nodes[:sub.hop_sizes[1]].tolist() == [0, 3, 1, 2, 4, 5, 6]


@pytest.mark.parametrize("replace", [False, True])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_random_fanout_matches_twin(replace, index_dtype):
    indptr, indices = tiny(index_dtype)
    for seed in range(5):
        sampler = NeighborSampler(indptr, indices, fanouts=[2, 3], replace=replace, seed=7)
        sub = sampler.sample(np.array([0, 6, 7]), seed=seed)
        ref = sample_neighbors(indptr, indices, [0, 6, 7], [2, 3], replace, sampler_seed=7, batch_seed=seed)
        assert as_lists(sub) == ref
        check_rules(sub, indptr, indices, [0, 6, 7], [2, 3], replace)


@st.composite
def graph_case(draw):
    n = draw(st.integers(1, 40))
    m = draw(st.integers(0, 200))
    src = draw(st.lists(st.integers(0, n - 1), min_size=m, max_size=m))
    dst = draw(st.lists(st.integers(0, n - 1), min_size=m, max_size=m))
    directed = draw(st.booleans())
    seeds = draw(st.lists(st.integers(0, n - 1), min_size=0, max_size=min(n, 8), unique=True))
    fanouts = draw(st.lists(st.sampled_from([-1, 0, 1, 2, 3, 5]), min_size=1, max_size=3))
    return n, src, dst, directed, seeds, fanouts


@settings(max_examples=40, deadline=None)
@given(graph_case(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.integers(0, 2**32),
       st.sampled_from([np.int32, np.int64]))
def test_random_graphs_match_twin_and_rules(case, replace, sampler_seed, batch_seed, index_dtype):
    n, src, dst, directed, seeds, fanouts = case
    indptr, indices = reference_csr(np.array(src, dtype=np.int64), np.array(dst, dtype=np.int64), n,
                                    directed=directed)
    indices = indices.astype(index_dtype)
    sampler = NeighborSampler(indptr, indices, fanouts, replace=replace, seed=sampler_seed)
    sub = sampler.sample(np.array(seeds, dtype=np.int64), seed=batch_seed)
    check_rules(sub, indptr, indices, seeds, fanouts, replace)
    ref = sample_neighbors(indptr, indices, seeds, fanouts, replace, sampler_seed, batch_seed)
    assert as_lists(sub) == ref


def big_csr(n=3000, m=60000, seed=0):
    s, d = random_graph(n, m, seed)
    indptr, indices = reference_csr(s, d, n, directed=False)
    return indptr, indices.astype(np.int32)


def test_deterministic_and_seed_sensitive():
    indptr, indices = big_csr()
    seeds = np.arange(0, 3000, 7)
    a = NeighborSampler(indptr, indices, [10, 5], seed=3)
    one, two = a.sample(seeds, seed=11), a.sample(seeds, seed=11)
    assert as_lists(one) == as_lists(two)
    assert as_lists(one) == as_lists(NeighborSampler(indptr, indices, [10, 5], seed=3).sample(seeds, seed=11))
    assert not np.array_equal(one.blocks[-1].edge_ids, a.sample(seeds, seed=12).blocks[-1].edge_ids)
    other = NeighborSampler(indptr, indices, [10, 5], seed=4).sample(seeds, seed=11)
    assert not np.array_equal(one.blocks[-1].edge_ids, other.blocks[-1].edge_ids)
    check_rules(one, indptr, indices, seeds.tolist(), [10, 5], False)


def test_independent_of_thread_count():
    indptr, indices = big_csr()
    seeds = np.arange(0, 3000, 5)
    sampler = NeighborSampler(indptr, indices, [8, 4], seed=1)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        serial = as_lists(sampler.sample(seeds, seed=2))
    finally:
        numba.set_num_threads(before)
    assert as_lists(sampler.sample(seeds, seed=2)) == serial


def test_thread_safe_concurrent_calls():
    indptr, indices = big_csr()
    sampler = NeighborSampler(indptr, indices, [6, 3], replace=False, seed=5)
    batches = [np.arange(i, 3000, 37) for i in range(12)]
    serial = [as_lists(sampler.sample(b, seed=i)) for i, b in enumerate(batches)]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda ib: as_lists(sampler.sample(ib[1], seed=ib[0])), enumerate(batches)))
    assert threaded == serial


def test_int64_indices_same_as_int32():
    indptr, indices = big_csr(n=500, m=5000)
    seeds = np.arange(0, 500, 9)
    a = NeighborSampler(indptr, indices, [4, 4], seed=9).sample(seeds, seed=1)
    b = NeighborSampler(indptr, indices.astype(np.int64), [4, 4], seed=9).sample(seeds, seed=1)
    assert as_lists(a) == as_lists(b)


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_from_store_reads_memmaps(tmp_path, index_dtype):
    s, d = random_graph(300, 2000, 3)
    store = gstore.open(build_store(tmp_path / "g", s, d, 300, index_dtype=index_dtype))
    assert store.indices.dtype == index_dtype and not store.indices.flags.writeable
    sampler = NeighborSampler.from_store(store, [5, 5], seed=2)
    seeds = np.array([3, 1, 299, 150])
    sub = sampler.sample(seeds, seed=4)
    check_rules(sub, np.asarray(store.indptr), np.asarray(store.indices), seeds.tolist(), [5, 5], False)
    ref = sample_neighbors(store.indptr, store.indices, seeds.tolist(), [5, 5], sampler_seed=2, batch_seed=4)
    assert as_lists(sub) == ref
    assert as_lists(pickle.loads(pickle.dumps(sampler)).sample(seeds, seed=4)) == ref


def test_bad_inputs_raise_option_error():
    indptr, indices = tiny()
    sampler = NeighborSampler(indptr, indices, [2])
    with pytest.raises(OptionError, match="duplicate seed 3"):
        sampler.sample(np.array([0, 3, 3]))
    assert as_lists(sampler.sample(np.array([3, 0]))) == sample_neighbors(indptr, indices, [3, 0], [2])
    with pytest.raises(OptionError):
        sampler.sample(np.array([0, N_TINY]))
    with pytest.raises(OptionError):
        sampler.sample(np.array([-1]))
    with pytest.raises(OptionError):
        sampler.sample(np.array([[0]]))
    for bad in ([], [-2], [1.5], "abc"):
        with pytest.raises(OptionError):
            NeighborSampler(indptr, indices, bad)
    with pytest.raises(OptionError):
        NeighborSampler(indptr, indices[:-1], [2])


def test_empty_batch():
    indptr, indices = tiny()
    sub = NeighborSampler(indptr, indices, [3, 2]).sample(np.zeros(0, np.int64))
    assert sub.num_nodes == 0 and sub.hop_sizes == [0, 0, 0] and sub.num_edges == 0
    assert sub.edge_index().shape == (2, 0)


def test_edge_index_is_union_of_blocks():
    indptr, indices = tiny()
    sub = NeighborSampler(indptr, indices, [-1, -1]).sample(np.array([0]))
    ei = sub.edge_index()
    pairs = set(zip(ei[0].tolist(), ei[1].tolist()))
    union = {(s, d) for b in sub.blocks for s, d in zip(b.src.tolist(), b.dst.tolist())}
    assert pairs == union and ei.shape[1] == len(union)


@pytest.mark.parametrize("replace", [False, True])
def test_uniform_over_neighbors(replace):
    """Star: node 0 has 20 in-neighbors; fanout 5 over 4000 fixed batch seeds. Each neighbor should be
    drawn ~1000 times; chi-square with 19 dof must stay below 60 (p ~ 1e-6). Fixed seeds: no flakes."""
    k, fanout, draws = 20, 5, 4000
    indptr, indices = reference_csr(np.arange(1, k + 1), np.zeros(k, np.int64), k + 1, directed=True)
    sampler = NeighborSampler(indptr, indices.astype(np.int32), [fanout], replace=replace, seed=0)
    hits = np.zeros(k + 1, dtype=np.int64)
    for s in range(draws):
        sub = sampler.sample(np.array([0]), seed=s)
        np.add.at(hits, sub.nodes[sub.blocks[0].src], 1)
    expected = draws * fanout / k
    chi2 = float(((hits[1:] - expected) ** 2 / expected).sum())
    assert hits[0] == 0 and hits.sum() == draws * fanout
    assert chi2 < 60, chi2


def test_hub_sampling_without_degree_scratch():
    """A node with 2 million in-neighbors: fanout 10 picks 10 distinct edges of its row."""
    k = 2_000_000
    indptr = np.array([0, k] + [k] * k, dtype=np.int64)
    indices = np.arange(1, k + 1, dtype=np.int64)
    sub = NeighborSampler(indptr, indices, [10], seed=1).sample(np.array([0]), seed=0)
    assert sub.blocks[0].num_edges == 10 and len(np.unique(sub.blocks[0].edge_ids)) == 10
    assert np.array_equal(indices[sub.blocks[0].edge_ids], sub.nodes[sub.blocks[0].src])


def huge_sparse_csr(tmp_path):
    """E = 2^32 + 3 stored edges in a SPARSE int32 file (only the last 3 entries are ever written):
    node 0's row holds 2^32 edges (holes read as source 0), node 1's row is [0, 1, 2] at offsets
    beyond 2^32. Checks that offsets and positions are int64 end to end."""
    hub = 2**32
    indices = np.memmap(tmp_path / "indices.bin", dtype=np.int32, mode="w+", shape=(hub + 3,))
    indices[hub:] = [0, 1, 2]
    indices.flush()
    indices = np.memmap(tmp_path / "indices.bin", dtype=np.int32, mode="r", shape=(hub + 3,))
    return np.array([0, hub, hub + 3, hub + 3], dtype=np.int64), indices, hub


def test_more_than_2_31_edges(tmp_path):
    indptr, indices, hub = huge_sparse_csr(tmp_path)
    sub = NeighborSampler(indptr, indices, [-1]).sample(np.array([1]))
    assert sub.blocks[0].edge_ids.tolist() == [hub, hub + 1, hub + 2]
    assert sub.nodes.tolist() == [1, 0, 2]
    sub = NeighborSampler(indptr, indices, [20], seed=3).sample(np.array([0, 1]), seed=5)
    check_rules(sub, indptr, indices, [0, 1], [20], False)
    hub_edges = sub.blocks[0].edge_ids[sub.blocks[0].dst == 0]
    assert len(np.unique(hub_edges)) == 20 and hub_edges.max() >= 2**31  # P(miss) = 2^-20, fixed seed
    ref = sample_neighbors(indptr, indices, [0, 1], [20], sampler_seed=3, batch_seed=5)
    assert as_lists(sub) == ref
