"""Partition kernels and streaming stages against their plain-Python twins (tests/reference_partition.py)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gstore
from gstore.pipeline.partition.coarsen import contract, lp_clustering
from gstore.pipeline.partition.coarsen_kernels import lp_cluster_chunk
from gstore.pipeline.partition.csr_stream import CSRFile, row_ranges, write_raw
from gstore.pipeline.partition.refine import edge_cut, max_part_weight, rebalance
from gstore.pipeline.partition.refine_kernels import REBALANCE, REFINE, refine_chunk
from gstore.pipeline.partition.symmetrize import load_in_memory, store_csr, symmetric_graph
from reference_partition import contract as ref_contract
from reference_partition import cut_fraction, lp_sweep, refine_sweep, symmetrize
from reference_partition import sparsify as ref_sparsify
from store_factory import build_store, reference_csr


def _graph(draw_n, draw_m, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, draw_n, draw_m), rng.integers(0, draw_n, draw_m)


def _csrfile(tmp_path, indptr, nbrs, ew=None, vw=None) -> CSRFile:
    tag = len(list(tmp_path.iterdir()))
    idx = write_raw(tmp_path / f"i{tag}", np.asarray(nbrs, dtype=np.int32))
    w = write_raw(tmp_path / f"w{tag}", np.asarray(ew, dtype=np.int64)) if ew is not None else None
    return CSRFile(indptr=np.asarray(indptr, dtype=np.int64), indices=idx, weights=w, vweights=vw)


graphs = st.tuples(st.integers(1, 30), st.integers(0, 120), st.integers(0, 10**6))


def test_row_ranges_cover_rows_within_cap():
    indptr = np.array([0, 3, 3, 10, 11, 11, 15])
    ranges = list(row_ranges(indptr, 4))
    assert ranges[0][0] == 0 and ranges[-1][1] == 6
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    for r0, r1 in ranges:
        assert indptr[r1] - indptr[r0] <= 4 or r1 == r0 + 1


@settings(max_examples=30, deadline=None)
@given(graphs, st.integers(1, 50))
def test_symmetrize_matches_reference(tmp_path_factory, g, chunk):
    n, m, seed = g
    src, dst = _graph(n, m, seed)
    path = tmp_path_factory.mktemp("s") / "store"
    build_store(path, src, dst, n, directed=True)
    store = gstore.open(path)
    scratch = tmp_path_factory.mktemp("scratch")
    sym = symmetric_graph(store, scratch, chunk)
    expected = symmetrize(np.asarray(store.indptr), np.asarray(store.indices))
    got = {}
    nb, w = sym.indices.read_all(), sym.weights.read_all()
    for v in range(n):
        row = nb[sym.indptr[v]:sym.indptr[v + 1]]
        assert list(row) == sorted(set(row.tolist()))  # sorted, no duplicates
        for j in range(sym.indptr[v], sym.indptr[v + 1]):
            got[(v, int(nb[j]))] = int(w[j])
    assert got == expected
    mem = load_in_memory(sym, chunk)
    assert mem.xadj[-1] == len(expected) and mem.eweights.sum() == sum(expected.values())


@settings(max_examples=40, deadline=None)
@given(graphs, st.integers(1, 6), st.integers(0, 50), st.booleans())
def test_lp_cluster_kernel_matches_reference(g, bound, seed, use_active):
    n, m, gseed = g
    src, dst = _graph(n, m, gseed)
    indptr, nbrs = reference_csr(src, dst, n, directed=False)
    nbrs = nbrs.astype(np.int32)
    vw = np.ones(n, dtype=np.int64)
    cl, cw = np.arange(n, dtype=np.int32), vw.copy()
    rng = np.random.default_rng(gseed)
    active = (rng.random(n) < 0.5).astype(np.uint8) if use_active else np.zeros(0, np.uint8)
    next_active = np.zeros(n if use_active else 0, np.uint8)
    moves = lp_cluster_chunk(indptr, nbrs, np.zeros(0, np.int64), False, 0, vw, cl, cw, bound, seed,
                             active, next_active, use_active)
    rcl, rcw = np.arange(n), vw.copy()
    ract = set(np.flatnonzero(active).tolist()) if use_active else None
    rnext = set() if use_active else None
    rmoves = lp_sweep(indptr, nbrs, None, vw, rcl, rcw, bound, seed, ract, rnext)
    assert moves == rmoves
    np.testing.assert_array_equal(cl, rcl)
    np.testing.assert_array_equal(cw, np.bincount(cl, minlength=n))
    assert cw.max() <= max(bound, 1)
    if use_active:
        assert set(np.flatnonzero(next_active).tolist()) == rnext


@settings(max_examples=30, deadline=None)
@given(graphs, st.integers(1, 40))
def test_contract_matches_reference(tmp_path_factory, g, chunk):
    n, m, seed = g
    src, dst = _graph(n, m, seed)
    indptr, nbrs = reference_csr(src, dst, n, directed=False)
    rng = np.random.default_rng(seed)
    ew = rng.integers(1, 5, len(nbrs))
    vw = rng.integers(1, 4, n).astype(np.int64)
    tmp = tmp_path_factory.mktemp("c")
    fine = _csrfile(tmp, indptr, nbrs, ew, vw)
    cluster = lp_clustering(fine, 6, 3, seed, chunk)
    level = contract(fine, cluster, tmp, 0, chunk)
    cmap, cvw, edges = ref_contract(indptr, nbrs, ew, vw, cluster)
    np.testing.assert_array_equal(level.cmap, cmap)
    np.testing.assert_array_equal(level.graph.vweights, cvw)
    cg = level.graph
    nb, w = cg.indices.read_all(), cg.weights.read_all()
    got = {}
    for v in range(cg.num_nodes):
        for j in range(cg.indptr[v], cg.indptr[v + 1]):
            assert (v, int(nb[j])) not in got  # duplicates merged
            got[(v, int(nb[j]))] = int(w[j])
    assert got == edges
    # total weight of cut edges is preserved by contraction
    assert sum(edges.values()) == sum(int(ew[j]) for v in range(n)
                                      for j in range(indptr[v], indptr[v + 1]) if cmap[nbrs[j]] != cmap[v])


@settings(max_examples=40, deadline=None)
@given(graphs, st.integers(0, 200), st.integers(1, 40), st.integers(0, 9))
def test_sparsify_keeps_heaviest_symmetrically(tmp_path_factory, g, room, chunk, wcap):
    from gstore.pipeline.partition import sparsify as sp

    n, m, seed = g
    src, dst = _graph(n, m, seed)
    indptr, nbrs = reference_csr(src, dst, n, directed=False)
    # symmetric weights: a function of the unordered pair
    ew = np.array([1 + (min(v, int(u)) * 7 + max(v, int(u))) % 5 for v in range(n)
                   for u in nbrs[indptr[v]:indptr[v + 1]]], dtype=np.int64)
    tmp = tmp_path_factory.mktemp("s")
    csr = _csrfile(tmp, indptr, nbrs, ew)
    old_bins = sp.HIST_BINS
    sp.HIST_BINS = wcap + 2 if wcap else old_bins   # small caps exercise the clipped last bin
    try:
        mem = sp.load_sparsified(csr, room, chunk, seed)
        hist = np.zeros(sp.HIST_BINS, dtype=np.int64)
        for v in range(n):
            for j in range(indptr[v], indptr[v + 1]):
                if nbrs[j] != v:
                    hist[min(int(ew[j]), sp.HIST_BINS - 1)] += 1
        t, frac = sp.keep_rule(hist, room)
        wc = sp.HIST_BINS - 1
    finally:
        sp.HIST_BINS = old_bins
    got = {}
    for v in range(n):
        for j in range(mem.xadj[v], mem.xadj[v + 1]):
            got[(v, int(mem.adjncy[j]))] = got.get((v, int(mem.adjncy[j])), 0) + int(mem.eweights[j])
    no_loops = sum(hist)
    if no_loops <= room:
        want = ref_sparsify(indptr, nbrs, ew, 10**9, 0, 0, 0)   # everything but self loops
    else:
        keep_h = min(2**64 - 1, int(frac * 2.0**64))
        want = ref_sparsify(indptr, nbrs, ew, wc, t, keep_h, seed)
        # nothing lighter than t survives, nothing heavier is dropped
        assert all(min(w, wc) >= t for w in got.values())
    assert got == want
    assert all(got.get((u, v)) == w for (v, u), w in got.items())   # still symmetric


@settings(max_examples=40, deadline=None)
@given(graphs, st.integers(1, 5), st.sampled_from([REFINE, REBALANCE]), st.sampled_from([0, 1, -1]),
       st.booleans())
def test_refine_kernel_matches_reference(g, k, mode, max_loss, use_active):
    n, m, seed = g
    src, dst = _graph(n, m, seed)
    indptr, nbrs = reference_csr(src, dst, n, directed=False)
    nbrs = nbrs.astype(np.int32)
    rng = np.random.default_rng(seed)
    vw = rng.integers(1, 3, n).astype(np.int64)
    part = rng.integers(0, k, n).astype(np.int32)
    pweight = np.bincount(part, weights=vw, minlength=k).astype(np.int64)
    lmax = max_part_weight(int(vw.sum()), k, 0.1, int(vw.max()))
    rpart, rpw = part.copy(), pweight.copy()
    conn, touched = np.zeros(k, np.int64), np.zeros(k, np.int64)
    active = (rng.random(n) < 0.5).astype(np.uint8) if use_active else np.zeros(0, np.uint8)
    next_active = np.zeros(n if use_active else 0, np.uint8)
    moves, gain, cut = refine_chunk(indptr, nbrs, np.zeros(0, np.int64), False, 0, vw, part, pweight,
                                    lmax, conn, touched, mode, max_loss, active, next_active,
                                    use_active)
    ract = set(np.flatnonzero(active).tolist()) if use_active else None
    rnext = set() if use_active else None
    assert (moves, gain, cut) == refine_sweep(indptr, nbrs, None, vw, rpart, rpw, lmax, mode, max_loss,
                                              ract, rnext)
    np.testing.assert_array_equal(part, rpart)
    np.testing.assert_array_equal(pweight, np.bincount(part, weights=vw, minlength=k))
    assert (conn == 0).all()
    if use_active:
        assert set(np.flatnonzero(next_active).tolist()) == rnext


@settings(max_examples=20, deadline=None)
@given(graphs, st.integers(1, 6), st.integers(1, 40))
def test_refine_never_raises_the_cut_and_keeps_balance(tmp_path_factory, g, k, chunk):
    from gstore.pipeline.partition.refine import refine

    n, m, seed = g
    src, dst = _graph(n, m, seed)
    indptr, nbrs = reference_csr(src, dst, n, directed=False)
    rng = np.random.default_rng(seed)
    vw = rng.integers(1, 3, n).astype(np.int64)
    lmax = max_part_weight(int(vw.sum()), k, 0.1, int(vw.max()))
    part = np.zeros(n, dtype=np.int32)
    pw = np.zeros(k, dtype=np.int64)
    for v in rng.permutation(n):   # a random partition within the bound
        q = int(np.argmin(pw))
        part[v], pw[q] = q, pw[q] + vw[v]
    csr = _csrfile(tmp_path_factory.mktemp("f"), indptr, nbrs, vw=vw)
    before = cut_fraction(indptr, nbrs, part)
    refine(csr, part, k, lmax, chunk)
    assert cut_fraction(indptr, nbrs, part) <= before
    # moves only go into parts with room: no part ends heavier than the bound or its start
    assert np.bincount(part, weights=vw, minlength=k).max() <= max(lmax, int(pw.max()))


@settings(max_examples=20, deadline=None)
@given(graphs, st.integers(1, 6))
def test_rebalance_reaches_bound_and_cut_matches_reference(tmp_path_factory, g, k):
    n, m, seed = g
    k = min(k, n)
    src, dst = _graph(n, m, seed)
    path = tmp_path_factory.mktemp("r") / "store"
    build_store(path, src, dst, n, directed=False)
    store = gstore.open(path)
    csr = store_csr(store)
    part = np.zeros(n, dtype=np.int32)  # everything in part 0: maximally unbalanced
    lmax = max_part_weight(n, k, 0.05, 1)
    rebalance(csr, part, k, lmax, 7)
    assert np.bincount(part, minlength=k).max() <= lmax
    cut = edge_cut(csr, part, 5)
    assert cut.fraction == pytest.approx(cut_fraction(np.asarray(store.indptr), np.asarray(store.indices), part))


@settings(max_examples=40, deadline=None)
@given(graphs, st.booleans())
def test_reorder_kernels_match_twins(g, weighted):
    from gstore.pipeline.partition import reorder_kernels as rk
    import reference_partition as ref

    n, m, seed = g
    src, dst = _graph(n, m, seed)
    indptr, nbrs = reference_csr(src, dst, n, directed=True, dedup=False)
    nbrs = nbrs.astype(np.int32)
    rng = np.random.default_rng(seed)
    w = rng.integers(0, 3, len(nbrs)).astype(np.float32)
    order = rng.permutation(n).astype(np.int64)
    out = np.full(len(nbrs), -1, np.int32)
    assert rk.concat_rows(indptr, order, nbrs, out) == len(nbrs)
    assert out.tolist() == ref.concat_rows(indptr, order, nbrs)
    inv = rng.permutation(n).astype(np.int64)
    a = int(rng.integers(0, n))
    b = int(rng.integers(a, n + 1))
    deg = np.diff(indptr)
    perm = np.argsort(inv)
    start = np.zeros(b - a + 1, np.int64)
    np.cumsum(deg[perm[a:b]], out=start[1:])
    got, want = np.full(start[-1], -1, np.int32), np.full(start[-1], -1, np.int32)
    r0 = int(rng.integers(0, n))
    sub = indptr[r0:] - indptr[r0]
    assert (rk.scatter_rows(sub, nbrs[indptr[r0]:], r0, inv, a, b, start[:-1], got)
            == ref.scatter_rows(sub, nbrs[indptr[r0]:], r0, inv, a, b, start[:-1], want))
    np.testing.assert_array_equal(got, want)
    mapped, mw = nbrs.copy(), w.copy()
    rk.map_sort_rows(indptr, mapped, inv, mw if weighted else np.zeros(0, np.float32), weighted)
    ref_n, ref_w = ref.map_sort_rows(indptr, nbrs, inv, w if weighted else None)
    assert mapped.tolist() == ref_n
    if weighted:
        assert mw.tolist() == ref_w


def test_concat_and_scatter_rows_by_hand():
    from gstore.pipeline.partition.reorder_kernels import concat_rows, scatter_rows

    local = np.array([0, 2, 2, 5], np.int64)   # rows [7, 8], [], [1, 2, 3]
    vals = np.array([7, 8, 1, 2, 3], np.int32)
    out = np.zeros(5, np.int32)
    concat_rows(local, np.array([2, 1, 0], np.int64), vals, out)
    assert out.tolist() == [1, 2, 3, 7, 8]
    # a bucket read back from its spill: rows in spill order with their new ids 5, 4, 3
    out[:] = 0
    assert scatter_rows(local, vals, 0, np.array([5, 4, 3], np.int64), 3, 6,
                        np.array([0, 3, 3], np.int64), out) == 3
    assert out.tolist() == [1, 2, 3, 7, 8]


@pytest.mark.parametrize("weighted", [False, True])
def test_map_sort_rows_short_and_long_rows_stable(weighted):
    """Rows on both sides of SHORT_ROW (insertion sort / library sort), with repeated ids whose
    weights must keep their order."""
    from gstore.pipeline.partition.reorder_kernels import SHORT_ROW, map_sort_rows
    import reference_partition as ref

    rng = np.random.default_rng(3)
    lens = [0, 1, 2, SHORT_ROW - 1, SHORT_ROW, SHORT_ROW + 1, 5 * SHORT_ROW]
    ptr = np.zeros(len(lens) + 1, np.int64)
    np.cumsum(lens, out=ptr[1:])
    nbr = rng.integers(0, 10, ptr[-1]).astype(np.int32)    # 10 ids: many repeats in every long row
    inv = rng.permutation(10).astype(np.int64)
    w = np.arange(ptr[-1], dtype=np.float32)               # distinct: the order of equal ids shows
    got_n, got_w = nbr.copy(), w.copy()
    map_sort_rows(ptr, got_n, inv, got_w if weighted else np.zeros(0, np.float32), weighted)
    want_n, want_w = ref.map_sort_rows(ptr, nbr, inv, w if weighted else None)
    assert got_n.tolist() == want_n
    if weighted:
        assert got_w.tolist() == want_w


class _Writer:
    def __init__(self):
        self.blocks = []

    def append(self, block):
        self.blocks.append(np.array(block))

    def finish(self):
        return None

    def array(self, dtype):
        return np.concatenate(self.blocks).astype(dtype) if self.blocks else np.zeros(0, dtype)


@settings(max_examples=40, deadline=None)
@given(graphs, st.sampled_from([16, 40, 100, 1 << 20]), st.booleans(), st.integers(0, 3))
def test_reorder_distribution_matches_reference(tmp_path_factory, g, cap_bytes, weighted, hub):
    """_permute_ragged (one bucket, or a distribution pass through spill files) equals the in-RAM
    reference at caps down to 1-2 entries a bucket, with isolated nodes and rows longer than a bucket."""
    from types import SimpleNamespace
    from gstore.pipeline.partition.reorder import _new_indptr, _reorder_csr_sources
    from reference_partition import reorder_csr

    n, m, seed = g
    src, dst = _graph(n, m, seed)
    if hub:  # a row (node 0) longer than every small bucket
        src, dst = np.concatenate([src, np.arange(hub * 10) % n]), np.concatenate([dst, np.zeros(hub * 10, int)])
    indptr, nbrs = reference_csr(src, dst, n, directed=True, dedup=False)
    rng = np.random.default_rng(seed)
    w = rng.integers(0, 5, len(nbrs)).astype(np.float32)
    perm = rng.permutation(n)
    inv = np.empty(n, np.int64)
    inv[perm] = np.arange(n)
    new_ptr = _new_indptr(indptr, perm)
    d = tmp_path_factory.mktemp("reorder")
    sources = [write_raw(d / "i", nbrs.astype(np.int32))] + ([write_raw(d / "w", w)] if weighted else [])
    writers = [_Writer() for _ in sources]
    spill = d / "spill"
    spill.mkdir()
    b = SimpleNamespace(spill_dir=spill, add=lambda rec: None)
    _reorder_csr_sources(sources, indptr, new_ptr, inv, writers, b, cap_bytes)
    ref_ptr, ref_idx, ref_w = reorder_csr(indptr, nbrs, w if weighted else None, perm)
    np.testing.assert_array_equal(new_ptr, ref_ptr)
    np.testing.assert_array_equal(writers[0].array(np.int64), ref_idx)
    if weighted:
        np.testing.assert_array_equal(writers[1].array(np.float32), ref_w)
    assert list(spill.iterdir()) == []  # every spill file consumed
