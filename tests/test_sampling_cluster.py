"""ClusterSampler and the GraphSAINT samplers: induced-subgraph kernel vs twin, rules, GCN weights."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gstore
from gstore.errors import OptionError
from gstore.pipeline.sampling import cluster_kernels as ck
from gstore.pipeline.sampling.cluster import ClusterSampler, build_induced
from gstore.pipeline.sampling.saint import RandomEdgeSampler, RandomNodeSampler
from reference_sampling import induced_subgraph
from store_factory import build_store, random_graph, reference_csr

# two triangles {0,1,2} and {3,4,5} joined by 2-3, a pendant 6 on 5, node 7 isolated with a self-loop
TINY_EDGES = [(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5), (2, 3), (5, 6), (7, 7)]
TINY_PARTS = np.array([0, 0, 0, 1, 1, 1, 2, 2], dtype=np.int32)


def tiny(index_dtype=np.int32):
    s, d = zip(*TINY_EDGES)
    indptr, indices = reference_csr(np.array(s), np.array(d), 8, directed=False)
    return indptr, indices.astype(index_dtype)


def as_twin(sub):
    rows = [sorted(zip(sub.indices[a:b].tolist(), sub.edge_ids[a:b].tolist()))
            for a, b in zip(sub.indptr[:-1], sub.indptr[1:])]
    weights = None
    if sub.edge_weight is not None:
        weights = [[w for _, w in sorted(zip(zip(sub.indices[a:b].tolist(), sub.edge_ids[a:b].tolist()),
                                             sub.edge_weight[a:b].tolist()))]
                   for a, b in zip(sub.indptr[:-1], sub.indptr[1:])]
    return sub.nodes.tolist(), rows, weights


def canonical(sub, weights=False):
    """The subgraph's edges as a sorted list of (dst, src, edge id) (with their weights)."""
    src, dst = sub.edge_index()
    eids = sub.edge_ids if len(sub.edge_ids) else np.zeros(len(src), np.int64)
    keys = list(zip(dst.tolist(), src.tolist(), eids.tolist()))
    if not weights:
        return sorted(keys)
    return sorted(zip(keys, sub.edge_weight.tolist()))


def assert_matches_twin(sub, indptr, indices, nodes, self_loops, normalize, keep_order=False):
    got_nodes, got_rows, got_w = as_twin(sub)
    ref_nodes, ref_rows, ref_w = induced_subgraph(indptr, indices, nodes, self_loops, normalize,
                                                  keep_order)
    assert got_nodes == ref_nodes and got_rows == ref_rows
    if normalize:
        for g, r in zip(got_w, ref_w):
            np.testing.assert_allclose(g, r, rtol=1e-6)
    else:
        assert sub.edge_weight is None


def check_induced(sub, indptr, indices, self_loops, sorted_nodes=True):
    """Rules: unique nodes (sorted unless cluster-ordered); every store edge among the nodes is
    present, and only those; one self-loop per node when requested (added ones have edge id -1)."""
    nodes, n = sub.nodes, sub.num_nodes
    assert nodes.dtype == np.int64 and len(np.unique(nodes)) == n
    assert not sorted_nodes or np.all(np.diff(nodes) > 0)
    assert sub.indptr.dtype == np.int64 and sub.indptr[0] == 0 and sub.indptr[-1] == sub.num_edges
    assert sub.indices.dtype == np.int64 and sub.edge_ids.dtype == np.int64
    assert sub.num_edges == 0 or (sub.indices.min() >= 0 and sub.indices.max() < n)
    members = set(nodes.tolist())
    for i, v in enumerate(nodes.tolist()):
        a, b = sub.indptr[i], sub.indptr[i + 1]
        eids = sub.edge_ids[a:b]
        real = eids >= 0
        expect = {e for e in range(indptr[v], indptr[v + 1]) if int(indices[e]) in members}
        assert set(eids[real].tolist()) == expect and int(real.sum()) == len(expect)
        assert np.array_equal(np.asarray(indices)[eids[real]], nodes[sub.indices[a:b][real]])
        loops = int((sub.indices[a:b] == i).sum())
        if self_loops:
            assert loops == 1
            assert np.all(sub.indices[a:b][~real] == i)
        else:
            assert real.all()
    if sub.edge_weight is not None:
        assert sub.edge_weight.dtype == np.float32 and len(sub.edge_weight) == sub.num_edges


