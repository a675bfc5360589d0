"""The out-of-core ingest build: kernels vs their plain-Python twins, and whole builds vs an
independent reference (reference_ingest.reference_ingest -> store_factory.reference_csr)."""
from __future__ import annotations

import numpy as np
import pytest
import zarr
from hypothesis import example, given, settings
from hypothesis import strategies as st

import gstore
from gstore.errors import InputError
import reference_ingest as R
from gstore.pipeline.ingest import csr_kernels as C
from gstore.pipeline.ingest import id_remap_kernels as K
from gstore.pipeline.ingest.chunks import EdgeReadOptions, StringColumn
from gstore.pipeline.ingest.id_remap import BucketPlan, IdCollector, _sorted_table
from gstore.pipeline.ingest.ingest import IngestOptions, ingest

I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def _col(strings: list[str]) -> StringColumn:
    data = [s.encode() for s in strings]
    offsets = np.zeros(len(data) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in data])
    return StringColumn(offsets, np.frombuffer(b"".join(data), dtype=np.uint8).copy())


# ---- kernels vs twins ----------------------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(max_size=12), max_size=40))
def test_hash_strings_matches_twin(strings):
    col = _col(strings)
    out = np.empty(len(strings), dtype=np.int64)
    K.hash_strings(col.offsets, col.utf8, out)
    assert out.tolist() == [R.hash_string(s) for s in strings]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text("ab", max_size=3), max_size=60), st.booleans())
def test_first_distinct_strings_matches_twin(strings, weak):
    """With the real hash no two of these strings collide; with a weak key (the length) they do,
    and the kernel must stop at the same pair as the twin instead of merging them."""
    col = _col(strings)
    keys = np.array([len(s.encode()) if weak else R.hash_string(s) for s in strings], dtype=np.int64)
    table = np.empty(1 << max(4, (2 * len(keys)).bit_length()), dtype=np.int64)
    clash = np.empty(2, dtype=np.int64)
    first = K.first_distinct_strings(keys, col.offsets, col.utf8, table, clash)
    want, pair = R.first_distinct_strings(keys.tolist(), strings)
    assert first.tolist() == want
    assert (tuple(clash.tolist()) if clash[0] >= 0 else None) == pair
    if not weak:
        assert pair is None


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(-4, 4), st.integers(-4, 4)), max_size=40),
       st.lists(st.tuples(st.integers(-4, 4), st.integers(-4, 4)), max_size=4, unique=True),
       st.booleans())
def test_scatter_edges_matches_twin(edges, bounds, both):
    bounds = sorted(bounds)
    dst = np.array([e[0] for e in edges], dtype=np.int64)
    src = np.array([e[1] for e in edges], dtype=np.int64)
    w = np.arange(len(edges), dtype=np.float32)
    bd = np.array([b[0] for b in bounds], dtype=np.int64)
    bs = np.array([b[1] for b in bounds], dtype=np.int64)
    m = len(edges) * (2 if both else 1)
    out = np.empty((m, 2), dtype=np.int64)
    out_w = np.empty(m, dtype=np.float32)
    starts = np.empty(len(bounds) + 2, dtype=np.int64)
    no_grid = np.zeros(0, dtype=np.int32)
    K.scatter_edges(dst, src, w, True, both, bd, bs, np.int64(0), 0, no_grid, out, out_w, starts)
    want = R.scatter_edges(dst, src, w, both, bd.tolist(), bs.tolist())
    for b, recs in enumerate(want):
        got = [(int(out[i, 0]), int(out[i, 1]), float(out_w[i])) for i in range(starts[b], starts[b + 1])]
        assert got == recs


@settings(max_examples=40, deadline=None)
@given(st.lists(I64, min_size=1, max_size=50), st.lists(I64, min_size=1, max_size=50),
       st.integers(1, 9), st.booleans(), st.integers(1, 16))
