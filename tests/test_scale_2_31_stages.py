"""Ingest, partition and reorder past 2^31 entries (test_scale_2_31.py covers open, gather and
sampling).

Partition: every stage streams a `CSRFile` whose indptr holds absolute entry offsets, so the same
small graph is run twice, once at offset 0 and once as a window whose rows start past 2^31 entries
of a sparse file (the entries before it are a hole: no disk, no reads), and the two runs must agree
exactly: a global offset or a byte offset kept in 32 bits reads the wrong entries or fails. Sums past
2^31 (cut weights, connection weights, part and cluster weights) are checked against the
plain-Python twins with weights near 2^30. Ingest: the CSR build's bucket loop and its indptr rows,
driven with 2^31 entries already emitted, and the row distributor at byte offsets past 2^31. Byte
offsets: the readers and writers given numpy int32 indices whose byte offsets pass 2^31. Reorder
reads and writes every entry again (8 GiB past 2^31): CI runs its check on a small hub, and
GSTORE_SLOW=1 (with 24 GiB of free disk) runs it past 2^31."""
from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest

import gstore
from gstore.pipeline.partition.csr_stream import ArrayFile, CSRFile, row_ranges
from store_factory import reference_csr

BASE = 2**31 + 5               # entries before a window: a hole of its sparse file


def window_file(path, arr: np.ndarray, base: int = BASE) -> ArrayFile:
    """`arr` at entry `base` of a sparse file whose entries [0, base) are a hole."""
    arr = np.ascontiguousarray(arr)
    with open(path, "wb") as fh:
        fh.truncate(base * arr.itemsize)
        fh.seek(base * arr.itemsize)
        fh.write(arr.tobytes())
    return ArrayFile(path, arr.dtype, base + len(arr))


def csr_at(tmp_path, tag: str, indptr, nbrs, ew=None, vw=None, base: int = BASE) -> CSRFile:
    """The CSR (indptr from 0, nbrs, ew) as rows whose entries start at offset `base`."""
    idx = window_file(tmp_path / f"{tag}.indices", np.asarray(nbrs, dtype=np.int32), base)
    w = None if ew is None else window_file(tmp_path / f"{tag}.weights", np.asarray(ew), base)
    return CSRFile(indptr=np.asarray(indptr, dtype=np.int64) + base, indices=idx, weights=w,
                   vweights=vw)