def test_tiny_clusters_exact():
    indptr, indices = tiny()
    sampler = ClusterSampler(indptr, indices, TINY_PARTS, clusters_per_batch=2)
    sub = sampler.sample(np.array([2, 0]), seed=0)
    assert sub.nodes.tolist() == [0, 1, 2, 6, 7] and sub.clusters.tolist() == [0, 2]
    check_induced(sub, indptr, indices, True)
    assert_matches_twin(sub, indptr, indices, [0, 1, 2, 6, 7], True, True)
    # hand-checked rows: 0 <- {1, 2, then the added loop 0}; node 6 keeps only its added loop (5 is
    # outside); node 7 keeps its own self-edge and gets no second one
    assert sub.indices[sub.indptr[0]:sub.indptr[1]].tolist() == [1, 2, 0]
    assert sub.edge_ids[sub.indptr[3]:sub.indptr[4]].tolist() == [-1]
    assert sub.edge_ids[sub.indptr[4]:sub.indptr[5]].tolist() == [int(indptr[7])]


def test_edges_between_chosen_clusters_are_kept():
    indptr, indices = tiny()
    sub = ClusterSampler(indptr, indices, TINY_PARTS, self_loops=False, normalize=False).sample(np.array([0, 1]))
    pairs = {(int(sub.nodes[s]), int(sub.nodes[d])) for s, d in zip(*sub.edge_index())}
    assert (2, 3) in pairs and (3, 2) in pairs and len(pairs) == 14
    check_induced(sub, indptr, indices, False)


def test_gcn_norm_matches_dense():
    indptr, indices = tiny()
    n_all = len(indptr) - 1
    dense = np.zeros((n_all, n_all))
    for v in range(n_all):
        dense[v, indices[indptr[v]:indptr[v + 1]]] = 1.0  # dense[dst, src]
    for clusters in ([0], [0, 1], [1, 2], [0, 1, 2]):
        sub = ClusterSampler(indptr, indices, TINY_PARTS).sample(np.array(clusters))
        a = dense[np.ix_(sub.nodes, sub.nodes)]
        a = a + np.diag((np.diag(a) == 0).astype(float))  # remaining self-loops
        dinv = 1 / np.sqrt(a.sum(axis=1))
        norm = dinv[:, None] * a * dinv[None, :]
        got = np.zeros_like(norm)
        src, dst = sub.edge_index()
        got[dst, src] = sub.edge_weight
        np.testing.assert_allclose(got, norm, rtol=1e-6)


@st.composite
def induced_case(draw):
    n = draw(st.integers(1, 40))
    m = draw(st.integers(0, 200))
    src = draw(st.lists(st.integers(0, n - 1), min_size=m, max_size=m))
    dst = draw(st.lists(st.integers(0, n - 1), min_size=m, max_size=m))
    k = draw(st.integers(1, 6))
    parts = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    chosen = draw(st.lists(st.integers(0, k - 1), min_size=0, max_size=k, unique=True))
    return n, src, dst, draw(st.booleans()), np.array(parts), k, chosen


@settings(max_examples=40, deadline=None)
@given(induced_case(), st.booleans(), st.booleans(), st.sampled_from([np.int32, np.int64]))
def test_random_graphs_match_twin(case, self_loops, normalize, index_dtype):
    n, src, dst, directed, parts, k, chosen = case
    indptr, indices = reference_csr(np.array(src, np.int64), np.array(dst, np.int64), n, directed=directed)
    indices = indices.astype(index_dtype)
    sampler = ClusterSampler(indptr, indices, parts, num_parts=k, normalize=normalize, self_loops=self_loops)
    sub = sampler.sample(np.array(chosen, dtype=np.int64))
    # cluster order: ascending cluster, ascending id within it
    want_nodes = [v for c in sorted(chosen) for v in range(n) if parts[v] == c]
    assert sub.nodes.tolist() == want_nodes
    check_induced(sub, indptr, indices, self_loops, sorted_nodes=False)
    assert_matches_twin(sub, indptr, indices, want_nodes, self_loops, normalize, keep_order=True)
    # given pos, or no edge ids: the same subgraph
    given = ClusterSampler(indptr, indices, parts, num_parts=k, normalize=normalize,
                           self_loops=self_loops, perm=sampler.perm, partptr=sampler.partptr,
                           contiguous=sampler.perm is None, edge_ids=False,
                           pos=None if sampler.pos is None else sampler.pos.astype(np.int64))
    sub3 = given.sample(np.array(chosen, dtype=np.int64))
    assert len(sub3.edge_ids) == 0 and np.array_equal(sub3.edge_index(), sub.edge_index())
    ids = np.sort(np.array(chosen, np.int64))
    for chunks in (1, 3, 64):  # any chunking of the one pass gives the same arrays
        _, _, ei, eids = ck.induced_ranges(indptr, indices, sampler.partptr[ids], sampler.partptr[ids + 1],
                                           self_loops, True, ck.RANGE_TABLE_BLOCKS, sampler.perm,
                                           sampler.pos, chunks)
        assert np.array_equal(ei, sub.edge_index()) and np.array_equal(eids, sub.edge_ids)
    # sorted parts (contiguous clusters, no permutation kept) give the same subgraph after relabelling
    order = np.argsort(parts, kind="stable")
    relabel = np.empty(n, np.int64)
    relabel[order] = np.arange(n)
    s2, d2 = relabel[np.array(src, np.int64)], relabel[np.array(dst, np.int64)]
    ip2, ix2 = reference_csr(s2, d2, n, directed=directed)
    contiguous = ClusterSampler(ip2, ix2, parts[order], num_parts=k, self_loops=self_loops, normalize=normalize)
    assert contiguous.perm is None
    sub2 = contiguous.sample(np.array(chosen, dtype=np.int64))
    assert sub2.nodes.tolist() == sorted(relabel[want_nodes].tolist())
    assert sub2.num_edges == sub.num_edges


