"""numba kernels for reordering a CSR-like array by a node permutation, by distribution. No I/O.

A chunk of old rows is grouped by the bucket of new ids each row goes to (`set_kernels.counting_groups`
gives the row order, `concat_rows` copies the rows in that order); a bucket read back from its spill
is placed by `scatter_rows` (its rows' new ids as `inv`) and, for indices, mapped and sorted by
`map_sort_rows`.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from gstore.numba_config import NJIT


@njit(**NJIT)
def scatter_rows(local_indptr, vals, row0, inv, a, b, new_start, out):
    """Copy old rows of the chunk whose new id inv[v] lies in [a, b) to out[new_start[inv[v] - a]:].

    local_indptr int64 (rows+1, from 0) and vals (entries,) are one chunk of an old CSR-like array
    (indices, weights, string bytes); new_start int64 (b-a,) are the new rows' offsets in `out`.
    Returns the number of rows copied.
    """
    rows = len(local_indptr) - 1
    copied = 0
    for i in range(rows):
        nv = inv[row0 + i]
        if nv < a or nv >= b:
            continue
        dst = new_start[nv - a]
        for j in range(local_indptr[i], local_indptr[i + 1]):
            out[dst] = vals[j]
            dst += 1
        copied += 1
    return copied


@njit(**NJIT)
def concat_rows(local_indptr, order, vals, out):
    """out = the rows order[0], order[1], ... of a chunk, back to back.

    local_indptr int64 (rows+1, from 0) and vals (entries,) are one chunk of an old CSR-like array;
    order int64 (rows,) a permutation of the chunk's rows; out (entries,) of vals' dtype. Returns
    the number of entries written.
    """
    dst = 0
    for k in range(len(order)):
        i = order[k]
        for j in range(local_indptr[i], local_indptr[i + 1]):
            out[dst] = vals[j]
            dst += 1
    return dst


# rows up to this long are sorted by insertion: numba's sort pays a call and a stack per row, and
# most rows are short (insertion 38 ns an entry against 60 for .sort() at mean degree 30)
SHORT_ROW = 32


@njit(**NJIT)
def _insertion_sort(nbr, w, has_w, s, e):
    """Sort nbr[s:e] in place (stable), moving w[s:e] along when has_w."""
    for j in range(s + 1, e):
        x = nbr[j]
        k = j - 1
        if has_w:
            y = w[j]
            while k >= s and nbr[k] > x:
                nbr[k + 1] = nbr[k]
                w[k + 1] = w[k]
                k -= 1
            w[k + 1] = y
        else:
            while k >= s and nbr[k] > x:
                nbr[k + 1] = nbr[k]
                k -= 1
        nbr[k + 1] = x


@njit(**NJIT)
def map_sort_rows(bucket_ptr, nbr, inv, w, has_w):
    """Map every neighbour id through `inv` and sort each row [bucket_ptr[r], bucket_ptr[r+1]),
    carrying the weights `w` along when has_w (stable, so equal ids keep their order)."""
    for r in range(len(bucket_ptr) - 1):
        s, e = bucket_ptr[r], bucket_ptr[r + 1]
        for j in range(s, e):
            nbr[j] = inv[nbr[j]]
        if e - s < 2:
            continue
        if e - s <= SHORT_ROW:
            _insertion_sort(nbr, w, has_w, s, e)
        elif has_w:
            order = np.argsort(nbr[s:e], kind="mergesort")
            seg_n = nbr[s:e][order]
            seg_w = w[s:e][order]
            nbr[s:e] = seg_n
            w[s:e] = seg_w
        else:
            nbr[s:e].sort()
