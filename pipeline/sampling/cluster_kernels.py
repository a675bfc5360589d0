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
def _match_row(indptr, indices, nodes, i, match, o):
    """For each in-edge of row nodes[i], store in match[o + j] the local id of its source, or -1 when
    the source is not in `nodes`. Returns (matches, has_own_self_loop)."""
    n = len(nodes)
    v = nodes[i]
    lo = indptr[v]
    pos = np.int64(0)
    prev = np.int64(-1)
    cnt = np.int64(0)
    has_loop = False
    for e in range(lo, indptr[v + 1]):
        u = np.int64(indices[e])
        if u < prev:
            pos = 0  # unsorted row: search from the start again
        prev = u
        p = _lower_bound(nodes, pos, n, u)
        pos = p
        if p < n and nodes[p] == u:
            match[o + e - lo] = p
            cnt += 1
            has_loop = has_loop or p == i
        else:
            match[o + e - lo] = -1
    return cnt, has_loop


@njit(**NJIT_PARALLEL)
def induced_subgraph(indptr: np.ndarray, indices: np.ndarray, nodes: np.ndarray, self_loops: bool):
    """Induced subgraph of the store over `nodes` (int64 (n,), sorted, unique dense ids).

    Every store edge u -> v with both ends in `nodes` is kept; with `self_loops`, nodes lacking a
    self-edge get one (edge id -1), like PyG's add_remaining_self_loops.
    Returns local CSR over destinations: (indptr int64 (n+1,), indices int64 (m,) local sources,
    edge_ids int64 (m,) positions in the store's `indices`, -1 for added loops). Rows of a sorted store
    come out sorted by local source.
    Pass 1 searches every scanned edge once and keeps the answer (scratch: int64 per scanned edge,
    O(batch)); pass 2 compacts the matches.
    """
    n = len(nodes)
    scan_off = np.empty(n + 1, dtype=np.int64)
    scan_off[0] = 0
    for i in range(n):
        v = nodes[i]
        scan_off[i + 1] = scan_off[i] + indptr[v + 1] - indptr[v]
    match = np.empty(scan_off[n], dtype=np.int64)
    counts = np.empty(n, dtype=np.int64)
    add_loop = np.zeros(n, dtype=np.bool_)
    for i in prange(n):
        cnt, has_loop = _match_row(indptr, indices, nodes, i, match, scan_off[i])
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
        o = sub_indptr[i]
        pending = add_loop[i]
        base = indptr[nodes[i]] - scan_off[i]  # store edge id of scratch position j: base + j
        for j in range(scan_off[i], scan_off[i + 1]):
            p = match[j]
            if p < 0:
                continue
            if pending and p > i:  # the added loop goes where it keeps the row sorted
                sub_indices[o] = i
                edge_ids[o] = -1
                o += 1
                pending = False
            sub_indices[o] = p
            edge_ids[o] = base + j
            o += 1
        if pending:
            sub_indices[o] = i
            edge_ids[o] = -1
    return sub_indptr, sub_indices, edge_ids


@njit(**NJIT)
def _range_after(stops: np.ndarray, u: np.int64) -> np.int64:
    """First k with stops[k] > u (stops ascending)."""
    lo = np.int64(0)
    hi = np.int64(len(stops))
    while lo < hi:
        mid = (lo + hi) >> 1
        if stops[mid] <= u:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(**NJIT)
def _range_count(indptr, indices, starts, stops, offsets, v, i):
    """(matches, has own self-loop) of the in-edges of store row v (local id i) in the id ranges.

    Sorted rows walk the ranges with one cursor (O(deg + q)) and stop past the last range; a row
    that goes backwards re-finds its range by binary search, so unsorted rows stay correct."""
    q = len(starts)
    k = np.int64(0)
    prev = np.int64(-1)
    cnt = np.int64(0)
    has_loop = False
    sorted_row = True
    for e in range(indptr[v], indptr[v + 1]):
        u = np.int64(indices[e])
        if u < prev:
            k = _range_after(stops, u)
            sorted_row = False
        prev = u
        while k < q and stops[k] <= u:
            k += 1
        if k == q:
            if sorted_row:
                break  # sorted: every later source lies past the last range too
            continue
        if u >= starts[k]:
            cnt += 1
            has_loop = has_loop or u == v
    return cnt, has_loop