def test_unsorted_rows_still_complete():
    s, d = random_graph(60, 500, 4)
    indptr, indices = reference_csr(s, d, 60, directed=False)
    rng = np.random.default_rng(0)
    shuffled = indices.copy()
    for v in range(60):
        rng.shuffle(shuffled[indptr[v]:indptr[v + 1]])
    nodes = np.sort(rng.choice(60, 25, replace=False))
    sub = build_induced(indptr, shuffled, nodes, normalize=False, self_loops=True)
    check_induced(sub, indptr, shuffled, True)


def test_cluster_index_and_epochs():
    rng = np.random.default_rng(1)
    parts = rng.integers(0, 13, 500).astype(np.int32)
    partptr, perm = ck.cluster_index(parts, np.int64(13))
    assert np.array_equal(perm, np.argsort(parts, kind="stable"))
    assert np.array_equal(np.diff(partptr), np.bincount(parts, minlength=13))
    s, d = random_graph(500, 3000, 2)
    indptr, indices = reference_csr(s, d, 500, directed=False)
    sampler = ClusterSampler(indptr, indices, parts, clusters_per_batch=4, seed=5)
    assert sampler.num_batches == 4
    ep0 = sampler.epoch_batches(0)
    assert [len(b) for b in ep0] == [4, 4, 4, 1]
    assert sorted(np.concatenate(ep0).tolist()) == list(range(13))
    assert all(np.array_equal(a, b) for a, b in zip(ep0, sampler.epoch_batches(0)))
    assert any(not np.array_equal(a, b) for a, b in zip(ep0, sampler.epoch_batches(1)))
    covered = np.concatenate([sampler.sample(b).nodes for b in ep0])
    assert np.array_equal(np.sort(covered), np.arange(500))  # an epoch visits every node once


def test_from_store_and_partition_sources(tmp_path):
    s, d = random_graph(200, 1500, 6)
    store = gstore.open(build_store(tmp_path / "g", s, d, 200))
    parts = (np.arange(200) % 7).astype(np.int32)
    a = ClusterSampler.from_store(store, parts=parts, clusters_per_batch=3)
    sub = a.sample(np.array([1, 4]))
    check_induced(sub, store.indptr, store.indices, True, sorted_nodes=False)
    fake = SimpleNamespace(indptr=store.indptr, indices=store.indices, csr=store.csr, path=store.path,
                           has_array=lambda name: False,
                           partition=SimpleNamespace(parts=parts, num_parts=7))
    b = ClusterSampler.from_store(fake, clusters_per_batch=3)
    assert b.num_parts == 7 and b.num_batches == 3
    assert np.array_equal(b.sample(np.array([1, 4])).edge_ids, sub.edge_ids)
    partptr, perm = ck.cluster_index(parts, np.int64(7))
    c = ClusterSampler(store.indptr, store.indices, perm=perm, partptr=partptr)
    assert np.array_equal(c.sample(np.array([4, 1])).edge_ids, sub.edge_ids)
    # a partition of a store reordered by it: contiguous id ranges, perm never read
    sorted_parts = np.sort(parts)
    ranges = ck.cluster_index(sorted_parts, np.int64(7))[0]
    fake.partition = SimpleNamespace(parts=sorted_parts, num_parts=7, partptr=ranges, perm=None,
                                     contiguous=True)
    d = ClusterSampler.from_store(fake)
    assert d.perm is None
    want = ClusterSampler(store.indptr, store.indices, sorted_parts).sample(np.array([1, 4]))
    got = d.sample(np.array([1, 4]))
    assert np.array_equal(got.nodes, np.arange(ranges[1], ranges[2]).tolist() + np.arange(ranges[4], ranges[5]).tolist())
    assert np.array_equal(got.edge_ids, want.edge_ids)
    with pytest.raises(OptionError):
        ClusterSampler.from_store(store if store.partition is None else SimpleNamespace(
            indptr=store.indptr, indices=store.indices, path=store.path, partition=None))


