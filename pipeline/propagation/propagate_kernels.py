"""numba kernels of feature propagation: node scales from degrees and the panel SpMM of one row block.

The operator is A_hat = S_dst (A + s I) S_src over the store's CSR as stored (row v lists v's
in-neighbors u, so (A X)[v] = sum_{u in row v} w_uv X[u]; w = 1 without edge weights, s = 1 with
self loops, else 0). With d_v = sum_{u in row v} w_uv + s (the row length + s when unweighted):
sym: S_src = S_dst = D^-1/2; rw: S_src = I, S_dst = D^-1. A node with d_v = 0 gets scale 0.

The stage (propagate.py) keeps only `panel` rows of the input X in memory at once (source rows
[c0, c1), already multiplied by S_src) and sweeps every row block over the panels in ascending
order. CSR rows list their sources sorted ascending, so the edges of row v that fall in one panel
are one contiguous run starting where the previous panel stopped: a per-row cursor finds them with
no search and no bucketing, and the whole sweep costs E + rows x panels steps. A row whose sources
are not ascending is counted (the caller refuses the store) instead of being read out of bounds.

All kernels compute in float32, are `nogil` (the panel reader thread runs beside them) and take
memory-mapped CSR arrays as they are (int32 or int64 indices). No I/O, no logging.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from gstore.numba_config import NJIT, NJIT_PARALLEL

SYM = 0          # scale = d^-1/2
RW = 1           # scale = d^-1


@njit(**NJIT_PARALLEL)
def node_scales(indptr: np.ndarray, weights: np.ndarray, use_weights: bool, self_weight: float,
                mode: int, start: int, out: np.ndarray) -> int:
    """out[i] = d^-1/2 (mode SYM) or d^-1 (mode RW) of node v = start + i, for i < len(out).

    indptr int64 (N+1,); weights float32 (E,) (ignored unless use_weights; pass a 1-element dummy);
    self_weight 1.0 with self loops else 0.0; out float32 (n,). d = row length (or row weight sum)
    + self_weight; d == 0 gives 0. Returns the number of nodes with d < 0 (negative weights), whose
    scale is left 0: D^-1/2 does not exist for them, the caller refuses the store.
    """
    bad = 0
    for i in prange(out.shape[0]):
        v = start + i
        lo, hi = indptr[v], indptr[v + 1]
        if use_weights:
            d = np.float64(self_weight)
            for j in range(lo, hi):
                d += weights[j]
        else:
            d = np.float64(hi - lo) + self_weight
        if d == 0.0:
            out[i] = 0.0
        elif d < 0.0 and mode == SYM:
            out[i] = 0.0
            bad += 1
        elif mode == SYM:
            out[i] = np.float32(1.0 / np.sqrt(d))
        else:
            out[i] = np.float32(1.0 / d)
    return bad


@njit(**NJIT)
def _accumulate_row(i: int, indptr, indices, weights, use_weights: bool, row_start: int, edge_hi: int,
                    panel, panel_start: int, self_weight: float, cursor, acc) -> int:
    """Row i of accumulate_panel; 1 when the row's sources were found out of order, else 0."""
    f = panel.shape[1]
    c0 = panel_start
    c1 = panel_start + panel.shape[0]
    v = row_start + i
    hi = min(indptr[v + 1], edge_hi)
    j = cursor[i]
    bad = 0
    while j < hi:
        u = indices[j]
        if u >= c1:
            break
        if u < c0:
            bad = 1
            j = hi
            break
        w = np.float32(weights[j]) if use_weights else np.float32(1.0)
        r = u - c0
        for k in range(f):
            acc[i, k] += w * panel[r, k]
        j += 1
    cursor[i] = j
    if self_weight != 0.0 and c0 <= v < c1:
        s = np.float32(self_weight)
        r = v - c0
        for k in range(f):
            acc[i, k] += s * panel[r, k]
    return bad


@njit(**NJIT_PARALLEL)
def accumulate_panel(indptr: np.ndarray, indices: np.ndarray, weights: np.ndarray, use_weights: bool,
                     row_start: int, row_stop: int, edge_lo: int, edge_hi: int, panel: np.ndarray,
                     panel_start: int, self_weight: float, cursor: np.ndarray, acc: np.ndarray) -> int:
    """acc[i] += sum of w_uv * panel[u - panel_start] over the edges of row v = row_start + i whose
    source u lies in the panel, from edge position cursor[i] on; cursor[i] advances past them.

    indptr int64 (N+1,); indices int32/int64 (E,) sorted ascending within each row; weights float32
    (E,) or a 1-element dummy (use_weights False: w = 1). Row v's edges are clipped to
    [edge_lo, edge_hi) (a hub's slice; a whole block passes indptr[row_start], indptr[row_stop]);
    edge_lo only matters through the cursors. panel float32 (P, F): scaled source rows
    [panel_start, panel_start + P). cursor int64 (>= rows,): set by `start_cursors` before the
    first panel. acc float32 (>= rows, F). self_weight: added times panel[v - panel_start] when v
    lies in the panel (0.0: no self term). Returns the number of rows found with a source below
    the panel (sources not ascending).
    """
    bad = 0
    for i in prange(row_stop - row_start):
        bad += _accumulate_row(i, indptr, indices, weights, use_weights, row_start, edge_hi, panel,
                               panel_start, self_weight, cursor, acc)
    return bad


@njit(**NJIT)
def accumulate_panel_serial(indptr: np.ndarray, indices: np.ndarray, weights: np.ndarray, use_weights: bool,
                            row_start: int, row_stop: int, edge_lo: int, edge_hi: int, panel: np.ndarray,
                            panel_start: int, self_weight: float, cursor: np.ndarray, acc: np.ndarray) -> int:
    """accumulate_panel on the calling thread: for small blocks (a hub slice, a tiny graph), where
    waking the thread pool costs more than the work (about 10 ms per call on busy cores)."""
    bad = 0
    for i in range(row_stop - row_start):
        bad += _accumulate_row(i, indptr, indices, weights, use_weights, row_start, edge_hi, panel,
                               panel_start, self_weight, cursor, acc)
    return bad


@njit(**NJIT)
def start_cursors(indptr: np.ndarray, row_start: int, row_stop: int, edge_lo: int, cursor: np.ndarray) -> None:
    """cursor[i] = max(indptr[row_start + i], edge_lo): where row i's edges of a block begin."""
    for i in range(row_stop - row_start):
        cursor[i] = max(indptr[row_start + i], edge_lo)