@example(sample=[0, 2**62, -2**63], keys=[0], n_buckets=3, full_range=False, grid_bits=2)  # bounds 2^63 apart
def test_grid_bucket_plan_matches_bound_search(sample, keys, n_buckets, full_range, grid_bits):
    plan = BucketPlan.from_sample(np.array(sample, dtype=np.int64), n_buckets, full_range, grid_bits)
    # strictly increasing, compared without np.diff (a diff of int64 bounds 2^63 apart overflows)
    assert plan.n_buckets <= n_buckets and (plan.bounds[1:] > plan.bounds[:-1]).all()
    k = np.array(keys, dtype=np.int64)
    out = np.empty((len(k), 2), dtype=np.int64)
    starts = np.empty(plan.n_buckets + 1, dtype=np.int64)
    bs = np.full(len(plan.bounds), -(2**63), dtype=np.int64)
    w = np.zeros(1, dtype=np.float32)
    K.scatter_edges(k, k, w, False, False, plan.bounds, bs, np.int64(plan.grid_lo), plan.grid_shift,
                    plan.cell_bucket, out, w, starts)
    want = R.scatter_edges(k, k, None, False, plan.bounds.tolist(), bs.tolist())
    assert np.diff(starts).tolist() == [len(b) for b in want]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-300, 300), min_size=1, max_size=80), st.lists(st.integers(-400, 400), max_size=30))
def test_bitmap_lookup_and_rank_match_twin(node_keys, queries):
    nk = np.array(node_keys, dtype=np.int64)
    base = (int(nk.min()) // 64) * 64
    bits = np.zeros((int(nk.max()) - base) // 64 + 1, dtype=np.uint64)
    K.bitmap_set(bits, np.int64(base), nk)
    prefix = K.bitmap_prefix(bits)
    q = np.array(queries + node_keys, dtype=np.int64)
    out = np.empty(len(q), dtype=np.int64)
    K.bitmap_lookup(bits, prefix, np.int64(base), q, out)
    assert out.tolist() == R.rank_lookup(node_keys, q.tolist())
    for k in queries:
        assert K.bitmap_rank_of_bound(bits, prefix, np.int64(base), np.int64(k)) == R.rank_of_bound(node_keys, k)


@settings(max_examples=40, deadline=None)
@given(st.lists(I64, min_size=1, max_size=60), st.lists(I64, max_size=20))
def test_sorted_table_lookup_matches_twin(node_keys, queries):
    uniq = np.unique(np.array(node_keys, dtype=np.int64))
    t = _sorted_table(uniq)
    q = np.array(queries + node_keys, dtype=np.int64)
    assert t.lookup(q).tolist() == R.rank_lookup(node_keys, q.tolist())
    for k in queries:
        assert t.rank_of_bound(k) == R.rank_of_bound(node_keys, k)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 7)), max_size=50), st.booleans())
def test_csr_bucket_kernels_match_twins(edges, sum_weights):
    src_bits, row_lo = 3, 2
    keys = np.array([(d << src_bits) | s for d, s in edges], dtype=np.int64)
    w = np.arange(len(edges), dtype=np.float32) + 1
    n = C.drop_self_loops(keys, w, True, len(keys), np.int64(row_lo), src_bits)
    rk, rw = R.drop_self_loops([(d << src_bits) | s for d, s in edges], list(w[:0]) + (np.arange(len(edges)) + 1.0).tolist(),
                               row_lo, src_bits)
    assert keys[:n].tolist() == rk and w[:n].tolist() == rw
    C.radix_sort_with_payload(keys, w, n, 7, np.empty(n, np.int64), np.empty(n, np.float32))
    sk, sw = R.stable_sort_pairs(rk, rw)
    assert keys[:n].tolist() == sk and w[:n].tolist() == sw
    m = C.dedup_sorted(keys, w, True, n, sum_weights)
    dk, dw = R.dedup_sorted(sk, sw, sum_weights)
    assert keys[:m].tolist() == dk and w[:m].tolist() == pytest.approx(dw)
    cols = np.empty(m, dtype=np.int32)
    C.unpack_columns(keys, m, src_bits, cols)
    assert cols.tolist() == [k & 7 for k in dk]
    out = np.empty(9, dtype=np.int64)
    C.indptr_segment(keys, m, src_bits, np.int64(row_lo), np.int64(row_lo), np.int64(100), out)
    assert out.tolist() == R.indptr_segment(dk, src_bits, row_lo, row_lo, 9, 100)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 200), max_size=40))