def test_bad_inputs_raise_option_error():
    indptr, indices = tiny()
    with pytest.raises(OptionError):
        ClusterSampler(indptr, indices, TINY_PARTS[:-1])
    partptr, perm = ck.cluster_index(TINY_PARTS, np.int64(3))
    with pytest.raises(OptionError):  # a cluster index whose inverse does not fit
        ClusterSampler(indptr, indices, perm=perm, partptr=partptr, pos=np.zeros(3, np.int64))
    with pytest.raises(OptionError):
        ClusterSampler(indptr, indices, TINY_PARTS, num_parts=2)
    with pytest.raises(OptionError):
        ClusterSampler(indptr, indices, TINY_PARTS - 1)
    with pytest.raises(OptionError):
        ClusterSampler(indptr, indices, TINY_PARTS, clusters_per_batch=0)
    sampler = ClusterSampler(indptr, indices, TINY_PARTS)
    for bad in ([0, 0], [3], [-1], [[0]]):
        with pytest.raises(OptionError):
            sampler.sample(np.array(bad))
    assert sampler.sample(np.zeros(0, np.int64)).num_nodes == 0


def test_random_node_sampler():
    s, d = random_graph(300, 2000, 8)
    indptr, indices = reference_csr(s, d, 300, directed=False)
    sampler = RandomNodeSampler(indptr, indices.astype(np.int32), batch_size=64, seed=3)
    batches = sampler.epoch_batches(0)
    assert sampler.num_batches == len(batches) == 5
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(300))
    sub = sampler.sample(batches[0])
    check_induced(sub, indptr, indices, True)
    assert_matches_twin(sub, indptr, indices, batches[0].tolist(), True, True)


def test_random_edge_sampler():
    s, d = random_graph(300, 2000, 9)
    indptr, indices = reference_csr(s, d, 300, directed=True)
    sampler = RandomEdgeSampler(indptr, indices, batch_size=50, num_steps=3, seed=1)
    batches = sampler.epoch_batches(0)
    assert len(batches) == sampler.num_batches == 3
    for edges in batches:
        sub = sampler.sample(edges)
        rows = np.searchsorted(indptr, edges, side="right") - 1
        ends = set(indices[edges].tolist()) | set(rows.tolist())
        assert sub.nodes.tolist() == sorted(ends)
        assert set(edges.tolist()) <= set(sub.edge_ids.tolist())  # the drawn edges are in it
        check_induced(sub, indptr, indices, True)
        assert_matches_twin(sub, indptr, indices, sorted(ends), True, True)
    with pytest.raises(OptionError):
        sampler.sample(np.array([len(indices)]))


def test_more_than_2_31_edges(tmp_path):
    """Rows beyond offset 2^32 of a sparse int32 file (see test_sampling_neighbor.huge_sparse_csr)."""
    from test_sampling_neighbor import huge_sparse_csr

    indptr, indices, hub = huge_sparse_csr(tmp_path)
    sub = ClusterSampler(indptr, indices, np.array([0, 1, 1], np.int32)).sample(np.array([1]))
    assert sub.nodes.tolist() == [1, 2]
    assert sub.edge_ids.tolist() == [hub + 1, hub + 2, -1]  # 1->1, 2->1, added loop on 2
    check_induced(sub, indptr, indices, True)
    assert_matches_twin(sub, indptr, indices, [1, 2], True, True)


