"""Feature and label gather for a batch's node ids, from the memmapped store into reusable buffers.

`FeatureSource(store, cache_bytes=0)` wraps a store's `features` (N x F, float32 or float16) and
`labels` (int64, N). `gather(ids, out)` fills `out[:len(ids)]` (any C-contiguous array of the feature
dtype with at least len(ids) rows, e.g. the numpy view of a pinned torch tensor) and returns that
prefix. By default ids are read in ascending order (argsort, then each row is written to its original
position): on a memmap that turns random page touches into a forward sweep, which matters when the
features are not in the page cache (see docs/loader.md for the measurements). The order comes from a
counting sort on `id >> shift` with about one bucket per batch row (`bucket_order`), O(n) instead of
argsort's O(n log n): nearly sorted is as good as sorted for page locality.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gstore.errors import OptionError
from gstore.memory import available_memory_bytes
from gstore.pipeline.features.cache import FeatureCache, bit_view
from gstore.pipeline.features.gather_kernels import (bucket_order, gather_rows, gather_rows_cached,
                                                     gather_rows_ordered, gather_values, max_id)

# below this many rows argsort costs more than it saves
SORT_MIN_ROWS = 2048


@dataclass
class GatheredRows:
    """One gather's result: `rows` is the filled prefix out[:n] (n, F); `cache_hits` of the n rows
    came from the RAM cache; `nbytes` bytes were copied."""

    rows: np.ndarray
    cache_hits: int
    nbytes: int


def check_ids(ids: np.ndarray, num_nodes: int) -> np.ndarray:
    """Validate node ids (int64 (n,), all in [0, num_nodes)) and return them as int64."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if ids.ndim != 1:
        raise OptionError(f"node ids must be 1-d, got shape {ids.shape}")
    m = max_id(ids)
    if m == -2 or m >= num_nodes:
        raise OptionError(f"node ids out of range [0, {num_nodes})",
                          hint="ids must be dense store ids (0..num_nodes-1)")
    return ids


def read_order(ids: np.ndarray, num_nodes: int) -> np.ndarray:
    """int64 (n,) permutation of range(n) visiting `ids` (in [0, num_nodes)) in nearly ascending
    order: buckets of 2**shift consecutive ids, about len(ids) buckets in all."""
    n = max(1, len(ids))
    shift = max(0, (max(1, num_nodes) - 1).bit_length() - n.bit_length())
    return bucket_order(ids, shift, ((max(1, num_nodes) - 1) >> shift) + 1)


def gather_features(features: np.ndarray, ids: np.ndarray, out: np.ndarray | None = None, *,
                    cache: FeatureCache | None = None, sort: bool = True,
                    cold_pages=None) -> GatheredRows:
    """Copy features[ids] into out[:len(ids)] and return that prefix with the cache hit count.

    features: (N, F) float32/float16 (memmap or array). ids: int64 (n,), already validated.
    out: (>= n, F) array of features.dtype whose rows are contiguous (C-contiguous, or a column
        block out[:, a:b] of a wider C-contiguous buffer: the row loader puts several arrays side
        by side); allocated when None.
    cold_pages: a gstore.cold_pages.ColdPages: the rows are faulted in many at a time first while
        they are not cached (not with a RAM cache, whose hits need no page at all).
    """
    n = len(ids)
    if out is None:
        out = np.empty((n, features.shape[1]), dtype=features.dtype)
    if out.dtype != features.dtype or out.ndim != 2 or out.shape[1] != features.shape[1] \
            or out.shape[0] < n or not _rows_contiguous(out):
        raise OptionError(f"output buffer {out.shape} {out.dtype} cannot hold {n} rows of "
                          f"{features.shape[1]} x {features.dtype}")
    dst = out[:n]
    nbytes = n * features.shape[1] * features.dtype.itemsize
    if n == 0:
        return GatheredRows(dst, 0, 0)
    src_bits, dst_bits = bit_view(features), bit_view(dst)
    if cold_pages is not None and (cache is None or not cache.num_rows):
        cold_pages.rows(src_bits, ids)
    order = read_order(ids, features.shape[0]) if sort and n >= SORT_MIN_ROWS else None
    if cache is not None and cache.num_rows:
        if order is None:
            order = np.arange(n, dtype=np.int64)
        hits = int(gather_rows_cached(src_bits, ids, order, cache.hot_ids, bit_view(cache.hot_rows),
                                      dst_bits))
        cache.record(hits, n - hits)
        return GatheredRows(dst, hits, nbytes)
    if order is None:
        gather_rows(src_bits, ids, dst_bits)
    else:
        gather_rows_ordered(src_bits, ids, order, dst_bits)
    if cache is not None:
        cache.record(0, n)
    return GatheredRows(dst, 0, nbytes)


