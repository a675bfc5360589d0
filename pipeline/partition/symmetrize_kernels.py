"""numba kernels for symmetrising a directed in-edge CSR (see symmetrize.py). No I/O."""
from __future__ import annotations

from numba import njit

from gstore.numba_config import NJIT


@njit(**NJIT)
def scatter_transpose(local_indptr, nbrs, row0, a, b, cursor, out):
    """Scatter in-CSR rows [row0, row0+rows) into the out-CSR rows [a, b).

    For every entry u of row v with a <= u < b, writes v at out[cursor[u - a]] and advances the cursor.
    Rows arrive in increasing v, so each out-row ends up sorted.
    """
    rows = len(local_indptr) - 1
    for i in range(rows):
        v = row0 + i
        for j in range(local_indptr[i], local_indptr[i + 1]):
            u = nbrs[j]
            if u >= a and u < b:
                k = u - a
                out[cursor[k]] = v
                cursor[k] += 1


@njit(**NJIT)
def merge_rows(in_indptr, in_nbrs, out_indptr, out_nbrs, row0, counts, res_nbrs, res_w):
    """Union of sorted in- and out-neighbours per row, self loops dropped.

    Weight = multiplicity (1 if one direction, 2 if both). Results are packed row after row into
    res_nbrs/res_w; counts[i] receives the length of row i. Returns the total number written.
    """
    rows = len(in_indptr) - 1
    pos = 0
    for i in range(rows):
        v = row0 + i
        p, pe = in_indptr[i], in_indptr[i + 1]
        q, qe = out_indptr[i], out_indptr[i + 1]
        start = pos
        while p < pe or q < qe:
            add = 1
            if q >= qe or (p < pe and in_nbrs[p] < out_nbrs[q]):
                u = in_nbrs[p]
                p += 1
            elif p >= pe or out_nbrs[q] < in_nbrs[p]:
                u = out_nbrs[q]
                q += 1
            else:
                u = in_nbrs[p]
                p += 1
                q += 1
                add = 2
            if u == v:
                continue
            if pos > start and res_nbrs[pos - 1] == u:
                res_w[pos - 1] += add
            else:
                res_nbrs[pos] = u
                res_w[pos] = add
                pos += 1
        counts[i] = pos - start
    return pos


@njit(**NJIT)
def drop_self_loops(local_indptr, nbrs, ew, has_w, row0, counts, res_nbrs, res_w):
    """Copy rows without self loops (weights along when has_w); counts[i] = kept entries of row i.

    Returns the total kept."""
    rows = len(local_indptr) - 1
    pos = 0
    for i in range(rows):
        v = row0 + i
        start = pos
        for j in range(local_indptr[i], local_indptr[i + 1]):
            u = nbrs[j]
            if u != v:
                res_nbrs[pos] = u
                if has_w:
                    res_w[pos] = ew[j]
                pos += 1
        counts[i] = pos - start
    return pos
