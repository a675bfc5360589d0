"""Binary search shared by numba kernels (ingest id lookup, induced-subgraph membership)."""
from __future__ import annotations

import numpy as np
from numba import njit

from gstore.numba_config import NJIT


@njit(**NJIT)
def lower_bound(a: np.ndarray, lo: np.int64, hi: np.int64, x: np.int64) -> np.int64:
    """First index i in [lo, hi) with a[i] >= x (hi if none); a sorted ascending on [lo, hi)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo
