"""Feature propagation (pipeline/propagation): kernels vs their plain-Python twins, the blocked
out-of-core hops vs a dense A_hat^k X, the memory plan, and the store layout and reuse rules."""
from __future__ import annotations

import dataclasses
import sys
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gstore
from gstore.builder import StoreBuilder
from gstore.errors import BudgetError, OptionError, StoreError
from gstore.manifest import StoreManifest
from gstore.pipeline.inference.chunks import plan_chunks
from gstore.pipeline.propagation import PropagationParams, PropagationResult, open_propagated, propagate
from gstore.pipeline.propagation import propagate_kernels as K
from gstore.pipeline.propagation.plan import HopPlan, plan_hop
from gstore.pipeline.propagation.propagate import stored_hops
from gstore.store_update import store_lock
from reference_propagation import (accumulate_panel_ref, blocked_hop_ref, dense_hops, node_scales_ref)

# the package re-exports the function `propagate`, which hides the module of that name
propagate_module = sys.modules["gstore.pipeline.propagation.propagate"]

TOL = {"float32": dict(rtol=1e-5, atol=1e-6), "float16": dict(rtol=2e-3, atol=2e-3)}


# ---- stores straight from a CSR ---------------------------------------------------------------
def csr_from_edges(src, dst, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """In-edge CSR of the edge list as given (duplicates and self loops kept), sources sorted per
    row; returns indptr, indices and the edge order (to carry weights along)."""
    src, dst = np.asarray(src, np.int64), np.asarray(dst, np.int64)
    order = np.lexsort((src, dst))
    indptr = np.zeros(n + 1, np.int64)
    np.add.at(indptr, dst + 1, 1)
    return np.cumsum(indptr), src[order], order


def csr_store(path: Path, indptr, indices, x: np.ndarray | None, weights=None) -> Path:
    n = len(indptr) - 1
    manifest = StoreManifest(num_nodes=n, num_edges=int(len(indices)), directed=True)
    with StoreBuilder(path) as b:
        b.write_array("indptr", np.asarray(indptr, np.int64))
        b.write_array("indices", np.asarray(indices, np.int32))
        b.write_array("node_ids", np.arange(n, dtype=np.int64))
        if weights is not None:
            b.write_array("weights", np.asarray(weights, np.float32))
        if x is not None:
            b.write_array("features", x)
            manifest.feature_dim, manifest.feature_dtype = int(x.shape[1]), str(x.dtype)
        b.commit(manifest)
    return Path(path)


def random_store(path: Path, n: int, e: int, f: int, seed: int, *, weighted=False, fdtype="float32",
                 hub: bool = False) -> tuple[Path, tuple]:
    rng = np.random.default_rng(seed)
    src, dst = rng.integers(0, n, e), rng.integers(0, n, e)
    if hub:      # node 0 gets most in-edges
        dst[: e * 2 // 3] = 0
    indptr, indices, order = csr_from_edges(src, dst, n)
    w = rng.uniform(0.1, 2.0, e).astype(np.float32)[order] if weighted else None
    x = rng.standard_normal((n, f)).astype(fdtype)
    return csr_store(path, indptr, indices, x, w), (indptr, indices, w, x)


@contextmanager
def forced_plan(panel_rows: int, max_rows: int, max_edges: int):
    """Make every hop use these limits (tiny graphs would otherwise fit one block and one panel)."""
    def fake(budget, store, k, params, feats):
        n = max(store.num_nodes, 1)
        pr = min(panel_rows, n)
        panels = -(-n // pr)
        return HopPlan(panel_rows=pr, panels=panels, buffers=1 if panels == 1 else 3, max_rows=max_rows,
                       max_edges=max_edges, planned_bytes=0)
    with mock.patch.object(propagate_module, "_plan", fake):
        yield


def check_hops(path: Path, ref: tuple, params: PropagationParams) -> None:
    indptr, indices, w, x = ref
    want = dense_hops(indptr, indices, w, x, params.hops, norm=params.norm, self_loops=params.self_loops,
                      dtype=params.dtype)
    got = open_propagated(gstore.open(path), params)
    assert got is not None and len(got.hops) == params.hops + 1
    np.testing.assert_array_equal(np.asarray(got.hops[0]), x)
    for k in range(params.hops):
        assert got.hops[k + 1].dtype == np.dtype(params.dtype)
        np.testing.assert_allclose(np.asarray(got.hops[k + 1], np.float64), want[k], **TOL[params.dtype])


# ---- kernels vs twins -------------------------------------------------------------------------
@st.composite
def csr_inputs(draw):
    n = draw(st.integers(1, 9))
    e = draw(st.integers(0, 30))
    src = draw(st.lists(st.integers(0, n - 1), min_size=e, max_size=e))
    dst = draw(st.lists(st.integers(0, n - 1), min_size=e, max_size=e))
    indptr, indices, _ = csr_from_edges(src, dst, n)
    weights = np.array(draw(st.lists(st.floats(-1, 3, width=32), min_size=e, max_size=e)), np.float32)
    return n, indptr, indices.astype(np.int32), weights


@settings(max_examples=30, deadline=None)
@given(data=csr_inputs(), use_w=st.booleans(), loops=st.booleans(), mode=st.sampled_from([K.SYM, K.RW]))
def test_node_scales_match_twin(data, use_w, loops, mode):
    n, indptr, _, w = data
    got, want = np.full(n, 7, np.float32), np.full(n, 7, np.float32)
    sw = 1.0 if loops else 0.0
    assert K.node_scales(indptr, w, use_w, sw, mode, 0, got) == node_scales_ref(indptr, w, use_w, sw, mode, 0, want)
    np.testing.assert_allclose(got, want, rtol=1e-6)


@settings(max_examples=50, deadline=None)
@given(data=csr_inputs(), use_w=st.booleans(), f=st.integers(1, 4), split=st.integers(0, 9),
       self_w=st.sampled_from([0.0, 1.0]), seed=st.integers(0, 99), unsorted=st.booleans(),
       parallel=st.booleans())
def test_accumulate_panel_matches_twin(data, use_w, f, split, self_w, seed, unsorted, parallel):
    """Two panels [0, split) and [split, n), cursors carried between them, like the stage; a row
    whose sources are out of order is counted by both."""
    n, indptr, indices, w = data
    if unsorted:
        indices = indices[::-1].copy()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, f)).astype(np.float32)
    split = min(split, n)
    cur_k = np.array([indptr[v] for v in range(n)], np.int64)
    cur_r = cur_k.copy()
    acc_k, acc_r = np.zeros((n, f), np.float32), np.zeros((n, f), np.float32)
    bad_k = bad_r = 0
    kernel = K.accumulate_panel if parallel else K.accumulate_panel_serial
    for c0, c1 in ((0, split), (split, n)):
        bad_k += kernel(indptr, indices, w, use_w, 0, n, 0, len(indices), x[c0:c1], c0, self_w,
                                    cur_k, acc_k)
        bad_r += accumulate_panel_ref(indptr, indices, w, use_w, 0, n, 0, len(indices), x[c0:c1], c0, self_w,
                                      cur_r, acc_r)
    assert bad_k == bad_r
    np.testing.assert_array_equal(cur_k, cur_r)
    np.testing.assert_allclose(acc_k, acc_r, rtol=1e-5, atol=1e-6)
    if bad_k == 0:    # sorted rows: every edge was consumed exactly once
        np.testing.assert_array_equal(cur_k, indptr[1:])


def test_unsorted_rows_are_detected_in_every_row_that_crosses_panels():
    indptr = np.array([0, 2], np.int64)
    indices = np.array([1, 0], np.int32)            # descending: edge 0 is in the second panel
    x = np.ones((2, 1), np.float32)
    cur, acc = np.zeros(1, np.int64), np.zeros((1, 1), np.float32)
    bad = sum(K.accumulate_panel(indptr, indices, np.ones(1, np.float32), False, 0, 1, 0, 2, x[c:c + 1], c, 0.0,
                                 cur, acc) for c in (0, 1))
    assert bad == 1


def test_blocked_twin_equals_dense_with_hub_slices_and_panels():
    """The plain-Python blocked algorithm itself (plan + cursors + panels) against the dense A_hat."""
    rng = np.random.default_rng(3)
    n, e = 12, 60
    src, dst = rng.integers(0, n, e), rng.integers(0, n, e)
    dst[:30] = 5                                       # a hub
    indptr, indices, order = csr_from_edges(src, dst, n)
    w = rng.uniform(0.5, 2, e).astype(np.float32)[order]
    x = rng.standard_normal((n, 3)).astype(np.float32)
    plan = plan_chunks(indptr, 4, 3)
    assert plan.num_hubs >= 1
    blocks = list(zip(plan.starts.tolist(), plan.stops.tolist(), plan.edge_lo.tolist(), plan.edge_hi.tolist()))
    for norm in ("sym", "rw"):
        for loops in (True, False):
            for weights in (None, w):
                got = blocked_hop_ref(indptr, indices, weights, x, norm=norm, self_loops=loops, blocks=blocks,
                                      panel_rows=5)
                want = dense_hops(indptr, indices, weights, x, 1, norm=norm, self_loops=loops)[0]
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# ---- the stage vs the dense reference ---------------------------------------------------------
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 14), e=st.integers(0, 50), f=st.integers(1, 3), seed=st.integers(0, 10**6),
       norm=st.sampled_from(["sym", "rw"]), loops=st.booleans(), weighted=st.booleans(),
       dtype=st.sampled_from(["float32", "float16"]), fdtype=st.sampled_from(["float32", "float16"]),
       panel_rows=st.integers(1, 6), max_rows=st.integers(1, 5), max_edges=st.integers(1, 6),
       hub=st.booleans())