def test_mark_seen_matches_twin(dense):
    seen = np.zeros(4, dtype=np.uint64)
    assert K.mark_seen(seen, np.array(dense, dtype=np.int64)) == R.mark_seen(set(), dense)


def test_string_dedup_detects_hash_collisions():
    col = _col(["a", "bb", "a", "ccc"])
    keys = np.array([5, 7, 5, 7], dtype=np.int64)     # "bb" and "ccc" forced onto one hash
    order = np.argsort(keys, kind="stable")
    out_len, out_utf8 = np.empty(4, np.int64), np.empty(16, np.uint8)
    m, nbytes, clash = K.dedup_sorted_strings(keys, order, col.offsets, col.utf8, out_len, out_utf8)
    assert clash == 3
    keys = np.array([5, 7, 5, 9], dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    m, nbytes, clash = K.dedup_sorted_strings(keys, order, col.offsets, col.utf8, out_len, out_utf8)
    assert (m, clash) == (3, -1) and bytes(out_utf8[:nbytes]) == b"abbccc"


# ---- whole builds ----------------------------------------------------------------------------------

def _write_edges(path, src, dst, weights=None):
    with open(path, "w") as fh:
        fh.write("src,dst" + (",w" if weights is not None else "") + "\n")
        for i in range(len(src)):
            fh.write(f"{src[i]},{dst[i]}" + (f",{weights[i]}" if weights is not None else "") + "\n")
    return str(path)


def _write_edges_fast(path, src, dst):
    np.savetxt(path, np.stack([src, dst], axis=1), fmt="%d", delimiter=",", header="src,dst", comments="")
    return str(path)


def _check(store, src, dst, *, directed, dedup=True, drop=False, extra=()):
    g = gstore.open(store)
    nodes, indptr, indices = R.reference_ingest(list(src), list(dst), directed=directed, dedup=dedup,
                                                drop_self_loops=drop, extra_ids=extra)
    got_ids = g.node_ids.to_list() if g.manifest.id_type == "string" else g.node_ids.tolist()
    assert got_ids == nodes
    np.testing.assert_array_equal(g.indptr, indptr)
    np.testing.assert_array_equal(g.indices, indices)
    assert g.indices.dtype == np.int32 and g.num_edges == len(indices) and g.directed == directed
    return g


def _random_ids(rng, n_nodes, n_edges, pool):
    ids = rng.choice(pool, size=n_nodes, replace=False)
    return ids[rng.integers(0, n_nodes, n_edges)], ids[rng.integers(0, n_nodes, n_edges)]


@pytest.mark.parametrize("directed", [True, False])
@pytest.mark.parametrize("dedup", [True, False])
@pytest.mark.parametrize("self_loops", ["keep", "drop"])
def test_sparse_int_ids_match_reference(tmp_path, directed, dedup, self_loops):
    rng = np.random.default_rng(1)
    src, dst = _random_ids(rng, 60, 400, np.arange(10, 5000, 7))
    path = _write_edges(tmp_path / "e.csv", src, dst)
    r = ingest([path], tmp_path / "s", IngestOptions(undirected=not directed, dedup=dedup, self_loops=self_loops))
    _check(tmp_path / "s", src, dst, directed=directed, dedup=dedup, drop=self_loops == "drop")
    assert r.edges_read == 400 and (r.duplicates_dropped > 0) == dedup
    assert (r.self_loops_dropped > 0) == (self_loops == "drop")


def test_negative_and_huge_int64_ids_use_sorted_table(tmp_path):
    pool = np.array([-(2**63), -(2**40), -5, 0, 3, 2**33, 2**62, 2**63 - 1], dtype=np.int64)
    rng = np.random.default_rng(2)
    src, dst = pool[rng.integers(0, 8, 100)], pool[rng.integers(0, 8, 100)]
    path = _write_edges(tmp_path / "e.csv", src, dst)
    r = ingest([path], tmp_path / "s", IngestOptions(read=EdgeReadOptions(id_type="int")))
    _check(tmp_path / "s", src.tolist(), dst.tolist(), directed=True)
    assert r.id_table == "sorted"


def test_dense_ids_map_to_themselves(tmp_path):
    rng = np.random.default_rng(3)
    src, dst = rng.integers(0, 50, 300), rng.integers(0, 50, 300)
    src[0], dst[0] = 0, 49
    path = _write_edges(tmp_path / "e.csv", src, dst)
    r = ingest([path], tmp_path / "s", IngestOptions())
    g = _check(tmp_path / "s", src, dst, directed=True)
    assert r.id_table == "identity" and g.node_ids.tolist() == list(range(g.num_nodes))


def test_string_ids_match_reference_in_hash_order(tmp_path):
    rng = np.random.default_rng(4)
    names = np.array([f"user_{i}" for i in range(70)] + ["ü-nicode", "a b"], dtype=object)
    src, dst = names[rng.integers(0, len(names), 300)], names[rng.integers(0, len(names), 300)]
    path = _write_edges(tmp_path / "e.csv", src, dst)
    r = ingest([path], tmp_path / "s", IngestOptions(undirected=True))
    _check(tmp_path / "s", src.tolist(), dst.tolist(), directed=False)
    assert r.id_type == "string"


def test_auto_ids_restart_as_strings_after_integer_blocks(tmp_path):
    n = 200_000  # > one 1 MiB reader block of integer lines before the first string id
    src = np.arange(n).astype(str).astype(object)
    dst = ((np.arange(n) + 1) % n).astype(str).astype(object)
    dst[-1] = "x"
    path = tmp_path / "e.csv"
    with open(path, "w") as fh:
        fh.write("src,dst\n" + "\n".join(f"{a},{b}" for a, b in zip(src, dst)) + "\n")
    r = ingest([str(path)], tmp_path / "s", IngestOptions(memory_budget=16 << 20))
    assert r.id_type == "string" and r.num_nodes == n + 1
    g = gstore.open(tmp_path / "s")
    ids = g.node_ids
    v = ids.to_list().index("x")
    assert [ids[int(u)] for u in g.neighbors(v)] == [str(n - 1)]


@pytest.mark.parametrize("undirected", [False, True])
@pytest.mark.parametrize("sum_weights", [False, True])
def test_weights_follow_dedup_rule(tmp_path, undirected, sum_weights):
    rng = np.random.default_rng(5)
    src, dst = rng.integers(100, 120, 200), rng.integers(100, 120, 200)
    w = np.round(rng.random(200), 3)
    path = _write_edges(tmp_path / "e.csv", src, dst, w)
    ingest([path], tmp_path / "s", IngestOptions(read=EdgeReadOptions(weight_col="w"), undirected=undirected,
                                                 sum_duplicate_weights=sum_weights))
    g = _check(tmp_path / "s", src, dst, directed=not undirected)
    want = R.reference_weights(src.tolist(), dst.tolist(), w.astype(np.float32).tolist(),
                               directed=not undirected, dedup=True, sum_weights=sum_weights)
    ids = g.node_ids
    for v in range(g.num_nodes):
        for j in range(g.indptr[v], g.indptr[v + 1]):
            assert g.weights[j] == pytest.approx(want[(ids[v], ids[g.indices[j]])][0], rel=1e-5)


def test_tiny_budget_many_buckets_same_result(tmp_path):
    rng = np.random.default_rng(6)
    src, dst = _random_ids(rng, 20_000, 200_000, np.arange(0, 10**6, 3))
    path = _write_edges_fast(tmp_path / "e.csv", src, dst)
    big = ingest([path], tmp_path / "big", IngestOptions(undirected=True))
    small = ingest([path], tmp_path / "small", IngestOptions(undirected=True, memory_budget=1 << 20))
    assert small.buckets > 8 and big.buckets <= 2
    a, b = gstore.open(tmp_path / "big"), gstore.open(tmp_path / "small")
    for name in ("indptr", "indices", "node_ids"):
        np.testing.assert_array_equal(a.array(name), b.array(name))
    _check(tmp_path / "small", src, dst, directed=False)


def test_wide_id_range_switches_bitmap_to_spill(tmp_path):
    rng = np.random.default_rng(7)
    src, dst = rng.integers(0, 1000, 3000), rng.integers(0, 1000, 3000)
    src[-1] = 50_000_000                     # wider than a 1 MiB budget's bitmap
    path = _write_edges(tmp_path / "e.csv", src, dst)
    r = ingest([path], tmp_path / "s", IngestOptions(memory_budget=1 << 20))
    _check(tmp_path / "s", src, dst, directed=True)
    assert r.id_table == "sorted"


def test_one_huge_row_is_split_by_source(tmp_path):
    n = 60_000
    src = np.arange(n) * 2 + 1
    dst = np.zeros(n, dtype=np.int64)      # every edge into node 0: one row bigger than a bucket
    path = _write_edges_fast(tmp_path / "e.csv", src, dst)
    r = ingest([path], tmp_path / "s", IngestOptions(memory_budget=1 << 20))
    assert r.resplits >= 1
    _check(tmp_path / "s", src, dst, directed=True)


# ---- node data -------------------------------------------------------------------------------------

def _nodes_csv(path, ids, labels=None, splits=None):
    cols = ["id"] + (["label"] if labels is not None else []) + (["split"] if splits is not None else [])
    with open(path, "w") as fh:
        fh.write(",".join(cols) + "\n")
        for i, v in enumerate(ids):
            row = [str(v)] + ([str(labels[i])] if labels is not None else []) + \
                  ([splits[i]] if splits is not None else [])
            fh.write(",".join(row) + "\n")
    return str(path)


def test_nodes_table_adds_isolated_nodes_labels_splits(tmp_path):
    src, dst = [10, 20, 30], [20, 30, 10]
    path = _write_edges(tmp_path / "e.csv", src, dst)
    ids = [40, 30, 20, 10, 5]                          # 40 and 5 are isolated
    labels = ["cat", "dog", "", "cat", "bird"]
    splits = ["train", "val", "test", "", "train"]
    nodes = _nodes_csv(tmp_path / "n.csv", ids, labels, splits)
    ingest([path], tmp_path / "s", IngestOptions(nodes=nodes))
    g = _check(tmp_path / "s", src, dst, directed=True, extra=ids)
    assert g.node_ids.tolist() == [5, 10, 20, 30, 40]
    assert g.label_names == ["bird", "cat", "dog"] and g.manifest.num_classes == 3
    assert g.labels.tolist() == [0, 1, -1, 2, 1]
    assert g.split("train").tolist() == [0, 4] and g.split("val").tolist() == [3]
    assert g.split("test").tolist() == [2]
    assert g.degrees()[[0, 4]].tolist() == [0, 0]


def test_npy_features_follow_node_table_rows_and_keyed_csv(tmp_path):
    rng = np.random.default_rng(8)
    src, dst = rng.integers(0, 30, 100) * 3, rng.integers(0, 30, 100) * 3
    ids = np.unique(np.concatenate([src, dst]))
    shuffled = rng.permutation(ids)
    import pyarrow as pa
    import pyarrow.parquet as pq

    nodes = str(tmp_path / "n.parquet")   # an id-only node table (parquet: no delimiter to detect)
    pq.write_table(pa.table({"id": shuffled}), nodes)
    feats = rng.random((len(ids), 5)).astype(np.float32)
    np.save(tmp_path / "f.npy", feats)
    path = _write_edges(tmp_path / "e.csv", src, dst)
    ingest([path], tmp_path / "s", IngestOptions(nodes=nodes, features=str(tmp_path / "f.npy")))
    g = gstore.open(tmp_path / "s")
    row_of = {int(v): i for i, v in enumerate(shuffled)}
    want = feats[[row_of[int(v)] for v in g.node_ids]]
    np.testing.assert_array_equal(g.features, want)
    # the same features keyed by id in a CSV, stored as float16
    with open(tmp_path / "f.csv", "w") as fh:
        fh.write("id," + ",".join(f"f{j}" for j in range(5)) + "\n")
        for i, v in enumerate(shuffled):
            fh.write(f"{v}," + ",".join(repr(float(x)) for x in feats[i]) + "\n")
    ingest([path], tmp_path / "s16", IngestOptions(features=str(tmp_path / "f.csv"), feature_dtype="float16"))
    h = gstore.open(tmp_path / "s16")
    assert h.features.dtype == np.float16 and h.manifest.feature_dtype == "float16"
    np.testing.assert_allclose(h.features.astype(np.float32), want, rtol=1e-3)


def test_random_split_is_seeded_and_only_labelled(tmp_path):
    rng = np.random.default_rng(9)
    src, dst = rng.integers(0, 500, 2000), rng.integers(0, 500, 2000)
    path = _write_edges_fast(tmp_path / "e.csv", src, dst)
    ids = np.unique(np.concatenate([src, dst]))
    labels_path = _nodes_csv(tmp_path / "l.csv", ids[::2].tolist(), labels=[i % 3 for i in range(len(ids[::2]))])
    runs = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        ingest([path], tmp_path / name, IngestOptions(labels=labels_path, split="random:0.6,0.2,0.2", seed=seed))
        g = gstore.open(tmp_path / name)
        runs.append([g.split(s).tolist() for s in ("train", "val", "test")])
        parts = np.concatenate([np.array(x, dtype=np.int64) for x in runs[-1]])
        assert len(parts) == len(np.unique(parts)) and (g.labels[parts] >= 0).all()
        assert len(parts) == int((np.asarray(g.labels) >= 0).sum())
        assert g.label_names == ["0", "1", "2"]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    assert 0.5 < len(runs[0][0]) / sum(len(x) for x in runs[0]) < 0.7


def test_store_opens_with_plain_zarr(tmp_path):
    src, dst = [1, 2, 3, 3], [2, 3, 1, 2]
    path = _write_edges(tmp_path / "e.csv", src, dst)
    ingest([path], tmp_path / "s", IngestOptions(undirected=True))
    z = zarr.open_group(str(tmp_path / "s"), mode="r")
    g = gstore.open(tmp_path / "s")
    np.testing.assert_array_equal(z["indptr"][:], g.indptr)
    np.testing.assert_array_equal(z["indices"][:], g.indices)
    np.testing.assert_array_equal(z["node_ids"][:], [1, 2, 3])
    build = g.manifest.build
    assert build["stats"]["edges_read"] == 4 and build["memory_budget"] == 2 << 30
    assert build["options"]["undirected"] is True


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(-3000, 3000), min_size=1, max_size=30), min_size=1, max_size=6),
       st.integers(0, 2**40), st.booleans())
