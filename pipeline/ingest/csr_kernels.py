"""numba kernels for building one bucket of the in-edge CSR (rows = destinations).

A bucket's edges are packed into one int64 sort key per edge:
    key = (dst_dense - row_lo) << src_bits | src_dense
so sorting keys sorts by (dst, src), equal keys are duplicate edges, and the column index is
`key & (2**src_bits - 1)`. The caller checks that the packed key fits in 63 bits.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from gstore.numba_config import NJIT, NJIT_PARALLEL


@njit(**NJIT_PARALLEL)
def remap_and_pack(dst_dense: np.ndarray, src_dense: np.ndarray, row_lo: np.int64, src_bits: int,
                   keys: np.ndarray) -> None:
    """keys[i] = (dst_dense[i] - row_lo) << src_bits | src_dense[i] (all int64)."""
    sb = np.int64(src_bits)
    for i in prange(len(dst_dense)):
        keys[i] = ((dst_dense[i] - row_lo) << sb) | src_dense[i]


@njit(**NJIT)
def drop_self_loops(keys: np.ndarray, weights: np.ndarray, has_weights: bool, n: int,
                    row_lo: np.int64, src_bits: int) -> int:
    """Remove keys whose src == dst, in place and keeping order; returns the new length."""
    sb = np.int64(src_bits)
    mask = (np.int64(1) << sb) - 1
    m = 0
    for i in range(n):
        k = keys[i]
        if (k >> sb) + row_lo != (k & mask):
            keys[m] = k
            if has_weights:
                weights[m] = weights[i]
            m += 1
    return m


@njit(**NJIT)
def radix_sort_with_payload(keys: np.ndarray, payload: np.ndarray, n: int, key_bits: int,
                            tmp_keys: np.ndarray, tmp_payload: np.ndarray) -> None:
    """Stable LSD radix sort of non-negative keys[:n] carrying float32 payload[:n], in place.

    Stability keeps the input order of duplicate edges, so 'keep the first weight' is well defined.
    tmp_*: scratch of at least n entries.
    """
    digit_bits = 11
    radix = 1 << digit_bits
    passes = max(1, (key_bits + digit_bits - 1) // digit_bits)
    src_k = keys
    src_p = payload
    dst_k = tmp_keys
    dst_p = tmp_payload
    counts = np.empty(radix + 1, dtype=np.int64)
    for p in range(passes):
        shift = np.int64(p * digit_bits)
        counts[:] = 0
        for i in range(n):
            counts[((src_k[i] >> shift) & (radix - 1)) + 1] += 1
        for d in range(radix):
            counts[d + 1] += counts[d]
        for i in range(n):
            d = (src_k[i] >> shift) & (radix - 1)
            j = counts[d]
            counts[d] = j + 1
            dst_k[j] = src_k[i]
            dst_p[j] = src_p[i]
        src_k, dst_k = dst_k, src_k
        src_p, dst_p = dst_p, src_p
    if passes % 2 == 1:
        keys[:n] = tmp_keys[:n]
        payload[:n] = tmp_payload[:n]


@njit(**NJIT)
def dedup_sorted(keys: np.ndarray, weights: np.ndarray, has_weights: bool, n: int,
                 sum_weights: bool) -> int:
    """Compact sorted keys[:n] to distinct keys in place; duplicates keep the first weight, or the
    sum when sum_weights. Returns the new length."""
    if n == 0:
        return 0
    m = 1
    for i in range(1, n):
        k = keys[i]
        if k != keys[m - 1]:
            keys[m] = k
            if has_weights:
                weights[m] = weights[i]
            m += 1
        elif has_weights and sum_weights:
            weights[m - 1] += weights[i]
    return m


@njit(**NJIT_PARALLEL)
def unpack_columns(keys: np.ndarray, n: int, src_bits: int, out: np.ndarray) -> None:
    """out[i] = keys[i] & (2**src_bits - 1): the source (column) dense id; out int32 or int64."""
    mask = (np.int64(1) << np.int64(src_bits)) - 1
    for i in prange(n):
        out[i] = keys[i] & mask


@njit(**NJIT)
def indptr_segment(keys: np.ndarray, n: int, src_bits: int, row_lo: np.int64, v_lo: np.int64,
                   edge_base: np.int64, out: np.ndarray) -> None:
    """out[j] = edge_base + #{keys[:n] with dst < v_lo + j}, for sorted keys.

    That is indptr[v] for v in [v_lo, v_lo + len(out)) when keys[:n] are the only edges with
    dst >= (the previous buckets' bound) and edge_base counts all edges before them.
    """
    sb = np.int64(src_bits)
    p = 0
    # first key with row >= v: keys are sorted, so the pointer only moves forward
    for j in range(len(out)):
        r = v_lo + j - row_lo
        while p < n and (keys[p] >> sb) < r:
            p += 1
        out[j] = edge_base + p


@njit(**NJIT)
def partition_pack(dst_dense: np.ndarray, src_dense: np.ndarray, weights: np.ndarray, has_weights: bool,
                   row_lo: np.int64, src_bits: int, mid_row: np.int64, keys: np.ndarray,
                   w_out: np.ndarray) -> int:
    """Pack like remap_and_pack, putting rows < mid_row first and the rest after, each part in
    input order (weights follow into w_out). Returns the size of the first part; the two parts can
    then be sorted independently (in two threads) and are already in order relative to each other."""
    n = len(dst_dense)
    sb = np.int64(src_bits)
    n_lo = 0
    for i in range(n):
        if dst_dense[i] < mid_row:
            n_lo += 1
    a = 0
    b = n_lo
    for i in range(n):
        k = ((dst_dense[i] - row_lo) << sb) | src_dense[i]
        if dst_dense[i] < mid_row:
            j = a
            a += 1
        else:
            j = b
            b += 1
        keys[j] = k
        if has_weights:
            w_out[j] = weights[i]
    return n_lo