def test_propagate_equals_dense_reference(tmp_path_factory, n, e, f, seed, norm, loops, weighted, dtype, fdtype,
                                          panel_rows, max_rows, max_edges, hub):
    """Random small graphs with duplicate edges, self loops in the data, isolated nodes, weights and
    float16 storage, under blocks smaller than a hub's neighborhood and panels of a few rows."""
    path, ref = random_store(tmp_path_factory.mktemp("p") / "g", n, e, f, seed, weighted=weighted,
                             fdtype=fdtype, hub=hub)
    params = PropagationParams(hops=2, norm=norm, self_loops=loops, dtype=dtype)
    with forced_plan(panel_rows, max_rows, max_edges):
        r = propagate(path, params, memory_budget="64MiB")
    assert r.hops_computed == [1, 2] and r.hops_reused == []
    check_hops(path, ref, params)


def test_propagate_hub_split_and_read_ahead_panels(tmp_path):
    """A hub whose row is 40x the block's edge limit, 5 panels through the reader thread."""
    path, ref = random_store(tmp_path / "g", 50, 600, 4, 11, hub=True, weighted=True)
    params = PropagationParams(hops=3)
    with forced_plan(panel_rows=10, max_rows=7, max_edges=10):
        r = propagate(path, params, memory_budget="64MiB")
    assert r.hop_stats[0].hub_slices >= 40 and r.hop_stats[0].panels == 5
    assert r.hop_stats[0].read_bytes == r.hop_stats[0].blocks * 50 * 4 * 4   # every block read every panel
    check_hops(path, ref, params)