@njit(**NJIT)
def _range_fill(indptr, indices, starts, stops, offsets, v, i, ei, eids, o, add_loop):
    """Write the matches of store row v (local id i) from position o (see _range_count), with an
    added self-loop (edge id -1) where it keeps the row sorted when `add_loop`."""
    q = len(starts)
    k = np.int64(0)
    prev = np.int64(-1)
    pending = add_loop
    for e in range(indptr[v], indptr[v + 1]):
        u = np.int64(indices[e])
        if u < prev:
            k = _range_after(stops, u)
        prev = u
        while k < q and stops[k] <= u:
            k += 1
        if k == q or u < starts[k]:
            continue
        p = offsets[k] + u - starts[k]
        if pending and p > i:
            ei[0, o] = i
            ei[1, o] = i
            eids[o] = -1
            o += 1
            pending = False
        ei[0, o] = p
        ei[1, o] = i
        eids[o] = e
        o += 1
    if pending:
        ei[0, o] = i
        ei[1, o] = i
        eids[o] = -1


@njit(**NJIT_PARALLEL)
def induced_ranges(indptr: np.ndarray, indices: np.ndarray, starts: np.ndarray, stops: np.ndarray,
                   self_loops: bool):
    """Induced subgraph over the nodes of the id ranges [starts[k], stops[k]) (int64 (q,), ascending,
    disjoint): the clusters of a store laid out by its partition. Same edges, order and added loops
    as `induced_subgraph` over the concatenated ranges, but membership is a range test (local id =
    offset of the range + u - start) instead of a search, and no per-edge scratch: pass 1 counts
    each row, pass 2 fills it, both parallel over rows.
    Returns (nodes int64 (n,), indptr int64 (n+1,), edge_index int64 (2, m) [local src; local dst],
    edge_ids int64 (m,) positions in the store's `indices`, -1 for added loops).
    """
    q = len(starts)
    offsets = np.empty(q + 1, dtype=np.int64)
    offsets[0] = 0
    for k in range(q):
        offsets[k + 1] = offsets[k] + stops[k] - starts[k]
    n = offsets[q]
    nodes = np.empty(n, dtype=np.int64)
    for k in range(q):
        for j in range(stops[k] - starts[k]):
            nodes[offsets[k] + j] = starts[k] + j
    counts = np.empty(n, dtype=np.int64)
    add_loop = np.zeros(n, dtype=np.bool_)
    for i in prange(n):
        cnt, has_loop = _range_count(indptr, indices, starts, stops, offsets, nodes[i], i)
        if self_loops and not has_loop:
            add_loop[i] = True
            cnt += 1
        counts[i] = cnt
    sub_indptr = np.empty(n + 1, dtype=np.int64)
    sub_indptr[0] = 0
    for i in range(n):
        sub_indptr[i + 1] = sub_indptr[i] + counts[i]
    m = sub_indptr[n]
    edge_index = np.empty((2, m), dtype=np.int64)
    edge_ids = np.empty(m, dtype=np.int64)
    for i in prange(n):
        _range_fill(indptr, indices, starts, stops, offsets, nodes[i], i, edge_index, edge_ids,
                    sub_indptr[i], add_loop[i])
    return nodes, sub_indptr, edge_index, edge_ids


@njit(**NJIT)
def gcn_norm(sub_indptr: np.ndarray, sub_indices: np.ndarray) -> np.ndarray:
    """float32 (m,) weights D^-1/2 A D^-1/2 of a local CSR (rows = destinations), D = in-degree.

    Edge u -> v gets 1 / sqrt(deg(u) * deg(v)), as PyG's gcn_norm with unit edge weights (the degree
    of a node counts the edges INTO it, self-loop included). Serial: a few ns per edge, less than
    waking a thread team on a busy machine.
    """
    n = len(sub_indptr) - 1
    dinv = np.empty(n, dtype=np.float64)
    for i in range(n):
        d = sub_indptr[i + 1] - sub_indptr[i]
        dinv[i] = 1.0 / np.sqrt(d) if d > 0 else 0.0
    w = np.empty(len(sub_indices), dtype=np.float32)
    for i in range(n):
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
