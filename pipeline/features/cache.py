"""FeatureCache: the highest-degree feature rows held in RAM under a byte budget.

High-degree nodes are drawn by neighbor sampling far more often than others (a node enters a batch
about in proportion to its out-degree, which for undirected stores is its degree), so pinning them in
RAM turns many random memmap reads into RAM reads. The cache maps node -> slot through `hot_ids`, the
cached node ids sorted ascending, and a binary search: O(h) memory (8 bytes per cached row) instead of
an N-sized slot table (4 bytes per node of the graph, 4 GiB at 10^9 nodes), at the price of
log2(h) probes per lookup, which is small next to copying a feature row.
"""
from __future__ import annotations

import threading

import numpy as np

from gstore.errors import OptionError
from gstore.pipeline.features.gather_kernels import gather_rows

# degrees are computed from indptr this many nodes at a time, so choosing hot rows needs O(h + chunk)
# memory rather than an N-sized degree array
_DEGREE_CHUNK = 1 << 24


def bit_view(arr: np.ndarray) -> np.ndarray:
    """View float rows as same-width unsigned ints (numba has no CPU float16; copies stay exact)."""
    kinds = {2: np.uint16, 4: np.uint32, 8: np.uint64, 1: np.uint8}
    if arr.dtype.itemsize not in kinds:
        raise OptionError(f"cannot gather rows of dtype {arr.dtype}")
    return arr.view(kinds[arr.dtype.itemsize])


def top_degree_nodes(indptr: np.ndarray, k: int) -> np.ndarray:
    """int64 (min(k, N),) ids of the k highest-degree nodes, sorted ascending by id.

    Ties are broken towards smaller ids so the choice is deterministic. indptr: int64 (N+1,).
    """
    n = len(indptr) - 1
    k = max(0, min(int(k), n))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    if k == n:
        return np.arange(n, dtype=np.int64)
    best_ids = np.zeros(0, dtype=np.int64)
    best_deg = np.zeros(0, dtype=np.int64)
    step = max(_DEGREE_CHUNK, k)
    for start in range(0, n, step):
        stop = min(n, start + step)
        deg = np.diff(np.asarray(indptr[start:stop + 1], dtype=np.int64))
        ids = np.arange(start, stop, dtype=np.int64)
        ids = np.concatenate([best_ids, ids])
        deg = np.concatenate([best_deg, deg])
        if len(ids) > k:
            # sort by (-degree, id): lexsort keys are given last-primary
            keep = np.lexsort((ids, -deg))[:k]
            ids, deg = ids[keep], deg[keep]
        best_ids, best_deg = ids, deg
    return np.sort(best_ids)


class FeatureCache:
    """The top-degree rows of `store.features` held in RAM within `budget_bytes`.

    Attributes:
        hot_ids: int64 (h,) cached node ids, ascending.
        hot_rows: (h, F) rows in the store's feature dtype; hot_rows[s] == features[hot_ids[s]].
        hits, misses: rows served from RAM / from the memmap since creation (or `reset_counters`).
    """

    def __init__(self, store, budget_bytes: int) -> None:
        store.check_structure(("features",))   # rows are read by node id without bounds checks
        feats = store.features
        if feats is None:
            raise OptionError("store has no features to cache", path=store.path,
                              hint="build the store with features or drop --cache-bytes")
        if budget_bytes < 0:
            raise OptionError(f"cache budget must be >= 0 bytes, got {budget_bytes}")
        row_bytes = max(1, feats.shape[1] * feats.dtype.itemsize)
        # the id index costs 8 bytes per row on top of the row itself
        rows = int(budget_bytes) // (row_bytes + 8)
        self.hot_ids = top_degree_nodes(store.indptr, rows)
        self.hot_rows = np.empty((len(self.hot_ids), feats.shape[1]), dtype=feats.dtype)
        if len(self.hot_ids):
            gather_rows(bit_view(feats), self.hot_ids, bit_view(self.hot_rows))
        self.budget_bytes = int(budget_bytes)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def num_rows(self) -> int:
        return int(len(self.hot_ids))

    @property
    def nbytes(self) -> int:
        return int(self.hot_rows.nbytes + self.hot_ids.nbytes)

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def record(self, hits: int, misses: int) -> None:
        """Add one gather's counts (thread-safe: several gather threads share a cache)."""
        with self._lock:
            self.hits += int(hits)
            self.misses += int(misses)

    def reset_counters(self) -> None:
        with self._lock:
            self.hits = 0
            self.misses = 0

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """bool (n,): which ids are cached."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(self.hot_ids):
            return np.zeros(len(ids), dtype=bool)
        pos = np.minimum(np.searchsorted(self.hot_ids, ids), len(self.hot_ids) - 1)
        return self.hot_ids[pos] == ids
