"""numba kernels for out-of-core coarsening: size-constrained label propagation and contraction.

All kernels work on one row chunk of a CSR: `local_indptr` int64 (rows+1, from 0), `nbrs` (entries,),
`ew` (entries,) integer edge weights used only when `has_w`, `row0` the global id of the chunk's first
row. Self loops are skipped. No I/O.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from gstore.numba_config import NJIT


@njit(**NJIT)
def mix_hash(x):
    """splitmix64 finaliser: a cheap deterministic hash for seeded tie-breaking."""
    z = np.uint64(x) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(**NJIT)
def lp_cluster_chunk(local_indptr, nbrs, ew, has_w, row0, vw, cluster, cweight, bound, seed, active,
                     next_active, use_active):
    """One label-propagation sweep over the chunk's rows, in row order.

    Node v joins the neighbouring cluster c with the largest connection weight, provided
    cweight[c] + vw[v] <= bound; it stays unless the best cluster is strictly better connected than
    its own. Ties between equally good foreign clusters go to the smallest hash(c, seed).
    cluster (N,) and cweight (N,) are updated in place. With use_active, only rows v with
    active[v] (uint8 (N,)) are visited, and a node that moves sets next_active for itself and its
    neighbours (as refine_chunk). Returns the number of moves.

    A row's clusters are collected in a small open-addressing table sized to the row (2x its
    degree, rounded up to a power of two), not an N-sized slot array: that would cost one more
    cache miss per entry on graphs with 10^7+ nodes.
    """
    rows = len(local_indptr) - 1
    maxdeg = 0
    for i in range(rows):
        d = local_indptr[i + 1] - local_indptr[i]
        if d > maxdeg:
            maxdeg = d
    cand = np.empty(maxdeg + 1, dtype=np.int64)
    conn = np.empty(maxdeg + 1, dtype=np.int64)
    where = np.empty(maxdeg + 1, dtype=np.int64)
    cbuf = np.empty(maxdeg + 1, dtype=np.int64)
    tsize = 2
    while tsize < 2 * (maxdeg + 1):
        tsize *= 2
    keys = np.full(tsize, -1, dtype=np.int64)
    slot = np.empty(tsize, dtype=np.int64)
    moves = 0
    for i in range(rows):
        v = row0 + i
        if use_active and active[v] == 0:
            continue
        own = cluster[v]
        wv = vw[v]
        deg = local_indptr[i + 1] - local_indptr[i]
        mask = 1
        while mask < 2 * (deg + 1):
            mask *= 2
        mask -= 1
        nc = 0
        lo = local_indptr[i]
        # gather first: independent loads overlap their cache misses (see refine_chunk)
        for j in range(lo, local_indptr[i + 1]):
            cbuf[j - lo] = cluster[nbrs[j]]
        for j in range(lo, local_indptr[i + 1]):
            u = nbrs[j]
            if u == v:
                continue
            c = cbuf[j - lo]
            w = ew[j] if has_w else 1
            h = (c * 2654435761) & mask
            while keys[h] != -1 and keys[h] != c:
                h = (h + 1) & mask
            if keys[h] == -1:
                keys[h] = c
                slot[h] = nc
                where[nc] = h
                cand[nc] = c
                conn[nc] = w
                nc += 1
            else:
                conn[slot[h]] += w
        best = own
        best_conn = 0
        h = (np.int64(own) * 2654435761) & mask
        while keys[h] != -1 and keys[h] != own:
            h = (h + 1) & mask
        if keys[h] == own:
            best_conn = conn[slot[h]]
        best_h = np.uint64(0)
        for s in range(nc):
            cbuf[s] = cweight[cand[s]]
        for s in range(nc):
            c = cand[s]
            if c == own or cbuf[s] + wv > bound:
                continue
            hc = mix_hash(c ^ seed)
            if conn[s] > best_conn or (conn[s] == best_conn and best != own and hc < best_h):
                best = c
                best_conn = conn[s]
                best_h = hc
        for s in range(nc):
            keys[where[s]] = -1
        if best != own:
            cweight[own] -= wv
            cweight[best] += wv
            cluster[v] = best
            moves += 1
            if use_active:
                next_active[v] = 1
                for j in range(local_indptr[i], local_indptr[i + 1]):
                    next_active[nbrs[j]] = 1
    return moves


@njit(**NJIT)
def contract_scatter(local_indptr, nbrs, ew, has_w, row0, cmap, a, b, cursor, out_nbr, out_w):
    """Scatter the coarse edges of fine rows whose coarse node lies in [a, b) into bucket slots.

    For fine edge u -> v (u != v) with cmap[u] != cmap[v] = cv in [a, b): out_nbr/out_w at
    cursor[cv - a] get (cmap[u], weight) and the cursor advances.
    """
    rows = len(local_indptr) - 1
    for i in range(rows):
        v = row0 + i
        cv = cmap[v]
        if cv < a or cv >= b:
            continue
        k = cv - a
        for j in range(local_indptr[i], local_indptr[i + 1]):
            u = nbrs[j]
            if u == v:
                continue
            cu = cmap[u]
            if cu == cv:
                continue
            pos = cursor[k]
            out_nbr[pos] = cu
            out_w[pos] = ew[j] if has_w else 1
            cursor[k] = pos + 1


@njit(**NJIT)
def aggregate_rows(row_start, row_end, nbr, w, marker, base, counts):
    """Merge duplicate neighbours of every bucket row in place (weights summed).

    Row r holds slots [row_start[r], row_end[r]) of nbr/w. Results are packed from slot 0, row after
    row, and counts[r] gets row r's length. marker (Nc,) int64 holds, per coarse node, the last packed
    position + base + 1 it was seen at; `base` must grow across calls so stale marks are never
    mistaken for the current row. Returns the packed length.
    """
    pos = 0
    for r in range(len(row_start)):
        start = pos
        for k in range(row_start[r], row_end[r]):
            cu = nbr[k]
            m = marker[cu] - base - 1
            if m >= start and m < pos:
                w[m] += w[k]
            else:
                wk = w[k]
                marker[cu] = pos + base + 1
                nbr[pos] = cu
                w[pos] = wk
                pos += 1
        counts[r] = pos - start
    return pos


@njit(**NJIT)
def pair_hash(a, b, seed):
    """Hash of the unordered pair {a, b}: the same from either endpoint's row."""
    lo = a if a < b else b
    hi = b if a < b else a
    return mix_hash(np.uint64(lo) ^ mix_hash(np.uint64(hi) ^ np.uint64(seed)))


