"""numba kernels for partition refinement, rebalancing and edge-cut counting, one CSR row chunk at a
time (`local_indptr`, `nbrs`, `ew`/`has_w`, `row0` as in coarsen_kernels). Self loops are skipped.
No I/O.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from gstore.numba_config import NJIT

REFINE = 0
REBALANCE = 1


@njit(**NJIT)
def refine_chunk(local_indptr, nbrs, ew, has_w, row0, vw, part, pweight, lmax, conn, touched, mode,
                 max_loss, active, next_active, use_active):
    """One balance-constrained label-propagation sweep over the chunk's rows.

    mode REFINE: v moves to the neighbouring part q with the largest connection weight when that
    beats its own part's (gain > 0), or ties it while making the two parts more even; q must stay
    within lmax. mode REBALANCE: only nodes of overweight parts (pweight > lmax) move, to the best
    connected part with room, if they lose at most `max_loss` connection weight; with max_loss < 0 a
    node with no such neighbour part goes to the lightest part.
    part (N,) and pweight (K,) are updated in place; conn (K,) int64 must be zero on entry and is left
    zero; touched (K,) int64 is scratch.
    With use_active, only rows v with active[v] (uint8 (N,)) are visited, and a node that moves sets
    next_active (uint8 (N,)) for itself and its neighbours: a node none of whose neighbours moved
    keeps its connections, so re-evaluating it can only find moves that balance blocked before.
    Returns (moves, total gain, cut weight of the visited rows before their moves).
    """
    rows = len(local_indptr) - 1
    k_parts = len(pweight)
    maxdeg = 0
    for i in range(rows):
        d = local_indptr[i + 1] - local_indptr[i]
        if d > maxdeg:
            maxdeg = d
    qbuf = np.empty(maxdeg, dtype=np.int64)
    moves = 0
    gain_sum = 0
    cut_sum = 0
    for i in range(rows):
        v = row0 + i
        if use_active and active[v] == 0:
            continue
        p = part[v]
        if mode == REBALANCE and pweight[p] <= lmax:
            continue
        wv = vw[v]
        nt = 0
        row_w = 0
        lo = local_indptr[i]
        # gather the neighbours' parts first: independent loads overlap their cache misses, where
        # the branchy loop below would wait for each (2-4x faster rows on 10^7+ nodes)
        for j in range(lo, local_indptr[i + 1]):
            qbuf[j - lo] = part[nbrs[j]]
        for j in range(lo, local_indptr[i + 1]):
            u = nbrs[j]
            if u == v:
                continue
            q = qbuf[j - lo]
            if conn[q] == 0:
                touched[nt] = q
                nt += 1
            w = ew[j] if has_w else 1
            conn[q] += w
            row_w += w
        own = conn[p]
        cut_sum += row_w - own
        best = -1
        best_conn = -1
        for t in range(nt):
            q = touched[t]
            if q == p or pweight[q] + wv > lmax:
                continue
            c = conn[q]
            if c > best_conn or (c == best_conn and pweight[q] < pweight[best]):
                best = q
                best_conn = c
        for t in range(nt):
            conn[touched[t]] = 0
        target = -1
        if mode == REFINE:
            if best >= 0:
                gain = best_conn - own
                if gain > 0 or (gain == 0 and pweight[best] + wv < pweight[p]):
                    target = best
        else:
            if best >= 0 and (max_loss < 0 or own - best_conn <= max_loss):
                target = best
            elif max_loss < 0:
                light = 0
                for q in range(1, k_parts):
                    if pweight[q] < pweight[light]:
                        light = q
                if light != p and pweight[light] + wv <= pweight[p]:
                    target = light
                    best_conn = 0
        if target >= 0:
            pweight[p] -= wv
            pweight[target] += wv
            part[v] = target
            moves += 1
            gain_sum += best_conn - own
            if use_active:
                next_active[v] = 1
                for j in range(local_indptr[i], local_indptr[i + 1]):
                    next_active[nbrs[j]] = 1
    return moves, gain_sum, cut_sum


@njit(**NJIT)
def cut_chunk(local_indptr, nbrs, ew, has_w, row0, part):
    """(cut weight, total weight) of the chunk's entries; self loops count in the total only."""
    rows = len(local_indptr) - 1
    cut = 0
    total = 0
    for i in range(rows):
        v = row0 + i
        pv = part[v]
        for j in range(local_indptr[i], local_indptr[i + 1]):
            w = ew[j] if has_w else 1
            total += w
            if part[nbrs[j]] != pv:
                cut += w
    return cut, total
