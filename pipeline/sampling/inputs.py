"""Validation shared by the samplers: CSR arrays, node-id batches and seeds.

The kernels index without bounds checks, so a CSR must be structurally sound before they see it.
A store's CSR (`GraphStore.csr()`) was checked once per process when the store handed it out and is
taken as it is; raw arrays get one vectorised pass here (O(E), in blocks, no copies unless a dtype
must change). Batch and seed checks are O(batch).
"""
from __future__ import annotations

import numpy as np

from gstore.errors import OptionError
from gstore.store_invariants import is_checked

_U64 = (1 << 64) - 1
_CHECK_BLOCK = 1 << 24           # elements per vectorised block of the raw-array check


def check_csr(indptr: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (indptr int64 (N+1,), indices int32/int64 (E,)), converting dtypes only when needed."""
    checked = is_checked(indptr) and is_checked(indices)   # before asarray: it makes new view objects
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
    if not checked:
        _check_raw_csr(indptr, indices)
    return indptr, indices


def _check_raw_csr(indptr: np.ndarray, indices: np.ndarray) -> None:
    """indptr non-decreasing and 0 <= indices < N, block by block; OptionError at the first bad entry."""
    n = len(indptr) - 1
    for lo in range(0, n, _CHECK_BLOCK):
        v = indptr[lo:lo + _CHECK_BLOCK + 1]
        down = np.flatnonzero(v[1:] < v[:-1])
        if len(down):
            i = lo + int(down[0]) + 1
            raise OptionError(f"indptr[{i}] = {int(indptr[i])} < indptr[{i - 1}] = {int(indptr[i - 1])}: "
                              f"row offsets must not decrease", hint="pass a valid CSR (a store's csr())")
    for lo in range(0, len(indices), _CHECK_BLOCK):
        v = indices[lo:lo + _CHECK_BLOCK]
        if len(v) and (int(v.min()) < 0 or int(v.max()) >= n):
            i = lo + int(np.flatnonzero((v < 0) | (v >= n))[0])
            raise OptionError(f"indices[{i}] = {int(indices[i])} is outside [0, {n})",
                              hint="pass a valid CSR (a store's csr())")


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
