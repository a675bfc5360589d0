"""numba kernels for the history files' row reads and writes and the pull/write overlap (no I/O).

Rows are read and written through a MAP_SHARED mapping of the file (pipeline/history/arrays.py).
Each kernel is serial and visits a slice [lo, hi) of the ascending order `order` (argsort of ids):
the caller runs the slices on a pool of I/O threads, because a row whose page is not in the page
cache costs one disk read of 100-300 us, and only several faults in flight at once use the disk's
parallelism (bench/history_rowio.py: 137 us/row with 1 thread, 35 with 8). Rows are raw bits for
the plain copies (float32 as uint32, float16 as uint16: numba has no CPU float16, copies stay
exact); the gradient add is float32 arithmetic, the same single rounding per element as numpy's
`g[ids] + rows`.

Writes need unique `ids` (a batch's nodes and its halo are): two threads would race on a repeated
row; callers check with `has_repeats` and write repeats with numpy instead. Plain-Python twins:
tests/reference_history_io.py.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from gstore.numba_config import NJIT
from gstore.search_kernels import lower_bound


@njit(**NJIT)
def gather_rows_range(src: np.ndarray, ids: np.ndarray, order: np.ndarray, lo: int, hi: int,
                      out: np.ndarray) -> None:
    """out[i, :] = src[ids[i], :] for i = order[lo], ..., order[hi-1].

    src (N, F) and out (n, F) of one unsigned int dtype (bit views); ids int64 (n,); order int64
    (n,) a permutation of range(n), ascending ids. Serial: callers split [0, n) between threads."""
    f = src.shape[1]
    for k in range(lo, hi):
        i = order[k]
        r = ids[i]
        for j in range(f):
            out[i, j] = src[r, j]


@njit(**NJIT)
def scatter_rows(dst: np.ndarray, ids: np.ndarray, order: np.ndarray, lo: int, hi: int,
                 rows: np.ndarray) -> None:
    """dst[ids[i], :] = rows[i, :] for i = order[lo], ..., order[hi-1] (as gather_rows_range;
    ids unique)."""
    f = dst.shape[1]
    for k in range(lo, hi):
        i = order[k]
        r = ids[i]
        for j in range(f):
            dst[r, j] = rows[i, j]


@njit(**NJIT)
def zero_rows(dst: np.ndarray, ids: np.ndarray, order: np.ndarray, lo: int, hi: int) -> None:
    """dst[ids[i], :] = 0 for i = order[lo], ..., order[hi-1]; dst (N, F) float32."""
    f = dst.shape[1]
    for k in range(lo, hi):
        r = ids[order[k]]
        for j in range(f):
            dst[r, j] = 0.0


@njit(**NJIT)
def add_rows(dst: np.ndarray, ids: np.ndarray, order: np.ndarray, lo: int, hi: int,
             rows: np.ndarray) -> None:
    """dst[ids[i], :] += rows[i, :] in float32 for i = order[lo], ..., order[hi-1];
    dst (N, F) float32, rows (n, F) float32, ids unique."""
    f = dst.shape[1]
    for k in range(lo, hi):
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