# ---- contiguous clusters: the range kernel (induced_ranges) ------------------------------------
@st.composite
def ranges_case(draw):
    n = draw(st.integers(1, 60))
    m = draw(st.integers(0, 300))
    src = draw(st.lists(st.integers(0, n - 1), min_size=m, max_size=m))
    dst = draw(st.lists(st.integers(0, n - 1), min_size=m, max_size=m))
    cuts = sorted(set(draw(st.lists(st.integers(1, n - 1), max_size=8)) if n > 1 else []))
    bounds = [0] + cuts + [n]                       # clusters: [bounds[c], bounds[c+1])
    k = len(bounds) - 1
    chosen = sorted(draw(st.lists(st.integers(0, k - 1), max_size=k, unique=True)))
    return n, src, dst, draw(st.booleans()), bounds, chosen


@settings(max_examples=60, deadline=None)
@given(ranges_case(), st.booleans(), st.booleans(), st.sampled_from([np.int32, np.int64]),
       st.sampled_from([1, 2, 3, 7, 1 << 16]), st.booleans())
def test_range_kernel_matches_twin_and_search_kernel(case, self_loops, normalize, index_dtype,
                                                     table_blocks, shuffle_rows):
    from gstore.pipeline.sampling.cluster import RangeClusterSubgraph, build_induced_ranges

    n, src, dst, directed, bounds, chosen = case
    indptr, indices = reference_csr(np.array(src, np.int64), np.array(dst, np.int64), n, directed=directed)
    indices = indices.astype(index_dtype)
    if shuffle_rows:  # the range kernel accepts any row order
        rng = np.random.default_rng(len(src))
        for v in range(n):
            rng.shuffle(indices[indptr[v]:indptr[v + 1]])
    b = np.array(bounds, np.int64)
    ids = np.array(chosen, np.int64)
    starts, stops = b[ids], b[ids + 1]
    want_nodes = [v for c in chosen for v in range(bounds[c], bounds[c + 1])]
    nodes, sub_indptr, ei, eids = ck.induced_ranges(indptr, indices, starts, stops, self_loops, True,
                                                    table_blocks)
    sub = RangeClusterSubgraph(nodes=nodes, indptr=sub_indptr, indices=ei[0], edge_ids=eids,
                               edge_weight=ck.gcn_norm(sub_indptr, ei[0]) if normalize else None,
                               clusters=ids, edge_index_array=ei)
    assert nodes.tolist() == want_nodes
    check_induced(sub, indptr, indices, self_loops)
    assert_matches_twin(sub, indptr, indices, want_nodes, self_loops, normalize)
    # the search kernel over the same nodes: the same rows; the same arrays, in the same order,
    # except that an added loop is appended to its row here and kept in sorted place there
    ref = build_induced(indptr, indices, np.array(want_nodes, np.int64), normalize=normalize,
                        self_loops=self_loops)
    assert np.array_equal(ref.indptr, sub.indptr)
    assert canonical(ref) == canonical(sub)
    if not self_loops:
        assert np.array_equal(ref.indices, sub.indices) and np.array_equal(ref.edge_ids, sub.edge_ids)
        assert np.array_equal(ref.edge_index(), sub.edge_index())
    assert ei.flags.c_contiguous
    # without edge ids, or cut into several chunks: the same edge index
    _, ip3, ei3, eids3 = ck.induced_ranges(indptr, indices, starts, stops, self_loops, False, table_blocks)
    assert len(eids3) == 0 and np.array_equal(ip3, sub_indptr) and np.array_equal(ei3, ei)
    for chunks in (2, 3, 64):
        _, ip4, ei4, eids4 = ck.induced_ranges(indptr, indices, starts, stops, self_loops, True,
                                               table_blocks, None, None, chunks)
        assert np.array_equal(ip4, sub_indptr) and np.array_equal(ei4, ei) and np.array_equal(eids4, eids)
    # the sampler takes this path for contiguous clusters
    parts = np.repeat(np.arange(len(bounds) - 1), np.diff(b))
    sampler = ClusterSampler(indptr, indices, parts, num_parts=len(bounds) - 1, normalize=normalize,
                             self_loops=self_loops)
    got = sampler.sample(ids[::-1].copy())
    assert isinstance(got, RangeClusterSubgraph) and got.clusters.tolist() == chosen
    assert np.array_equal(got.edge_index(), ei) and np.array_equal(got.edge_ids, eids)
    got2 = build_induced_ranges(indptr, indices, starts, stops, normalize=normalize,
                                self_loops=self_loops, clusters=ids)
    assert np.array_equal(got2.edge_index(), ei)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.lists(st.integers(0, 299), max_size=12), st.integers(1, 40),
       st.randoms(use_true_random=False))