def test_propagate_real_budget_plan(tmp_path):
    """The plan from the budget itself (one panel) on a store built the ordinary way."""
    path, ref = random_store(tmp_path / "g", 300, 2000, 8, 2)
    for params in (PropagationParams(hops=2), PropagationParams(hops=2, norm="rw", self_loops=False)):
        r = propagate(path, params)
        assert r.plan["panels"] == 1 and r.peak_anon_bytes > 0
        check_hops(path, ref, params)


def test_empty_graph_and_edgeless_graph(tmp_path):
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    path = csr_store(tmp_path / "e", np.zeros(4, np.int64), np.zeros(0, np.int32), x)
    propagate(path, PropagationParams(hops=2))
    got = open_propagated(gstore.open(path), PropagationParams(hops=2))
    np.testing.assert_allclose(got.hops[2], x)                         # only the self loops: A_hat = I
    propagate(path, PropagationParams(hops=1, self_loops=False))
    assert not np.asarray(open_propagated(gstore.open(path), PropagationParams(hops=1, self_loops=False)).hops[1]).any()
    path0 = csr_store(tmp_path / "z", np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros((0, 2), np.float32))
    r = propagate(path0, PropagationParams(hops=1))
    assert open_propagated(gstore.open(path0), PropagationParams(hops=1)).hops[1].shape == (0, 2)
    assert r.hops_computed == [1]


