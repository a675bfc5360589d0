"""Chunk planning of layer-wise inference: coverage, edge and row bounds, twin agreement."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_layerwise import reference_in_degrees, reference_plan

from gstore.errors import BudgetError
from gstore.pipeline.inference.chunks import MAX_CHUNK_EDGES, MAX_CHUNK_ROWS, plan_chunks, working_set
from gstore.pipeline.features.gather_kernels import in_degrees


def _indptr(degrees) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(np.asarray(degrees, dtype=np.int64))]).astype(np.int64)


def _entries(plan):
    return [(int(a), int(b), int(c), int(d), bool(h)) for a, b, c, d, h in
            zip(plan.starts, plan.stops, plan.edge_lo, plan.edge_hi, plan.hub)]


def check_rules(plan, indptr: np.ndarray, max_edges: int, max_rows: int) -> None:
    """Every node in exactly one range chunk or one run of hub slices; the slices of a hub cover
    its in-edges exactly once; no entry exceeds the limits."""
    n = len(indptr) - 1
    seen = np.zeros(n, dtype=np.int64)
    entries = _entries(plan)
    i = 0
    while i < len(entries):
        start, stop, lo, hi, hub = entries[i]
        assert hi - lo <= max_edges
        if not hub:
            assert 0 < stop - start <= max_rows
            assert (lo, hi) == (indptr[start], indptr[stop])
            seen[start:stop] += 1
            i += 1
            continue
        assert stop == start + 1 and indptr[stop] - indptr[start] > max_edges
        edge = int(indptr[start])
        while i < len(entries) and entries[i][0] == start:
            assert entries[i][4] and entries[i][2] == edge and entries[i][3] > edge
            assert plan.last_slice(i) == (entries[i][3] == indptr[stop])
            edge = entries[i][3]
            i += 1
        assert edge == indptr[stop]
        seen[start] += 1
    assert (seen == 1).all()
    assert [e[0] for e in entries] == sorted(e[0] for e in entries)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 30), max_size=60), st.integers(1, 12), st.integers(1, 12))
def test_plan_matches_plain_loop_and_rules(degrees, max_edges, max_rows):
    indptr = _indptr(degrees)
    plan = plan_chunks(indptr, max_edges, max_rows)
    assert _entries(plan) == reference_plan(indptr, max_edges, max_rows)
    check_rules(plan, indptr, max_edges, max_rows)
    assert plan.num_hubs == sum(1 for d in degrees if d > max_edges)


def test_plan_power_law_graph_on_a_memmap(tmp_path):
    rng = np.random.default_rng(3)
    degrees = np.minimum(rng.zipf(1.6, 200_000), 50_000)
    indptr = _indptr(degrees)
    path = tmp_path / "indptr.bin"
    indptr.tofile(path)
    mapped = np.memmap(path, dtype=np.int64, mode="r", shape=indptr.shape)
    plan = plan_chunks(mapped, 4096, 1000)
    check_rules(plan, indptr, 4096, 1000)
    assert plan.num_hubs == int((degrees > 4096).sum()) > 0
    # the greedy cut is tight: two consecutive range chunks could not have been one
    rng_idx = np.flatnonzero(~plan.hub[:-1] & ~plan.hub[1:])
    merged_edges = plan.edge_hi[rng_idx + 1] - plan.edge_lo[rng_idx]
    merged_rows = plan.stops[rng_idx + 1] - plan.starts[rng_idx]
    assert ((merged_edges > 4096) | (merged_rows > 1000)).all()


def test_plan_of_an_empty_graph_and_of_isolated_nodes():
    assert len(plan_chunks(np.zeros(1, dtype=np.int64), 5, 5)) == 0
    plan = plan_chunks(np.zeros(11, dtype=np.int64), 5, 4)
    assert _entries(plan) == [(0, 4, 0, 0, False), (4, 8, 0, 0, False), (8, 10, 0, 0, False)]


def test_working_set_fits_the_budget_and_refuses_a_too_small_one():
    budget = 64 << 20
    ws = working_set(budget, in_width=100, in_itemsize=2, out_width=128, out_itemsize=4,
                     readout_dim=10, final_dim=10)
    assert ws.chunk_bytes(ws.max_rows, ws.max_edges) <= budget
    assert 1 <= ws.max_edges <= MAX_CHUNK_EDGES and 1 <= ws.max_rows <= MAX_CHUNK_ROWS
    wider = working_set(budget, in_width=400, in_itemsize=2, out_width=128, out_itemsize=4)
    assert wider.max_edges < ws.max_edges
    with pytest.raises(BudgetError, match="too small for layer 2"):
        working_set(4096, in_width=256, in_itemsize=4, out_width=256, out_itemsize=4, layer=2)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 9), min_size=1, max_size=40), st.data())
def test_in_degrees_kernel_matches_twin(degrees, data):
    indptr = _indptr(degrees)
    nodes = np.array(data.draw(st.lists(st.integers(0, len(degrees) - 1), max_size=50)), dtype=np.int64)
    out = np.full(len(nodes) + 2, -1.0, dtype=np.float32)
    in_degrees(indptr, nodes, out)
    assert out[:len(nodes)].tolist() == reference_in_degrees(indptr, nodes)
    assert out[len(nodes):].tolist() == [-1.0, -1.0]
