"""Plain-numpy reference twins of pipeline/features kernels (fancy indexing, no numba)."""
from __future__ import annotations

import numpy as np


def ref_gather_rows(src: np.ndarray, ids: np.ndarray) -> np.ndarray:
    return np.asarray(src)[np.asarray(ids, dtype=np.int64)]


def ref_top_degree_nodes(indptr: np.ndarray, k: int) -> np.ndarray:
    """Highest degree first, smaller id first among equal degrees; returned sorted by id."""
    deg = np.diff(np.asarray(indptr, dtype=np.int64))
    ranked = sorted(range(len(deg)), key=lambda v: (-deg[v], v))
    return np.sort(np.asarray(ranked[:k], dtype=np.int64))


def ref_cache_hits(hot_ids: np.ndarray, ids: np.ndarray) -> int:
    hot = set(int(v) for v in hot_ids)
    return sum(int(v) in hot for v in ids)
