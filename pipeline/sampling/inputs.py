"""Validation shared by the samplers: CSR arrays, node-id batches and seeds.

Checks are O(1) or O(batch); nothing here scans the edge list, so memory-mapped stores of any size
are accepted as they are (no copies unless a dtype must change).
"""
from __future__ import annotations

import numpy as np

from gstore.errors import OptionError

_U64 = (1 << 64) - 1


def check_csr(indptr: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (indptr int64 (N+1,), indices int32/int64 (E,)), converting dtypes only when needed."""
    indptr = np.asarray(indptr)
    indices = np.asarray(indices)
    if indptr.ndim != 1 or len(indptr) < 1 or indices.ndim != 1:
        raise OptionError("indptr must be 1-D of length N+1 and indices 1-D",
                          hint="pass store.indptr and store.indices")
    if not np.issubdtype(indptr.dtype, np.integer) or not np.issubdtype(indices.dtype, np.integer):
        raise OptionError(f"indptr/indices must be integer arrays, got {indptr.dtype}/{indices.dtype}")
    if indptr.dtype != np.int64:
        indptr = indptr.astype(np.int64)
    if indices.dtype not in (np.int32, np.int64):
        indices = indices.astype(np.int64)
    if int(indptr[0]) != 0 or int(indptr[-1]) != len(indices):
        raise OptionError(f"indptr must start at 0 and end at len(indices)={len(indices)}, "
                          f"got {int(indptr[0])}..{int(indptr[-1])}", hint="pass a store's CSR arrays")
    return indptr, indices


def check_node_ids(ids, num_nodes: int, what: str) -> np.ndarray:
    """int64 (n,) copy-free view of `ids`, all in [0, num_nodes)."""
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise OptionError(f"{what} must be a 1-D array of node ids, got shape {arr.shape}")
    if len(arr) and not np.issubdtype(arr.dtype, np.integer):
        raise OptionError(f"{what} must hold integer node ids, got {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    if len(arr) and (int(arr.min()) < 0 or int(arr.max()) >= num_nodes):
        raise OptionError(f"{what} holds ids outside [0, {num_nodes})",
                          hint="use dense store ids (0..num_nodes-1)")
    return arr


def as_u64(seed: int) -> np.uint64:
    """Any Python/numpy int as the uint64 the kernels' hash streams take."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise OptionError(f"seed must be an integer, got {seed!r}")
    return np.uint64(int(seed) & _U64)