def planted_graph(n: int = 480, k: int = 6, deg_in: int = 10, deg_out: int = 1, seed: int = 0):
    """(src, dst) of an undirected planted partition: k groups, ~deg_in edges inside, ~deg_out across."""
    rng = np.random.default_rng(seed)
    group = np.arange(n) % k
    src = np.repeat(np.arange(n), deg_in + deg_out)
    same = rng.integers(0, n // k, len(src)) * k + group[src]
    other = rng.integers(0, n, len(src))
    inside = (np.arange(len(src)) % (deg_in + deg_out)) < deg_in
    return src, np.where(inside, same, other)


def used_blocks(*files: ArrayFile) -> int:
    return sum(os.stat(f.path).st_blocks * 512 for f in files if f is not None)


def read_csr(g: CSRFile):
    lo = int(g.indptr[0])
    w = None if g.weights is None else g.weights.read(lo, int(g.indptr[-1]))
    return g.indptr - lo, g.indices.read(lo, int(g.indptr[-1])), w


# ---- partition ----------------------------------------------------------------------------------

def test_window_is_sparse_and_reads_past_2_31(tmp_path):
    indptr, nbrs = reference_csr(*planted_graph(), 480, directed=False)
    g = csr_at(tmp_path, "g", indptr, nbrs)
    assert g.indptr[0] > 2**31 and g.num_entries == len(nbrs)
    assert used_blocks(g.indices) < 1 << 20          # the 8 GiB hole takes no disk
    got = []
    for ch in g.iter_chunks(300):
        assert ch.local_indptr[0] == 0 and ch.local_indptr[-1] == len(ch.nbrs)
        got.append(ch.nbrs.copy())          # the read buffer is reused
    assert np.array_equal(np.concatenate(got), nbrs)
    ranges = list(row_ranges(g.indptr, 300))       # the chunk planner on offsets past 2^31
    assert ranges == list(row_ranges(indptr, 300))
    assert all(indptr[b] - indptr[a] <= 300 or b == a + 1 for a, b in ranges)


def test_symmetrize_past_2_31(tmp_path):
    from gstore.pipeline.partition.symmetrize import symmetrize_csr
    from reference_partition import symmetrize

    src, dst = planted_graph(seed=1)
    n = 480
    keep = np.random.default_rng(1).random(len(src)) < 0.7     # directed: some edges one way only
    indptr, nbrs = reference_csr(src[keep], dst[keep], n, directed=True)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    plain = symmetrize_csr(csr_at(tmp_path, "p", indptr, nbrs, base=0), tmp_path / "a", 256)
    past = symmetrize_csr(csr_at(tmp_path, "w", indptr, nbrs), tmp_path / "b", 256)
    for x, y in zip(read_csr(plain), read_csr(past)):
        np.testing.assert_array_equal(x, y)
    sym_indptr, sym_nbrs, sym_w = read_csr(past)
    got = {(v, int(sym_nbrs[j])): int(sym_w[j]) for v in range(n)
           for j in range(sym_indptr[v], sym_indptr[v + 1])}
    assert got == symmetrize(indptr, nbrs)


def test_symmetric_weights_widen_past_2_31_entries_per_row(tmp_path, monkeypatch):
    """A pair's weight counts its entries in both directions: a multi-edge store (no dedup) with
    one pair 2^31 times would wrap an int32 weight negative, so rows that can hold that many
    entries get int64 weights (the bound lowered here to drive that path on a small graph)."""
    from gstore.pipeline.partition import symmetrize as S
    from reference_partition import symmetrize

    assert S.multiplicity_dtype(np.array([0, 5, 2**31 - 1])) == np.int32
    assert S.multiplicity_dtype(np.array([3, 2**31])) == np.int64
    assert S.multiplicity_dtype(np.zeros(0, np.int64)) == np.int32
    n = 40
    src = np.concatenate([np.full(30, 3), np.arange(n)])     # 3 -> 7 thirty times: weight 30 + 1
    dst = np.concatenate([np.full(30, 7), (np.arange(n) * 7) % n])
    order = np.lexsort((src, dst))
    src, dst = src[order], dst[order]
    indptr = np.zeros(n + 1, np.int64)
    np.add.at(indptr, dst + 1, 1)
    indptr = np.cumsum(indptr)                       # in-CSR with duplicates kept
    for bound, dtype in ((2**31 - 1, np.int32), (8, np.int64)):
        monkeypatch.setattr(S, "INT32_WEIGHT_MAX_ROW", bound)
        d = tmp_path / f"s{bound}"
        d.mkdir()
        sym = S.symmetrize_csr(csr_at(tmp_path, f"d{bound}", indptr, src), d, 16)
        assert sym.weights.dtype == dtype
        ip, nb, w = read_csr(sym)
        got = {(v, int(nb[j])): int(w[j]) for v in range(n) for j in range(ip[v], ip[v + 1])}
        assert got == symmetrize(indptr, src) and got[(7, 3)] == got[(3, 7)] == 30


def test_multilevel_partition_past_2_31(tmp_path):
    """Coarsening (label propagation, contraction), METIS on the coarsest graph, refinement and
    rebalancing, all streamed from rows past 2^31 entries: the same parts as at offset 0."""
    from gstore.pipeline.partition.multilevel import multilevel_partition
    from gstore.pipeline.partition.refine import edge_cut
    from reference_partition import cut_fraction

    n = 480
    indptr, nbrs = reference_csr(*planted_graph(), n, directed=False)
    runs = []
    for tag, base in (("plain", 0), ("past", BASE)):
        g = csr_at(tmp_path, tag, indptr, nbrs, base=base)
        (tmp_path / f"s-{tag}").mkdir()
        parts, stats = multilevel_partition(g, 6, imbalance=0.05, seed=3, metis_budget=120_000,
                                            scratch=tmp_path / f"s-{tag}", chunk_entries=500)
        runs.append((parts, stats, edge_cut(g, parts, 500)))
    (p0, s0, c0), (p1, s1, c1) = runs
    assert len(s1.levels) >= 2, s1.levels            # the budget forced coarsening
    assert s1.levels == s0.levels and s1.levels[0] == (n, len(nbrs))
    np.testing.assert_array_equal(p1, p0)
    assert c1 == c0 and c1.total == len(nbrs)
    assert c1.fraction == pytest.approx(cut_fraction(indptr, nbrs, p1))
    assert np.bincount(p1, minlength=6).max() <= int(np.floor(1.05 * n / 6))


def test_pymetis_input_past_2_31(tmp_path):
    """The pymetis path: the in-memory graph built from rows past 2^31, then rebalanced there."""
    from gstore.pipeline.partition.metis import run_metis
    from gstore.pipeline.partition.refine import max_part_weight, rebalance
    from gstore.pipeline.partition.symmetrize import load_in_memory

    n = 480
    src, dst = planted_graph(seed=2)
    src = np.concatenate([src, np.arange(0, n, 7)])   # self loops, which the build drops
    dst = np.concatenate([dst, np.arange(0, n, 7)])
    indptr, nbrs = reference_csr(src, dst, n, directed=False)
    ew = 1 + np.arange(len(nbrs)) % 3
    mems, parts = [], []
    for tag, base in (("plain", 0), ("past", BASE)):
        g = csr_at(tmp_path, tag, indptr, nbrs, ew, base=base)
        mem = load_in_memory(g, 400)
        p = run_metis(mem, 4, 0.05, 0)
        p[: n // 2] = 0                                # overweight part 0: rebalance must stream
        rebalance(g, p, 4, max_part_weight(n, 4, 0.05, 1), 400)
        mems.append(mem)
        parts.append(p)
    a, b = mems
    for x, y in ((a.xadj, b.xadj), (a.adjncy, b.adjncy), (a.eweights, b.eweights)):
        np.testing.assert_array_equal(x, y)
    loops = int(np.sum(nbrs == np.repeat(np.arange(n), np.diff(indptr))))
    assert loops > 0 and b.xadj[-1] == len(nbrs) - loops
    np.testing.assert_array_equal(parts[0], parts[1])
    assert np.bincount(parts[1], minlength=4).max() <= max_part_weight(n, 4, 0.05, 1)


# ---- sums past 2^31: the kernels' accumulators against the Python twins --------------------------

def _big_weight_graph(seed: int):
    n = 60
    src, dst = planted_graph(n, 3, 6, 2, seed)
    indptr, nbrs = reference_csr(src, dst, n, directed=False)
    rng = np.random.default_rng(seed)
    # int32 weights near 2^30 (as int32 symmetrised weights reach the kernels): a row's sum, a
    # cluster's connection and the cut pass 2^31 and 2^32
    ew = rng.integers(2**29, 2**30, len(nbrs)).astype(np.int32)
    vw = rng.integers(2**28, 2**30, n).astype(np.int64)
    return n, indptr, nbrs.astype(np.int32), ew, vw


@pytest.mark.parametrize("seed", [0, 1])
def test_lp_and_refine_kernels_sum_past_2_31(seed):
    from gstore.pipeline.partition.coarsen_kernels import lp_cluster_chunk
    from gstore.pipeline.partition.refine import max_part_weight
    from gstore.pipeline.partition.refine_kernels import REBALANCE, REFINE, cut_chunk, refine_chunk
    from reference_partition import lp_sweep, refine_sweep

    n, indptr, nbrs, ew, vw = _big_weight_graph(seed)
    assert int(ew.astype(np.int64).sum()) > 2**32 and int(vw.sum()) > 2**32
    bound = int(vw.sum()) // 5
    cl, cw = np.arange(n, dtype=np.int32), vw.copy()
    rcl, rcw = np.arange(n), vw.copy()
    for r in range(3):
        moves = lp_cluster_chunk(indptr, nbrs, ew, True, 0, vw, cl, cw, bound, seed + r,
                                 np.zeros(0, np.uint8), np.zeros(0, np.uint8), False)
        assert moves == lp_sweep(indptr, nbrs, ew.astype(np.int64), vw, rcl, rcw, bound, seed + r)
    np.testing.assert_array_equal(cl, rcl)
    np.testing.assert_array_equal(cw, rcw)
    assert cw.max() > 2**31

    k = 3
    lmax = max_part_weight(int(vw.sum()), k, 0.1, int(vw.max()))
    for mode, max_loss in ((REFINE, 0), (REBALANCE, -1)):
        part = (np.arange(n) % k).astype(np.int32)
        part[: n // 2] = 0
        pweight = np.bincount(part, weights=vw, minlength=k).astype(np.int64)
        rpart, rpw = part.copy(), pweight.copy()
        got = refine_chunk(indptr, nbrs, ew, True, 0, vw, part, pweight, lmax, np.zeros(k, np.int64),
                           np.zeros(k, np.int64), mode, max_loss, np.zeros(0, np.uint8),
                           np.zeros(0, np.uint8), False)
        want = refine_sweep(indptr, nbrs, ew.astype(np.int64), vw, rpart, rpw, lmax, mode, max_loss)
        assert tuple(int(x) for x in got) == want and want[2] > 2**31
        np.testing.assert_array_equal(part, rpart)
        cut, total = cut_chunk(indptr, nbrs, ew, True, 0, part)
        ew64 = ew.astype(np.int64)
        rows = np.repeat(np.arange(n), np.diff(indptr))
        assert (int(cut), int(total)) == (int(ew64[part[rows] != part[nbrs]].sum()), int(ew64.sum()))


def test_cluster_refine_and_cut_stages_sum_past_2_31(tmp_path):
    """The streaming stages (their own K- and N-sized accumulators) on big weights, from rows past
    2^31 entries: one label-propagation round and one refinement sweep equal the twins' sweeps."""
    from gstore.pipeline.partition.coarsen import lp_clustering
    from gstore.pipeline.partition.refine import edge_cut, max_part_weight, refine
    from gstore.pipeline.partition.refine_kernels import REFINE
    from reference_partition import lp_sweep, refine_sweep

    n, indptr, nbrs, ew, vw = _big_weight_graph(4)
    g = csr_at(tmp_path, "g", indptr, nbrs, ew, vw)
    ew64 = ew.astype(np.int64)
    bound = int(vw.sum()) // 5
    cluster = lp_clustering(g, bound, 1, 2, 50)
    rcl, rcw = np.arange(n), vw.copy()
    lp_sweep(indptr, nbrs, ew64, vw, rcl, rcw, bound, 2 * 1000003, set(range(n)), set())
    np.testing.assert_array_equal(cluster, rcl)
    k = 3
    lmax = max_part_weight(int(vw.sum()), k, 0.1, int(vw.max()))
    part = (np.arange(n) % k).astype(np.int32)
    rpart = part.copy()
    rpw = np.bincount(rpart, weights=vw, minlength=k).astype(np.int64)
    rs = refine(g, part, k, lmax, 50, max_sweeps=1)
    moves, gain, cut = refine_sweep(indptr, nbrs, ew64, vw, rpart, rpw, lmax, REFINE, 0, set(range(n)), set())
    assert (rs.moves, rs.gain) == (moves, gain) and cut > 2**31
    np.testing.assert_array_equal(part, rpart)
    rows = np.repeat(np.arange(n), np.diff(indptr))
    c = edge_cut(g, part, 50)
    assert (c.cut, c.total) == (int(ew64[part[rows] != part[nbrs]].sum()), int(ew64.sum()))


def test_contraction_sums_past_2_31(tmp_path):
    from gstore.pipeline.partition.coarsen import contract, lp_clustering
    from reference_partition import contract as ref_contract

    n, indptr, nbrs, ew, vw = _big_weight_graph(3)
    ew = ew.astype(np.int64) * 4                      # coarse weights are int64 sums
    g = csr_at(tmp_path, "g", indptr, nbrs, ew, vw)   # and stream from past 2^31 entries
    cluster = lp_clustering(g, int(vw.sum()) // 6, 3, 0, 64)
    level = contract(g, cluster, tmp_path, 0, 64)
    cmap, cvw, edges = ref_contract(indptr, nbrs, ew, vw, cluster)
    np.testing.assert_array_equal(level.cmap, cmap)
    np.testing.assert_array_equal(level.graph.vweights, cvw)
    cg = level.graph
    nb, w = cg.indices.read_all(), cg.weights.read_all()
    got = {(v, int(nb[j])): int(w[j]) for v in range(cg.num_nodes) for j in range(cg.indptr[v], cg.indptr[v + 1])}
    assert got == edges and max(edges.values()) > 2**32


# ---- ingest -------------------------------------------------------------------------------------

def _csr_build(tmp_path, src, dst, n, entry_base: int, **kw):
    """The CSR build (bucket spill, per-bucket sort/dedup, indptr rows) with `entry_base` entries
    already emitted before these buckets; returns (indptr, indices) of the raw outputs."""
    from gstore.pipeline.ingest.csr_build import CsrBuilder, first_level_spill
    from gstore.pipeline.ingest.id_remap import BucketPlan, IdTable

    d = tmp_path / f"b{entry_base}"
    d.mkdir()
    plan = BucketPlan.from_sample(np.asarray(dst, np.int64), kw.pop("buckets", 8))
    spill = first_level_spill(d, plan, weighted=False)
    for s in range(0, len(src), 1000):
        spill.add(np.asarray(dst[s:s + 1000], np.int64), np.asarray(src[s:s + 1000], np.int64), None,
                  both=True)
    b = CsrBuilder(IdTable(num_nodes=n, identity=True), d, dedup=True, drop_self_loops=True,
                   sum_weights=False, weighted=False, max_records=kw.pop("max_records", 1 << 20))
    b.stats.num_edges = entry_base
    b.run(spill)
    out = b.indptr.read_all(), b.indices.read_all(), b.stats
    b.indptr.close()
    b.indices.close()
    return out


@pytest.mark.parametrize("max_records", [1 << 20, 1500])   # one bucket per range; re-split buckets
def test_csr_build_rows_past_2_31(tmp_path, monkeypatch, max_records):
    from gstore.pipeline.ingest import csr_build

    monkeypatch.setattr(csr_build, "_PARALLEL_MIN_RECORDS", 256)   # the two-thread halves too
    n = 3000
    rng = np.random.default_rng(5)
    src, dst = rng.integers(0, n, 6000), rng.integers(0, n, 6000)
    dst[:1500] = 17                                   # a hub row: re-split on (dst, src)
    p_indptr, p_idx, _ = _csr_build(tmp_path, src, dst, n, 0, max_records=max_records)
    indptr, idx, stats = _csr_build(tmp_path, src, dst, n, BASE, max_records=max_records)
    assert stats.buckets > 1 and (max_records > 2000 or stats.resplits > 0)
    want_indptr, want_idx = reference_csr(src, dst, n, directed=False, drop_self_loops=True)
    np.testing.assert_array_equal(p_indptr, want_indptr)
    assert indptr.dtype == np.int64 and indptr[0] == BASE
    np.testing.assert_array_equal(indptr, want_indptr + BASE)
    np.testing.assert_array_equal(idx, want_idx)
    assert stats.num_edges == BASE + len(want_idx)


def test_indptr_segment_past_2_31():
    from gstore.pipeline.ingest import csr_kernels as C
    import reference_ingest as R

    src_bits, row_lo = 12, 2**20
    rows = np.sort(np.random.default_rng(0).integers(0, 50, 300))
    keys = (rows << src_bits) | np.arange(300) % 7
    for base in (2**31 - 100, 2**32 + 3):
        out = np.empty(60, np.int64)
        C.indptr_segment(keys, len(keys), src_bits, np.int64(row_lo), np.int64(row_lo), np.int64(base), out)
        assert out.tolist() == R.indptr_segment(keys.tolist(), src_bits, row_lo, row_lo, 60, base)


def test_row_distributor_past_2_31_bytes(tmp_path):
    """Node rows (features, labels of a node table in any id order) whose byte offsets pass 2^31:
    bucket starts and rows land where a writer at start * row_bytes puts them."""
    from gstore.pipeline.ingest.row_scatter import RowDistributor

    f = 64
    n = 2**24 + 300                                  # n * 128 bytes > 2^31
    ids = np.array([n - 1, 5, n - 290, 2**24 + 1, 2**24 - 1, 0], dtype=np.int64)
    vals = (np.arange(len(ids) * f) % 1000).astype(np.float16).reshape(len(ids), f) + 1
    got, starts = {}, []

    def write_rows(start, block):
        starts.append((start, len(block)))
        for r in np.flatnonzero(block.view(np.uint64).any(axis=1)):   # rows not all zero
            got[int(start) + int(r)] = block[r].copy()

    d = RowDistributor(write_rows, n, (f,), np.float16, 64 << 20, tmp_path, "features")
    assert d.num_buckets > 1
    d.add(ids[::2], vals[::2])
    d.add(ids[1::2], vals[1::2])
    d.finish()
    assert sorted(got) == sorted(ids.tolist())
    for i, v in zip(ids, vals):
        np.testing.assert_array_equal(got[int(i)], v)
    pos = 0
    for start, rows in starts:                       # every row written once, in order
        assert start == pos and start * f * 2 == pos * 128
        pos += rows
    assert pos == n and n * 128 > 2**31 and max(ids) * 128 > 2**31


# ---- byte offsets from numpy int32 indices ---------------------------------------------------------
# numpy 2 keeps np.int32 * int in int32 (NEP 50): a row or entry index that arrives as a numpy int32
# wraps its byte offset past 2^31 bytes, so the readers and writers take int() first

def test_array_file_reads_at_int32_offsets_past_2_31_bytes(tmp_path):
    f = window_file(tmp_path / "a", np.arange(4, dtype=np.int32), base=2**30)   # bytes 2^32..
    assert f.read(np.int32(2**30), np.int32(2**30 + 4)).tolist() == [0, 1, 2, 3]
    assert f.read(np.int64(2**30 + 2), 2**30 + 4).tolist() == [2, 3]


def test_shard_writer_rows_at_int32_start_past_2_31_bytes(tmp_path):
    from gstore.shard_array import ShardArrayWriter

    n, f = 2**24 + 16, 64                           # 128-byte rows: row 2^24 + 8 is past 2^31 bytes
    w = ShardArrayWriter(tmp_path, "features", (n, f), np.float16)
    row = np.arange(1, f + 1, dtype=np.float16)[None]
    w.write_rows(np.int32(2**24 + 8), row)
    w.abort()
    with open(w.path, "rb") as fh:
        got = np.frombuffer(os.pread(fh.fileno(), 2 * f, (2**24 + 8) * 2 * f), np.float16)
    np.testing.assert_array_equal(got, row[0])


def test_npy_rows_at_int32_start_past_2_31_bytes(tmp_path):
    from gstore.pipeline.ingest.npy_blocks import open_npy, read_rows

    path = tmp_path / "big.npy"
    m = np.lib.format.open_memmap(path, mode="w+", dtype=np.int64, shape=(2**28 + 8, 2))   # sparse
    m[-8:] = np.arange(16).reshape(8, 2)
    m.flush()
    del m
    a = open_npy(str(path), "")
    with open(path, "rb") as fh:
        got = read_rows(fh, a, np.int32(2**28), 8)
    np.testing.assert_array_equal(got, np.arange(16).reshape(8, 2))


# ---- reorder: touches every entry, so only with GSTORE_SLOW=1 ----------------------------------

slow = pytest.mark.skipif(os.environ.get("GSTORE_SLOW") != "1",
                          reason="writes 8 GiB past 2^31 entries: set GSTORE_SLOW=1")


def _reorder_hub_store(tmp_path, hub_rows: int, deg: int, budget: str) -> float:
    """`reorder_store` on a directed store whose first `hub_rows` rows hold `deg` in-edges from
    node 0 each (a hole of the sparse file), followed by the real rows of 64 nodes; the real nodes
    form the last part, so their rows start past hub_rows * deg entries in the new store too.
    Checks the renumbered graph; returns the reorder's seconds."""
    from gstore.builder import StoreBuilder
    from gstore.manifest import StoreManifest
    from gstore.pipeline.partition.partition import PartitionResult, partition_arrays, record_partition
    from gstore.pipeline.partition.reorder import reorder_store

    m = 64
    n = hub_rows + m
    src, dst = planted_graph(m, 4, 5, 1, 4)
    t_indptr, t_nbrs = reference_csr(src, dst, m, directed=True)
    hub = hub_rows * deg
    indptr = np.concatenate([np.arange(hub_rows + 1, dtype=np.int64) * deg, hub + t_indptr[1:]])
    e = int(indptr[-1])
    path = tmp_path / "g.gstore"
    with StoreBuilder(path) as b:
        b.write_array("indptr", indptr)
        w = b.array_writer("indices", (e,), np.int32)
        w.skip_rows(hub)
        w.append((t_nbrs + hub_rows).astype(np.int32))
        b.add(w.finish())
        b.commit(StoreManifest(num_nodes=n, num_edges=e, directed=True))
    # parts: the hub's two halves swap places (contiguous runs, so each output bucket reads a few
    # input chunks), the real nodes last, in reverse id order
    parts = np.full(n, 2, dtype=np.int32)
    parts[:hub_rows // 2] = 1
    parts[hub_rows // 2:hub_rows] = 0
    record_partition(path, "3", parts, PartitionResult(num_parts=3, method="multilevel", edge_cut=0.0,
                                                       balance=1.0, seconds=0.0, peak_rss=0,
                                                       metis_estimate=0))
    t0 = time.perf_counter()
    reorder_store(path, "3", memory_budget=budget)
    seconds = time.perf_counter() - t0
    s = gstore.open(path)
    _, perm = partition_arrays(parts, 3)
    inv = np.empty(n, np.int64)
    inv[perm] = np.arange(n)
    assert s.num_edges == e and s.manifest.partitions["3"]["contiguous"]
    assert s.indptr.dtype == np.int64 and int(s.indptr[-1]) == e
    np.testing.assert_array_equal(np.asarray(s.partition.parts), np.sort(parts))
    for v in (0, 1, hub_rows // 2 - 1, hub_rows // 2, hub_rows - 1):     # hub rows: deg times inv[0]
        assert s.neighbors(int(inv[v])).tolist() == [int(inv[0])] * deg
    assert int(s.indptr[inv[hub_rows]]) == hub                          # the real rows start past it
    for v in range(m):
        want = sorted(inv[t_nbrs[t_indptr[v]:t_indptr[v + 1]] + hub_rows].tolist())
        assert s.neighbors(int(inv[hub_rows + v])).tolist() == want
    return seconds


def test_reorder_store_hub_below_2_31(tmp_path):
    """The reorder check below, on a small hub (the same code path; runs in CI)."""
    _reorder_hub_store(tmp_path, 2000, 50, "1MiB")


@pytest.mark.slow
@slow
def test_reorder_store_past_2_31(tmp_path):
    """Reorder past 2^31 entries: every entry is read and written again, 8 GiB of real blocks."""
    if shutil.disk_usage(tmp_path).free < 24 << 30:
        pytest.skip("needs 24 GiB of free disk (the reordered indices are 8 GiB of real blocks)")
    seconds = _reorder_hub_store(tmp_path, 2**21 + 1, 1024, "1GiB")    # 2^31 + 1024 hub entries
    print(f"reorder past 2^31 entries: {seconds:.1f} s")