@njit(**NJIT)
def weight_histogram(local_indptr, nbrs, ew, has_w, row0, hist):
    """Add the chunk's entry weights (self loops skipped) to hist (cap,) int64; weights >= cap - 1
    count in the last bin."""
    cap = len(hist)
    rows = len(local_indptr) - 1
    for i in range(rows):
        v = row0 + i
        for j in range(local_indptr[i], local_indptr[i + 1]):
            if nbrs[j] == v:
                continue
            w = ew[j] if has_w else 1
            hist[w if w < cap - 1 else cap - 1] += 1


@njit(**NJIT)
def sparsify_chunk(local_indptr, nbrs, ew, has_w, row0, wcap, t, keep_h, seed, counts, res_nbrs,
                   res_w, write):
    """Keep entries whose weight (clipped to wcap) is > t, and those equal to t whose pair_hash is
    < keep_h (both directions of an edge are kept or dropped together); self loops dropped.

    counts[i] = kept entries of row i; with `write`, kept (neighbour, weight) are packed into
    res_nbrs / res_w (else they may be empty: a counting pass). Returns the total kept."""
    rows = len(local_indptr) - 1
    pos = 0
    for i in range(rows):
        v = row0 + i
        start = pos
        for j in range(local_indptr[i], local_indptr[i + 1]):
            u = nbrs[j]
            if u == v:
                continue
            w = ew[j] if has_w else 1
            wc = w if w < wcap else wcap
            if wc > t or (wc == t and pair_hash(u, v, seed) < keep_h):
                if write:
                    res_nbrs[pos] = u
                    res_w[pos] = w
                pos += 1
        counts[i] = pos - start
    return pos