def test_id_collector_grows_and_spills_like_a_set(tmp_path_factory, batches, offset, tiny):
    spill = tmp_path_factory.mktemp("ids")
    sample = np.array(batches[0], dtype=np.int64) * 1000 + offset
    plan = BucketPlan.from_sample(sample, 3)
    budget = 1 if tiny else 1 << 20           # tiny: max_range 2^16 -> spill once keys spread out
    col = IdCollector(spill, plan, budget, force_spill=False)
    col.budget = 1 << 20
    all_keys = []
    for b in batches:
        k = np.array(b, dtype=np.int64) * (1000 if tiny else 1) + offset
        col.add(k)
        all_keys += k.tolist()
    table = col.finish(None, False, 7)
    q = np.array(all_keys + [offset - 5000, offset + 10**7], dtype=np.int64)
    assert table.num_nodes == len(set(all_keys))
    assert table.lookup(q).tolist() == R.rank_lookup(all_keys, q.tolist())


@pytest.mark.parametrize("weighted", [False, True])
def test_two_thread_bucket_halves_match_reference(tmp_path, monkeypatch, weighted):
    from gstore.pipeline.ingest import csr_build

    monkeypatch.setattr(csr_build, "_PARALLEL_MIN_RECORDS", 16)
    rng = np.random.default_rng(10)
    src, dst = _random_ids(rng, 80, 3000, np.arange(0, 10**5, 11))
    w = np.round(rng.random(3000), 3)
    path = _write_edges(tmp_path / "e.csv", src, dst, w if weighted else None)
    read = EdgeReadOptions(weight_col="w" if weighted else None)
    ingest([path], tmp_path / "s", IngestOptions(read=read, undirected=True, self_loops="drop",
                                                 memory_budget=1 << 20))
    g = _check(tmp_path / "s", src, dst, directed=False, drop=True)
    if weighted:
        want = R.reference_weights(src.tolist(), dst.tolist(), w.astype(np.float32).tolist(),
                                   directed=False, dedup=True, sum_weights=False)
        ids = g.node_ids
        got = {(int(ids[v]), int(ids[g.indices[j]])): float(g.weights[j])
               for v in range(g.num_nodes) for j in range(g.indptr[v], g.indptr[v + 1])}
        assert got == pytest.approx({k: v[0] for k, v in want.items() if k[0] != k[1]})


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(3, 12), st.integers(0, 15)), max_size=40), st.integers(3, 13))
def test_pack_and_partition_pack_match_twins(edges, mid):
    dst = np.array([e[0] for e in edges], dtype=np.int64)
    src = np.array([e[1] for e in edges], dtype=np.int64)
    w = np.arange(len(edges), dtype=np.float32)
    keys = np.empty(len(edges), dtype=np.int64)
    C.remap_and_pack(dst, src, np.int64(3), 4, keys)
    assert keys.tolist() == R.pack(dst, src, 3, 4)
    w_out = np.empty(len(edges), dtype=np.float32)
    n_lo = C.partition_pack(dst, src, w, True, np.int64(3), 4, np.int64(mid), keys, w_out)
    rk, rw, r_lo = R.partition_pack(dst.tolist(), src.tolist(), w.tolist(), 3, 4, mid)
    assert (keys.tolist(), w_out.tolist(), n_lo) == (rk, rw, r_lo)


