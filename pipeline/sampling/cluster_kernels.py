"""numba kernels of the induced-subgraph samplers (Cluster-GCN, GraphSAINT node/edge), see cluster.py.

Membership of a neighbor in the batch's node set is a binary search in the SORTED batch nodes, so a
batch costs O(batch edges * log batch nodes) time and O(batch) memory, never an N-sized array. Since
store rows are sorted by source, each search starts where the previous one ended (rows that are not
sorted are still handled, just without that shortcut). Twins live in tests/reference_sampling.py.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from gstore.numba_config import NJIT, NJIT_PARALLEL


@njit(**NJIT)
def _lower_bound(a: np.ndarray, lo: np.int64, hi: np.int64, x: np.int64) -> np.int64:
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(**NJIT)
def _scan_row(indptr, indices, nodes, i, write, out_indices, out_edge_ids, o, add_loop):
    """Visit row nodes[i]'s in-edges whose source is in `nodes`: count them, and with `write` store
    local sources/edge ids from position o; `add_loop` inserts the added self-loop (edge id -1)
    before the first local source > i.
    Returns (count, has_own_self_loop)."""
    n = len(nodes)
    v = nodes[i]
    pos = np.int64(0)
    prev = np.int64(-1)
    cnt = np.int64(0)
    has_loop = False
    pending = add_loop
    for e in range(indptr[v], indptr[v + 1]):
        u = np.int64(indices[e])
        if u < prev:
            pos = 0  # unsorted row: search from the start again
        prev = u
        p = _lower_bound(nodes, pos, n, u)
        pos = p
        if p < n and nodes[p] == u:
            if p == i:
                has_loop = True
            if write:
                if pending and p > i:
                    out_indices[o + cnt] = i
                    out_edge_ids[o + cnt] = -1
                    cnt += 1
                    pending = False
                out_indices[o + cnt] = p
                out_edge_ids[o + cnt] = e
            cnt += 1
    if write and pending:
        out_indices[o + cnt] = i
        out_edge_ids[o + cnt] = -1
        cnt += 1
    return cnt, has_loop


@njit(**NJIT_PARALLEL)
def induced_subgraph(indptr: np.ndarray, indices: np.ndarray, nodes: np.ndarray, self_loops: bool):
    """Induced subgraph of the store over `nodes` (int64 (n,), sorted, unique dense ids).

    Every store edge u -> v with both ends in `nodes` is kept; with `self_loops`, nodes lacking a
    self-edge get one (edge id -1), like PyG's add_remaining_self_loops.
    Returns local CSR over destinations: (indptr int64 (n+1,), indices int64 (m,) local sources,
    edge_ids int64 (m,) positions in the store's `indices`, -1 for added loops). Rows of a sorted store
    come out sorted by local source.
    """
    n = len(nodes)
    counts = np.empty(n, dtype=np.int64)
    add_loop = np.zeros(n, dtype=np.bool_)
    no_out = np.empty(0, dtype=np.int64)
    for i in prange(n):
        cnt, has_loop = _scan_row(indptr, indices, nodes, i, False, no_out, no_out, 0, False)
        if self_loops and not has_loop:
            add_loop[i] = True
            cnt += 1
        counts[i] = cnt
    sub_indptr = np.empty(n + 1, dtype=np.int64)
    sub_indptr[0] = 0
    for i in range(n):
        sub_indptr[i + 1] = sub_indptr[i] + counts[i]
    m = sub_indptr[n]
    sub_indices = np.empty(m, dtype=np.int64)
    edge_ids = np.empty(m, dtype=np.int64)
    for i in prange(n):
        _scan_row(indptr, indices, nodes, i, True, sub_indices, edge_ids, sub_indptr[i], add_loop[i])
    return sub_indptr, sub_indices, edge_ids


@njit(**NJIT_PARALLEL)
def gcn_norm(sub_indptr: np.ndarray, sub_indices: np.ndarray) -> np.ndarray:
    """float32 (m,) weights D^-1/2 A D^-1/2 of a local CSR (rows = destinations), D = in-degree.

    Edge u -> v gets 1 / sqrt(deg(u) * deg(v)), as PyG's gcn_norm with unit edge weights (the degree
    of a node counts the edges INTO it, self-loop included).
    """
    n = len(sub_indptr) - 1
    dinv = np.empty(n, dtype=np.float64)
    for i in prange(n):
        d = sub_indptr[i + 1] - sub_indptr[i]
        dinv[i] = 1.0 / np.sqrt(d) if d > 0 else 0.0
    w = np.empty(len(sub_indices), dtype=np.float32)
    for i in prange(n):
        for e in range(sub_indptr[i], sub_indptr[i + 1]):
            w[e] = np.float32(dinv[sub_indices[e]] * dinv[i])
    return w


@njit(**NJIT)
def gather_ranges(perm: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """int64 concatenation of perm[starts[k]:stops[k]] (contiguous reads of a cluster index)."""
    total = np.int64(0)
    for k in range(len(starts)):
        total += stops[k] - starts[k]
    out = np.empty(total, dtype=np.int64)
    o = 0
    for k in range(len(starts)):
        for j in range(starts[k], stops[k]):
            out[o] = perm[j]
            o += 1
    return out


@njit(**NJIT)
def cluster_index(parts: np.ndarray, num_parts: np.int64):
    """Counting sort of nodes by cluster: (partptr int64 (K+1,), perm int64 (N,)); the nodes of
    cluster c are perm[partptr[c]:partptr[c+1]], ascending. O(N + K), one pass each."""
    partptr = np.zeros(num_parts + 1, dtype=np.int64)
    for v in range(len(parts)):
        partptr[parts[v] + 1] += 1
    for c in range(num_parts):
        partptr[c + 1] += partptr[c]
    cursor = partptr[:-1].copy()
    perm = np.empty(len(parts), dtype=np.int64)
    for v in range(len(parts)):
        c = parts[v]
        perm[cursor[c]] = v
        cursor[c] += 1
    return partptr, perm