def test_range_table_matches_twin(n, cut_list, max_blocks, rnd):
    from reference_sampling import range_of

    cuts = sorted({c for c in cut_list if 0 < c < n})
    bounds = [0] + cuts + [n]
    chosen = sorted(rnd.sample(range(len(bounds) - 1), rnd.randint(0, len(bounds) - 1)))
    starts = np.array([bounds[c] for c in chosen], np.int64)
    stops = np.array([bounds[c + 1] for c in chosen], np.int64)
    shift, table, lo, hi, base = ck.range_table(starts, stops, np.int64(n), np.int64(max_blocks))
    assert len(table) <= max(max_blocks, 1) and len(lo) == len(starts) + 1
    for u in range(n):
        k = int(table[u >> shift])
        while hi[k] <= u:
            k += 1
        want_k, want_local = range_of(starts.tolist(), stops.tolist(), u)
        if want_k is None:
            assert lo[k] > u
        else:
            assert k == want_k and lo[k] <= u and base[k] + u == want_local


def partitioned_store(path, n, m, seed, directed, parts):
    """A random store with `parts` (int32 (n,)) recorded as its partition "K" (not reordered)."""
    from gstore.pipeline.partition.partition import PartitionResult, record_partition

    s, d = random_graph(n, m, seed)
    build_store(path, s, d, n, directed=directed)
    k = int(parts.max()) + 1
    result = PartitionResult(num_parts=k, method="given", edge_cut=0.0, balance=1.0, seconds=0.0,
                             peak_rss=0, metis_estimate=0)
    record_partition(path, str(k), parts, result)
    return path


def test_reordered_store_partition_uses_range_kernel(tmp_path):
    """A store whose partition is contiguous (gstore partition --reorder) samples through the
    range kernel and matches the search kernel over the same nodes."""
    from gstore.pipeline.partition.reorder import reorder_store
    from gstore.pipeline.sampling.cluster import RangeClusterSubgraph

    parts = (np.arange(80) * 7 % 4).astype(np.int32)
    path = partitioned_store(tmp_path / "g", 80, 600, 5, False, parts)
    reorder_store(path, "4")
    store = gstore.open(path)
    sampler = ClusterSampler.from_store(store, clusters_per_batch=2)
    assert sampler.perm is None
    for batch in sampler.epoch_batches(0):
        sub = sampler.sample(batch)
        assert isinstance(sub, RangeClusterSubgraph)
        check_induced(sub, store.indptr, store.indices, True)
        ref = build_induced(store.indptr, store.indices, sub.nodes, normalize=True, self_loops=True)
        got, want = canonical(sub, weights=True), canonical(ref, weights=True)
        assert [e for e, _ in got] == [e for e, _ in want]
        np.testing.assert_allclose([w for _, w in got], [w for _, w in want], rtol=1e-6)


def test_stored_scattered_partition_uses_its_pos(tmp_path):
    """A partition recorded without --reorder: the sampler maps neighbors through the stored pos
    (memory-mapped, not rebuilt) and its batches follow the cluster order and match the twin."""
    parts = (np.arange(90) * 5 % 6).astype(np.int32)
    store = gstore.open(partitioned_store(tmp_path / "g", 90, 700, 8, True, parts))
    sampler = ClusterSampler.from_store(store, clusters_per_batch=4)
    assert not sampler.pos.flags.writeable and not store.partition.contiguous  # the read-only map
    for batch in sampler.epoch_batches(3):
        sub = sampler.sample(batch)
        want = [v for c in np.sort(batch) for v in range(90) if parts[v] == c]
        assert sub.nodes.tolist() == want
        check_induced(sub, store.indptr, store.indices, True, sorted_nodes=False)
        assert_matches_twin(sub, store.indptr, store.indices, want, True, True, keep_order=True)


def test_kernel_threads_same_batches():
    s, d = random_graph(120, 900, 6)
    indptr, indices = reference_csr(s, d, 120, directed=False)
    for parts in (np.repeat(np.arange(6), 20), np.arange(120) % 6):   # contiguous, scattered
        all_threads = ClusterSampler(indptr, indices, parts, clusters_per_batch=2)
        one_thread = ClusterSampler(indptr, indices, parts, clusters_per_batch=2, kernel_threads=1)
        for batch in all_threads.epoch_batches(0):
            a, b = all_threads.sample(batch), one_thread.sample(batch)
            assert np.array_equal(a.edge_index(), b.edge_index())
            assert np.array_equal(a.edge_ids, b.edge_ids)
    with pytest.raises(OptionError):
        ClusterSampler(indptr, indices, parts, kernel_threads=0)
