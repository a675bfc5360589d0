"""pipeline/inference/sum_kernels.py against its plain-Python twin (tests/reference_sum.py), and the
sum path of layer-wise inference against the block path on the same weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from store_factory import build_store, random_graph

import gstore
import reference_sum as R
from gstore.pipeline.inference import sum_kernels as K
from gstore.pipeline.inference.layerwise import layerwise_inference
from gstore.train.models import GNN


def _csr(n: int, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((src, dst))
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.add.at(indptr, dst + 1, 1)
    return np.cumsum(indptr), src[order].astype(np.int32)


def test_half_to_float_decodes_every_bit_pattern():
    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    got = np.empty(1 << 16, dtype=np.float32)
    K.halves_to_floats(bits, got)
    ref = bits.view(np.float16).astype(np.float32)
    assert np.array_equal(got, ref, equal_nan=True)                  # subnormals, Inf and NaN too
    assert np.array_equal(np.signbit(got), np.signbit(ref))          # -0.0 and negative NaN


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 12), m=st.integers(0, 60), f=st.integers(1, 5), seed=st.integers(0, 2**31),
       half=st.booleans(), scaled=st.booleans(), data=st.data())
def test_neighbor_sum_matches_the_twin(n, m, f, seed, half, scaled, data):
    rng = np.random.default_rng(seed)
    indptr, indices = _csr(n, rng.integers(0, n, m), rng.integers(0, n, m))
    x = rng.standard_normal((n, f)).astype(np.float16 if half else np.float32)
    start = data.draw(st.integers(0, n - 1))
    stop = data.draw(st.integers(start + 1, n))
    lo = data.draw(st.integers(int(indptr[start]), int(indptr[stop])))   # a hub's slice, or all
    hi = data.draw(st.integers(lo, int(indptr[stop])))
    scale = np.empty(n, dtype=np.float32)
    K.gcn_source_scales(indptr, 0, scale)
    assert np.allclose(scale, R.gcn_source_scales(indptr, 0, n), rtol=1e-6)
    acc = np.full((stop - start + 2, f), 0.5, dtype=np.float32)         # adds to what is there
    s = scale if scaled else np.ones(1, dtype=np.float32)
    if half:
        K.neighbor_sum_f16(indptr, indices, x.view(np.uint16), s, scaled, start, stop, lo, hi, acc)
    else:
        K.neighbor_sum_f32(indptr, indices, x, s, scaled, start, stop, lo, hi, acc)
    want = R.neighbor_sum(indptr, indices, x, scale if scaled else None, start, stop, lo, hi) + 0.5
    assert np.allclose(acc[:stop - start], want, rtol=1e-5, atol=1e-5)
    assert np.all(acc[stop - start:] == 0.5)                              # rows past the range untouched


@pytest.fixture(scope="module")
def half_store(tmp_path_factory):
    """60 nodes, float16 features, a hub (node 4: every node's out-neighbor), isolated nodes."""
    n = 60
    src, dst = random_graph(n - 5, 240, seed=3)
    src, dst = np.r_[src, np.arange(n - 5)], np.r_[dst, np.full(n - 5, 4)]
    x = np.random.default_rng(1).standard_normal((n, 6)).astype(np.float16)
    path = tmp_path_factory.mktemp("sum") / "s"
    build_store(path, src, dst, n, features=x, directed=True)
    return gstore.open(path)


@pytest.mark.parametrize("conv", ["sage", "gcn", "mlp", "gat"])
@pytest.mark.parametrize("budget,dtype", [(8000, "float32"), (1 << 28, "float16")])
def test_sum_path_equals_the_block_path(half_store, tmp_path, conv, budget, dtype):
    torch.manual_seed(0)
    model = GNN(conv, in_dim=6, hidden=10, out_dim=4, num_layers=3, heads=2, jk="cat", residual=True)
    runs = {}
    for sum_path in (True, False):
        res = layerwise_inference(half_store, model, tmp_path / str(sum_path), memory_budget=budget,
                                  dtype=dtype, sum_path=sum_path)
        runs[sum_path] = (np.array(res.open_output()), [s.path for s in res.layers], res)
    sums, blocks = runs[True], runs[False]
    assert sums[1] == (["blocks"] * 3 if conv == "gat" else ["sum"] * 3)
    assert blocks[1] == ["blocks"] * 3
    if budget == 8000:
        assert sums[2].layers[0].hubs >= 1                  # the hub's in-edges were sliced
    tol = 1e-5 if dtype == "float32" else 2e-3
    assert np.allclose(sums[0], blocks[0], rtol=tol, atol=tol)


@pytest.mark.parametrize("every,most", [(1, None), (1 << 40, 1)])
def test_mapped_pages_are_released_per_bytes_touched_not_per_chunk(half_store, every, most):
    """A release per chunk made every chunk fault the whole source's pages in again (half of a
    layer's time at 10^9 edges): the sum path releases once `every` bytes were touched, and at the end."""
    from gstore.pipeline.inference.chunks import plan_chunks
    from gstore.pipeline.inference.result import LayerStats
    from gstore.pipeline.inference.sum_layer import SumLayers

    store = half_store
    csr = store.csr()
    plan = plan_chunks(csr.indptr, 40, 8)                  # many small chunks
    assert len(plan) > 5
    torch.manual_seed(0)
    model = GNN("sage", in_dim=6, hidden=10, out_dim=4, num_layers=1).eval()
    stats = LayerStats(layer=0, in_width=6, out_width=4, seconds=0.0, chunks=len(plan), hubs=0,
                       hub_slices=0, edges=0, max_edges=40, max_rows=8, wait_s=0.0, compute_s=0.0,
                       write_s=0.0)
    calls = []
    with torch.no_grad():
        SumLayers(csr.indptr, csr.indices, store.num_nodes).run(
            0, "sum", model, store.features, plan, int((plan.stops - plan.starts).max()),
            torch.device("cpu"), lambda start, out: None, stats, lambda n: None,
            lambda: calls.append(1), release_every=every)
    assert stats.edges == store.num_edges
    if most is None:
        assert len(calls) >= len(plan)                    # every chunk crosses a 1-byte threshold
    else:
        assert len(calls) == most                          # only the final release