@settings(max_examples=30, deadline=None)
@given(st.lists(I64, max_size=40), st.lists(I64, max_size=5, unique=True))
def test_scatter_keys_groups_by_bound(keys, bounds):
    bnd = np.array(sorted(bounds), dtype=np.int64)
    k = np.array(keys, dtype=np.int64)
    out = np.empty(len(k), dtype=np.int64)
    starts = np.empty(len(bnd) + 2, dtype=np.int64)
    K.scatter_keys(k, bnd, np.int64(0), 0, np.zeros(0, dtype=np.int32), out, starts)
    want = R.scatter_edges(k, k, None, False, bnd.tolist(), [-(2**63)] * len(bnd))
    for b, recs in enumerate(want):
        assert out[starts[b]:starts[b + 1]].tolist() == [r[0] for r in recs]


def test_npy_features_without_ids_need_a_node_table_unless_ids_are_dense(tmp_path):
    """A bare feature array carries no ids: with ids that are not 0..N-1 no rule can say which row is
    which node, so the build stops instead of matching rows to sorted ids (a silently wrong store)."""
    src, dst = np.array([10, 20, 30]), np.array([20, 30, 10])
    feats = np.arange(9, dtype=np.float32).reshape(3, 3)
    np.save(tmp_path / "f.npy", feats)
    path = _write_edges(tmp_path / "e.csv", src, dst)
    with pytest.raises(InputError, match="needs --nodes"):
        ingest([path], tmp_path / "s", IngestOptions(features=str(tmp_path / "f.npy")))
    assert not (tmp_path / "s").exists() and not (tmp_path / "s.tmp").exists()
    # ids 0..N-1: row i is node i, nothing to guess
    dense = _write_edges(tmp_path / "d.csv", src // 10 - 1, dst // 10 - 1)
    ingest([dense], tmp_path / "d", IngestOptions(features=str(tmp_path / "f.npy")))
    np.testing.assert_array_equal(gstore.open(tmp_path / "d").features, feats)