# ---- reuse, layout, manifest ------------------------------------------------------------------
def test_reuse_extends_and_force_recomputes(tmp_path):
    path, ref = random_store(tmp_path / "g", 40, 200, 3, 5)
    r2 = propagate(path, PropagationParams(hops=2))
    assert r2.hops_computed == [1, 2]
    r3 = propagate(path, PropagationParams(hops=3))
    assert r3.hops_computed == [3] and r3.hops_reused == [1, 2]
    assert r3.arrays[:2] == r2.arrays
    check_hops(path, ref, PropagationParams(hops=3))
    again = propagate(path, PropagationParams(hops=2))
    assert again.hops_computed == [] and again.hops_reused == [1, 2] and again.bytes_written == 0
    g = gstore.open(path)
    rec = g.manifest.derived["propagate-sym-loops-float32"]
    assert rec.kind == "propagation" and rec.node_keyed and rec.params["hops"] == 3
    assert sorted(rec.arrays) == ["hop_1", "hop_2", "hop_3"]
    forced = propagate(path, PropagationParams(hops=2), force=True)
    assert forced.hops_computed == [1, 2] and forced.hops_reused == []
    g = gstore.open(path)
    assert sorted(g.manifest.derived["propagate-sym-loops-float32"].arrays) == ["hop_1", "hop_2"]
    # the replaced hop directories are gone, nothing else is left under derived/
    on_disk = sorted(p.name for p in (path / "derived").iterdir() if p.is_dir())
    named = sorted({n.split("/")[1] for n in g.manifest.arrays if n.startswith("derived/")})
    assert on_disk == named
    check_hops(path, ref, PropagationParams(hops=2))
    # another parameter set is another group; the first stays
    propagate(path, PropagationParams(hops=1, norm="rw", dtype="float16"))
    g = gstore.open(path)
    assert set(g.manifest.derived) == {"propagate-sym-loops-float32", "propagate-rw-loops-float16"}
    assert open_propagated(g, PropagationParams(hops=3)) is None
    assert open_propagated(g, PropagationParams(hops=2, norm="rw", dtype="float16")) is None
    assert open_propagated(g, PropagationParams(hops=1, norm="rw", dtype="float32")) is None


def test_hops_of_other_sources_are_not_served(tmp_path):
    path, _ = random_store(tmp_path / "g", 20, 60, 2, 1)
    propagate(path, PropagationParams(hops=1))
    m = gstore.open(path).manifest
    assert stored_hops(m, PropagationParams(hops=1)) == 1
    feats = m.arrays["features"]
    m.arrays["features"] = dataclasses.replace(feats, checksum="deadbeef")
    assert stored_hops(m, PropagationParams(hops=1)) == 0


def test_params_json_and_key():
    p = PropagationParams(hops=3, norm="rw", self_loops=False, dtype="float16")
    assert PropagationParams.from_json(p.to_json()) == p
    assert p.key() == "propagate-rw-noloops-float16"
    assert PropagationParams(hops=1).key() == "propagate-sym-loops-float32"


def test_result_json_round_trip(tmp_path):
    path, _ = random_store(tmp_path / "g", 10, 20, 2, 1)
    r = propagate(path, PropagationParams(hops=1))
    assert PropagationResult.from_json(r.to_json()) == r


@pytest.mark.parametrize("kw", [dict(hops=0), dict(hops=65), dict(hops=True), dict(hops=2.0),
                                dict(hops=1, norm="left"), dict(hops=1, dtype="int8"),
                                dict(hops=1, self_loops="yes")])
def test_bad_params(kw):
    with pytest.raises(OptionError):
        PropagationParams(**kw)


def test_bad_inputs(tmp_path):
    nofeat = csr_store(tmp_path / "nf", np.array([0, 1, 1], np.int64), np.array([1], np.int32), None)
    with pytest.raises(OptionError, match="no features"):
        propagate(nofeat, PropagationParams(hops=1))
    path, _ = random_store(tmp_path / "g", 10, 20, 2, 1)
    with pytest.raises(BudgetError, match="memory-budget"):
        propagate(path, PropagationParams(hops=1), memory_budget="1KiB")
    with pytest.raises(OptionError):
        propagate(path, PropagationParams(hops=1), threads=0)
    with store_lock(path, "another writer"):
        with pytest.raises(StoreError):
            propagate(path, PropagationParams(hops=1))
    neg = csr_store(tmp_path / "neg", np.array([0, 1, 1], np.int64), np.array([1], np.int32),
                    np.ones((2, 1), np.float32), weights=np.array([-3.0], np.float32))
    with pytest.raises(StoreError, match="negative"):
        propagate(neg, PropagationParams(hops=1))
    propagate(neg, PropagationParams(hops=1, norm="rw"))          # a mean with signed weights is defined
    for p in (path, neg):
        assert not list(p.glob("derived/*.hop*/*.tmp*"))


def test_plan_respects_budget():
    kw = dict(num_nodes=10**6, width=100, in_itemsize=4, out_itemsize=4, index_itemsize=4, weighted=False)
    one = plan_hop(2 << 30, **kw)
    assert one.panels == 1 and one.buffers == 1 and one.planned_bytes <= 2 << 30
    many = plan_hop(256 << 20, **kw)
    assert many.panels > 1 and many.buffers == 3 and many.planned_bytes <= 256 << 20
    f16 = plan_hop(256 << 20, **{**kw, "in_itemsize": 2, "out_itemsize": 2, "weighted": True})
    assert f16.planned_bytes <= 256 << 20
    with pytest.raises(BudgetError, match="MiB"):
        plan_hop(5 << 20, **{**kw, "num_nodes": 10**7})
