"""Touch kernels: read one item per page a batch is about to use, so its page faults happen now, in
many threads at once (gstore/cold_pages.py), instead of one at a time inside the sampler or gather.

Each returns a sum of what it read so the reads cannot be optimised away; nothing else is written.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from gstore.numba_config import NJIT


@njit(**NJIT)
def touch_rows(rows: np.ndarray, ids: np.ndarray, lo: np.int64, hi: np.int64) -> np.int64:
    """Read rows[ids[i], 0] for i in [lo, hi). rows: (N, F) unsigned ints (a bit view), F >= 1;
    ids: int64 (n,) in [0, N)."""
    s = np.int64(0)
    for i in range(lo, hi):
        s += np.int64(rows[ids[i], 0])
    return s


@njit(**NJIT)
def touch_csr_rows(indptr: np.ndarray, indices: np.ndarray, nodes: np.ndarray, lo: np.int64,
                   hi: np.int64, page_items: np.int64, max_pages: np.int64) -> np.int64:
    """Read indptr[v], indptr[v + 1] and one entry per page of row v of `indices` (at most
    `max_pages` entries, spread evenly, plus the last) for v = nodes[i], i in [lo, hi).

    indptr: int64 (N+1,); indices: int32/int64 (E,); nodes: int64 (n,) in [0, N).
    page_items: entries per page; rows longer than max_pages pages are touched only at max_pages
    places, since a sampler reads a few of their entries, not all of them."""
    s = np.int64(0)
    for i in range(lo, hi):
        v = nodes[i]
        a = indptr[v]
        b = indptr[v + 1]
        if b <= a:
            continue
        step = page_items
        if (b - a) > step * max_pages:
            step = (b - a + max_pages - 1) // max_pages
        j = a
        while j < b:
            s += np.int64(indices[j])
            j += step
        s += np.int64(indices[b - 1])
    return s
