"""numba kernels for the history files' row writes and the pull/write overlap (no I/O).

Writes go through a MAP_SHARED mapping of the file (pipeline/history/arrays.py): each kernel visits
the rows in the ascending order `order` (argsort of ids), so one thread walks the mapping forwards
and the pages it faults in are neighbours. Rows are raw bits for the plain copies (float32 as
uint32, float16 as uint16: numba has no CPU float16, copies stay exact); the gradient add is float32
arithmetic, the same single rounding per element as numpy's `g[ids] + rows`.

`ids` must be unique (a batch's nodes and its halo are): prange would race on a repeated row.
Callers check with `has_repeats` and refuse. Plain-Python twins: tests/reference_history_io.py.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from gstore.numba_config import NJIT, NJIT_PARALLEL
from gstore.search_kernels import lower_bound


@njit(**NJIT_PARALLEL)
def scatter_rows(dst: np.ndarray, ids: np.ndarray, order: np.ndarray, rows: np.ndarray) -> None:
    """dst[ids[i], :] = rows[i, :] for every i, visiting i = order[0], order[1], ...

    dst (N, F) and rows (n, F) of one unsigned int dtype (bit views); ids int64 (n,) unique;
    order int64 (n,) a permutation of range(n)."""
    f = dst.shape[1]
    for k in prange(order.shape[0]):
        i = order[k]
        r = ids[i]
        for j in range(f):
            dst[r, j] = rows[i, j]


@njit(**NJIT_PARALLEL)
def zero_rows(dst: np.ndarray, ids: np.ndarray, order: np.ndarray) -> None:
    """dst[ids[i], :] = 0 for every i (order as in scatter_rows); dst (N, F) float32."""
    f = dst.shape[1]
    for k in prange(order.shape[0]):
        r = ids[order[k]]
        for j in range(f):
            dst[r, j] = 0.0


@njit(**NJIT_PARALLEL)
def add_rows(dst: np.ndarray, ids: np.ndarray, order: np.ndarray, rows: np.ndarray) -> None:
    """dst[ids[i], :] += rows[i, :] in float32 for every i (order as in scatter_rows);
    dst (N, F) float32, rows (n, F) float32."""
    f = dst.shape[1]
    for k in prange(order.shape[0]):
        i = order[k]
        r = ids[i]
        for j in range(f):
            dst[r, j] = dst[r, j] + rows[i, j]


@njit(**NJIT)
def has_repeats(ids: np.ndarray, order: np.ndarray) -> bool:
    """True when some id occurs twice; order int64 (n,) sorts ids ascending."""
    for k in range(1, order.shape[0]):
        if ids[order[k]] == ids[order[k - 1]]:
            return True
    return False


@njit(**NJIT)
def member_mask(ids: np.ndarray, keys: np.ndarray, out: np.ndarray) -> int:
    """out[i] = ids[i] is in keys (int64, sorted ascending); returns how many are.

    ids int64 (n,), out bool (n,). The pull of batch k splits its rows into those batch k-2's
    writes do not touch (read at once, while those writes run) and those they do (read after)."""
    hits = 0
    m = keys.shape[0]
    for i in range(ids.shape[0]):
        p = lower_bound(keys, 0, m, ids[i])
        hit = p < m and keys[p] == ids[i]
        out[i] = hit
        if hit:
            hits += 1
    return hits