def _rows_contiguous(out: np.ndarray) -> bool:
    """Each row a contiguous run of items (the kernels index out[i, j]; any row stride works)."""
    return out.flags.c_contiguous or (out.strides[1] == out.itemsize and out.strides[0] > 0)


def gather_labels(labels: np.ndarray, ids: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """labels[ids] (int64) into out[:len(ids)] (allocated when None)."""
    n = len(ids)
    if out is None:
        out = np.empty(n, dtype=labels.dtype)
    if out.dtype != labels.dtype or out.shape[0] < n:
        raise OptionError(f"label buffer {out.shape} {out.dtype} cannot hold {n} labels")
    dst = out[:n]
    if n:
        gather_values(labels, ids, dst)
    return dst


def should_sort(features: np.ndarray | None) -> bool:
    """Sorted reads pay off when the features are unlikely to stay in the page cache.

    Measured on 2.4M x 100 float32 (bench/sampling.py --gather-sort, 615k rows per batch):
    warm page cache 137 ms unsorted vs 232 ms sorted (the sorted pass scatters its writes);
    cold 1023 ms unsorted vs 799 ms sorted. So: sort when the features exceed half the available RAM.
    """
    if features is None:
        return False
    avail = available_memory_bytes()
    return avail is None or features.nbytes > avail // 2


class FeatureSource:
    """Feature/label gather bound to one store, with an optional hot-row cache.

    Args:
        store: an opened GraphStore.
        cache_bytes: RAM budget for the hot-row cache (0: no cache).
        sort_ids: read rows in ascending id order (see module docstring); None: decide by size
            (`should_sort`: only when the features exceed half the available RAM).
        cold_pages: a gstore.cold_pages.ColdPages (the loader's): each gather's rows are faulted in
            many at a time first while they are not cached, and features larger than the page
            cache can hold are read through their own MADV_RANDOM mapping (gstore/cold_pages.py).
            None: the store's mapping, no touches.
    """

    def __init__(self, store, cache_bytes: int = 0, sort_ids: bool | None = None,
                 cold_pages=None) -> None:
        # the gather kernels index features and labels by node id without bounds checks: their
        # row counts (and the labels' values) are checked first, once per process (a cache hit
        # when a sampler's csr() already checked the whole store)
        store.check_structure(("features", "labels"))
        self.store = store
        self.features = store.features
        self.cold_pages = cold_pages if self.features is not None else None
        if self.cold_pages is not None:
            from gstore.cold_pages import fits_page_cache, random_access

            # features the page cache can hold keep read-around: a batch's rows land in most of
            # their 128 KiB windows (10^9 chain: 175k rows, 16% of the pages, 99% of the windows),
            # so its faults read the file at bandwidth and the next batches find it cached
            if not fits_page_cache(self.features.nbytes):
                self.features = random_access(self.features)
        self.labels = store.labels
        self.num_nodes = store.num_nodes
        self.sort_ids = should_sort(self.features) if sort_ids is None else bool(sort_ids)
        self.cache = FeatureCache(store, cache_bytes) if cache_bytes and self.features is not None else None

    @property
    def dim(self) -> int:
        return 0 if self.features is None else int(self.features.shape[1])

    @property
    def dtype(self) -> np.dtype | None:
        return None if self.features is None else self.features.dtype

    @property
    def row_bytes(self) -> int:
        return 0 if self.features is None else self.dim * self.features.dtype.itemsize

    def gather(self, ids: np.ndarray, out: np.ndarray | None = None) -> GatheredRows:
        """features[ids] into out[:n]; ids int64 (n,) dense store ids."""
        if self.features is None:
            raise OptionError("store has no features", path=self.store.path)
        ids = check_ids(ids, self.num_nodes)
        return gather_features(self.features, ids, out, cache=self.cache, sort=self.sort_ids,
                               cold_pages=self.cold_pages)

    def gather_labels(self, ids: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if self.labels is None:
            raise OptionError("store has no labels", path=self.store.path)
        return gather_labels(self.labels, check_ids(ids, self.num_nodes), out)
