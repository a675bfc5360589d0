"""numba kernels of layer-wise inference's sum path: neighborhood sums read straight from the rows.

A sum-aggregating layer (SAGE's mean, GCN's normalised sum) needs, per destination v, only
sum_{u in row v} s_u x_u over its CSR row. The block path builds a sampled block, relabels its
sources, gathers their rows into a buffer and multiplies a sparse matrix by it; these kernels read
x_u where it lies (the store's memory-mapped features or the previous layer's array) and add it
into v's accumulator: one random row read per entry and nothing else.

Rows are passed as stored: float32, or float16 as a uint16 view (numba has no CPU float16) with a
65,536-entry float32 lookup table (256 KiB, cache-resident) that decodes each value exactly.
`nogil` and parallel over destination rows (each row is one thread's: no write races). No I/O.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from gstore.numba_config import NJIT_PARALLEL


def half_table() -> np.ndarray:
    """float32 (65536,): the value of every float16 bit pattern."""
    return np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)


@njit(**NJIT_PARALLEL)
def neighbor_sum_f32(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray, scale: np.ndarray,
                     use_scale: bool, row_start: int, row_stop: int, edge_lo: int, edge_hi: int,
                     acc: np.ndarray) -> None:
    """acc[i] += sum of scale[u] * rows[u] (scale 1 unless use_scale) over the edges j of row
    v = row_start + i with edge_lo <= j < edge_hi (a hub's slice; a whole chunk passes
    indptr[row_start], indptr[row_stop]).

    indptr int64 (N+1,); indices int32/int64 (E,) in [0, N) (the store's checked CSR); rows float32
    (N, F); scale float32 (N,) or a 1-element dummy; acc float32 (>= row_stop - row_start, F)."""
    f = rows.shape[1]
    for i in prange(row_stop - row_start):
        v = row_start + i
        lo = max(indptr[v], edge_lo)
        hi = min(indptr[v + 1], edge_hi)
        for j in range(lo, hi):
            u = indices[j]
            s = scale[u] if use_scale else np.float32(1.0)
            for k in range(f):
                acc[i, k] += s * rows[u, k]


@njit(**NJIT_PARALLEL)
def neighbor_sum_f16(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray, table: np.ndarray,
                     scale: np.ndarray, use_scale: bool, row_start: int, row_stop: int, edge_lo: int,
                     edge_hi: int, acc: np.ndarray) -> None:
    """neighbor_sum_f32 for float16 rows given as uint16 (N, F) bits; table = half_table()."""
    f = rows.shape[1]
    for i in prange(row_stop - row_start):
        v = row_start + i
        lo = max(indptr[v], edge_lo)
        hi = min(indptr[v + 1], edge_hi)
        for j in range(lo, hi):
            u = indices[j]
            s = scale[u] if use_scale else np.float32(1.0)
            for k in range(f):
                acc[i, k] += s * table[rows[u, k]]


@njit(**NJIT_PARALLEL)
def gcn_source_scales(indptr: np.ndarray, start: int, out: np.ndarray) -> None:
    """out[i] = 1 / sqrt(d_v + 1) for v = start + i, d_v = indptr[v+1] - indptr[v] (GCN's source
    factor with its self-loop); out float32 (n,)."""
    for i in prange(out.shape[0]):
        v = start + i
        out[i] = np.float32(1.0 / np.sqrt(np.float64(indptr[v + 1] - indptr[v]) + 1.0))
