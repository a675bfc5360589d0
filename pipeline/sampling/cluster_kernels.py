"""numba kernels of the induced-subgraph samplers (Cluster-GCN, GraphSAINT node/edge), see cluster.py.

Cluster-GCN batches take `induced_ranges`: the batch is a few ranges of the cluster order (id
ranges in a store reordered by its partition; ranges of a cluster index `perm` otherwise),
membership is a per-batch block -> range table lookup plus one compare, and one branchless pass
fills the output (see its docstring). The GraphSAINT samplers' node sets are arbitrary, so
`induced_subgraph` finds members by binary search in the SORTED batch nodes: O(batch edges * log
batch nodes) time and O(batch) memory, never an N-sized array; since store rows are sorted by
source, each search starts where the previous one ended (unsorted rows are still handled, just
without that shortcut).
Twins live in tests/reference_sampling.py.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from gstore.numba_config import NJIT, NJIT_PARALLEL
from gstore.search_kernels import lower_bound


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
        p = lower_bound(nodes, pos, n, u)
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


# the per-batch block -> range table of induced_ranges has at most this many entries
RANGE_TABLE_BLOCKS = 1 << 16
# sentinel start/stop past every node id: a source beyond the last range finds "range" q empty
_PAST_ALL = np.int64(1) << np.int64(62)


@njit(**NJIT)
def range_table(starts: np.ndarray, stops: np.ndarray, num_nodes: np.int64, max_blocks: np.int64):
    """Lookup structure of the id ranges [starts[k], stops[k]) (int64 (q,), ascending, disjoint).

    Returns (shift, table int32 (B,), lo, hi, base int64 (q+1,)): ids are cut into blocks of
    2**shift ids (B <= max_blocks blocks); table[b] is the first range ending after block b starts.
    lo / hi are the range starts / stops and base the local-id offsets (offset - start), with a
    sentinel range q (empty, past every id), so that for any id u: k = table[u >> shift], advanced
    while hi[k] <= u (only in the few blocks that hold a range end), is the range of u iff
    lo[k] <= u, and its local id is base[k] + u. O(B + q) time, no N-sized array.
    """
    q = len(starts)
    shift = np.int64(0)
    while ((num_nodes - 1) >> shift) + 1 > max_blocks:
        shift += 1
    nb = ((num_nodes - 1) >> shift) + 1 if num_nodes > 0 else 1
    lo = np.empty(q + 1, dtype=np.int64)
    hi = np.empty(q + 1, dtype=np.int64)
    base = np.empty(q + 1, dtype=np.int64)
    off = np.int64(0)
    for k in range(q):
        lo[k] = starts[k]
        hi[k] = stops[k]
        base[k] = off - starts[k]
        off += stops[k] - starts[k]
    lo[q] = _PAST_ALL
    hi[q] = _PAST_ALL
    base[q] = 0
    table = np.empty(nb, dtype=np.int32)
    k = 0
    for b in range(nb):
        while hi[k] <= (np.int64(b) << shift):
            k += 1
        table[b] = k
    return shift, table, lo, hi, base


@njit(**NJIT, inline="always")
def _range_of(u, shift, table, hi):
    k = table[u >> shift]
    while hi[k] <= u:
        k += 1
    return k


@njit(**NJIT_PARALLEL)
def induced_ranges(indptr: np.ndarray, indices: np.ndarray, starts: np.ndarray, stops: np.ndarray,
                   self_loops: bool, with_edge_ids: bool = True,
                   table_blocks: int = RANGE_TABLE_BLOCKS, perm=None, pos=None,
                   num_chunks: int = 1):
    """Induced subgraph over the nodes of the ranges [starts[k], stops[k]) (int64 (q,), ascending,
    disjoint) of a cluster order: the clusters of a partition, each a range of that order.

    Without perm/pos the order is the id order (a store laid out by its partition): batch node i is
    an id of the ranges. With them, position p of the order holds node perm[p] and node u sits at
    position pos[u] (perm: int (N,) nodes grouped by cluster, pos: int (N,) its inverse), so
    scattered clusters cost one extra random read per scanned edge, not a search.
    Same edges and added loops as `induced_subgraph` over the batch nodes (rows keep the store's
    order, an added loop comes last in its row), but membership is a
    table lookup + one compare (`range_table`) done without branches (a match is written
    unconditionally and the cursor advances by the compare), so random sources cost no
    mispredictions. One pass over the scanned edges: rows are cut into `num_chunks` chunks (the
    caller's numba thread count), each writing its kept sources compactly into its share of an
    upper-bound buffer (scanned edges + loops); then the chunks are closed up and the destination
    row is written behind the sources, so edge_index is one C-contiguous (2, m) array.
    `with_edge_ids=False` skips the edge ids; `table_blocks` caps the table (tests).
    Returns (nodes int64 (n,) in range order, indptr int64 (n+1,), edge_index int64 (2, m)
    [local src; local dst], edge_ids int64 (m,) positions in the store's `indices`, -1 for added
    loops; (0,) without them). Without perm and without added loops, rows of a sorted store come out
    sorted by local source, in the order `induced_subgraph` gives.
    """
    q = len(starts)
    shift, table, lo, hi, base = range_table(starts, stops, np.int64(len(indptr) - 1),
                                             np.int64(table_blocks))
    n = np.int64(0)
    for k in range(q):
        n += stops[k] - starts[k]
    nodes = np.empty(n, dtype=np.int64)
    # region[i]: where row i's output may start: scanned edges (+ one loop each) before it
    region = np.empty(n + 1, dtype=np.int64)
    region[0] = 0
    extra = np.int64(1) if self_loops else np.int64(0)
    o = 0
    for k in range(q):
        for p in range(starts[k], stops[k]):
            v = p if perm is None else np.int64(perm[p])
            nodes[o] = v
            region[o + 1] = region[o] + indptr[v + 1] - indptr[v] + extra
            o += 1
    cap = region[n]
    # rows cut into one chunk per thread, balanced by scanned edges
    chunks = max(np.int64(1), min(np.int64(num_chunks), n))
    first = np.empty(chunks + 1, dtype=np.int64)
    for c in range(chunks + 1):
        first[c] = np.searchsorted(region[:n], cap * c // chunks) if c < chunks else n
    first[0] = 0
    buf = np.empty(2 * cap, dtype=np.int64)        # src, then [src | dst] once m is known
    eids = np.empty(cap if with_edge_ids else 0, dtype=np.int64)
    counts = np.empty(n, dtype=np.int64)
    kept = np.zeros(chunks, dtype=np.int64)
    for c in prange(chunks):
        o = region[first[c]]
        for i in range(first[c], first[c + 1]):
            v = nodes[i]
            row_start = o
            own_loop = False
            for e in range(indptr[v], indptr[v + 1]):
                u = np.int64(indices[e])
                own_loop = own_loop or u == v
                if pos is not None:
                    u = np.int64(pos[u])
                k = _range_of(u, shift, table, hi)
                keep = lo[k] <= u
                buf[o] = base[k] + u  # write first, keep by advancing: no branch on random sources
                if with_edge_ids:
                    eids[o] = e
                o += keep
            if self_loops and not own_loop:  # appended, as PyG's add_remaining_self_loops does
                buf[o] = i
                if with_edge_ids:
                    eids[o] = -1
                o += 1
            counts[i] = o - row_start
        kept[c] = o - region[first[c]]
    sub_indptr = np.empty(n + 1, dtype=np.int64)
    sub_indptr[0] = 0
    for i in range(n):
        sub_indptr[i + 1] = sub_indptr[i] + counts[i]
    m = sub_indptr[n]
    for c in range(1, chunks):  # close the gaps between chunks: moves left, in order, so no overlap
        src0, dst0 = region[first[c]], sub_indptr[first[c]]
        for j in range(kept[c]):
            buf[dst0 + j] = buf[src0 + j]
            if with_edge_ids:
                eids[dst0 + j] = eids[src0 + j]
    for i in range(n):
        for j in range(sub_indptr[i], sub_indptr[i + 1]):
            buf[m + j] = i
    return nodes, sub_indptr, buf[:2 * m].reshape(2, m), eids[:m] if with_edge_ids else eids


@njit(**NJIT)
def inverse_permutation(perm: np.ndarray, out: np.ndarray) -> None:
    """out[perm[p]] = p for every position p (perm: int (N,) a permutation of 0..N-1; out: int (N,))."""
    for p in range(len(perm)):
        out[perm[p]] = p


@njit(**NJIT)
def rows_first(indptr: np.ndarray, indices: np.ndarray, weight: np.ndarray, edge_ids: np.ndarray,
               first: np.ndarray, order: np.ndarray, new_indptr: np.ndarray, new_indices: np.ndarray,
               new_weight: np.ndarray, new_edge_ids: np.ndarray) -> np.int64:
    """Relabel a local CSR so the rows with first[v] come first (both groups keep their order).

    indptr: int64 (n+1,), indices: int64 (m,) local CSR over destinations; weight: float32 (m,) and
    edge_ids: int64 (m,), each (0,) for none; first: bool (n,). Writes order[i] = old id of new row
    i (int64 (n,)), the permuted CSR with relabelled sources into new_indptr (n+1,) / new_indices
    (m,), and the weights and edge ids in the new edge order into new_weight / new_edge_ids. Edges stay grouped by ascending new
    destination, so the first k rows' edges are the prefix new_indices[:new_indptr[k]].
    Returns k, the number of rows with first set."""
    n = len(first)
    k = 0
    for v in range(n):
        if first[v]:
            order[k] = v
            k += 1
    j = k
    for v in range(n):
        if not first[v]:
            order[j] = v
            j += 1
    new_id = np.empty(n, dtype=np.int64)
    inverse_permutation(order, new_id)
    has_weight = len(weight) > 0
    has_ids = len(edge_ids) > 0
    e = 0
    new_indptr[0] = 0
    for i in range(n):
        v = order[i]
        for p in range(indptr[v], indptr[v + 1]):
            new_indices[e] = new_id[indices[p]]
            if has_weight:
                new_weight[e] = weight[p]
            if has_ids:
                new_edge_ids[e] = edge_ids[p]
            e += 1
        new_indptr[i + 1] = e
    return k


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
