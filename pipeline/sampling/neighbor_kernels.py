"""numba kernels of the neighbor sampler (GraphSAGE), see pipeline/sampling/neighbor.py.

Randomness: every destination node gets its own splitmix64 stream keyed by (seed, layer, position of
the node in the layer's destination list), so results do not depend on the number of threads or the
order in which prange visits nodes. Twins of every kernel live in tests/reference_sampling.py.

All offsets are int64 (stores may hold more than 2^31 edges); `indices` may be int32 or int64 and
read-only (a memmap).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from gstore.numba_config import NJIT, NJIT_PARALLEL

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
EMPTY = -1  # empty slot of the node hash table


@njit(**NJIT)
def mix64(z: np.uint64) -> np.uint64:
    """splitmix64 finaliser: a bijective 64-bit hash."""
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@njit(**NJIT)
def layer_key(seed: np.uint64, layer: np.uint64) -> np.uint64:
    """Key of one layer's streams: all layers of one batch draw independently."""
    return mix64(mix64(seed + GOLDEN) ^ ((layer + np.uint64(1)) * GOLDEN))


@njit(**NJIT)
def stream_start(key: np.uint64, pos: np.uint64) -> np.uint64:
    """Initial state of the stream of the destination at position `pos` of a layer."""
    return mix64(key ^ mix64(pos + GOLDEN))


@njit(**NJIT)
def below(state: np.uint64, n: np.int64):
    """Advance `state`; return (new state, uniform int64 in [0, n)). Bias ~ n / 2^64, negligible."""
    state = state + GOLDEN
    return state, np.int64(mix64(state) % np.uint64(n))


@njit(**NJIT)
def _floyd_positions(out: np.ndarray, start: np.int64, deg: np.int64, k: np.int64,
                     state: np.uint64) -> None:
    """Write k distinct positions in [0, deg) into out[start:start+k], sorted ascending.

    Floyd's algorithm: O(k) draws and O(k) scratch (the output slice itself, kept sorted so membership
    is a binary search), whatever the degree - a hub with 10^7 in-neighbors costs the same as any node.
    """
    filled = np.int64(0)
    for j in range(deg - k, deg):
        state, t = below(state, j + 1)
        lo = start
        hi = start + filled
        while lo < hi:  # lower bound of t in the sorted filled prefix
            mid = (lo + hi) >> 1
            if out[mid] < t:
                lo = mid + 1
            else:
                hi = mid
        if lo < start + filled and out[lo] == t:
            # t already taken: take j instead; j exceeds everything so far, so it goes last
            out[start + filled] = j
        else:
            for m in range(start + filled, lo, -1):
                out[m] = out[m - 1]
            out[lo] = t
        filled += 1


@njit(**NJIT_PARALLEL)
def sample_layer(indptr: np.ndarray, indices: np.ndarray, frontier: np.ndarray, fanout: np.int64,
                 replace: bool, key: np.uint64):
    """Sample the in-neighbors of every node of `frontier` (int64 (n,) dense ids).

    fanout -1 takes every in-neighbor. Without replacement a node takes min(fanout, degree) distinct
    edges; with replacement exactly `fanout` draws (none for degree 0).
    Returns (edge_ids int64 (E,), dst int64 (E,) positions in `frontier`, src int64 (E,) dense ids of
    the sampled sources). Edges are grouped by destination in frontier order; without replacement the
    edges of one destination are in ascending edge-id order.
    """
    n = len(frontier)
    offsets = np.empty(n + 1, dtype=np.int64)
    offsets[0] = 0
    counts = np.empty(n, dtype=np.int64)
    for i in prange(n):
        v = frontier[i]
        deg = indptr[v + 1] - indptr[v]
        if fanout < 0:
            counts[i] = deg
        elif replace:
            counts[i] = fanout if deg > 0 else 0
        else:
            counts[i] = min(fanout, deg)
    for i in range(n):
        offsets[i + 1] = offsets[i] + counts[i]
    total = offsets[n]
    edge_ids = np.empty(total, dtype=np.int64)
    dst = np.empty(total, dtype=np.int64)
    src = np.empty(total, dtype=np.int64)
    for i in prange(n):
        v = frontier[i]
        base = indptr[v]
        deg = indptr[v + 1] - base
        o = offsets[i]
        k = offsets[i + 1] - o
        if k == 0:
            continue
        if fanout < 0 or (k == deg and not replace):
            for j in range(k):
                edge_ids[o + j] = j
        elif replace:
            state = stream_start(key, np.uint64(i))
            for j in range(k):
                state, t = below(state, deg)
                edge_ids[o + j] = t
        else:
            _floyd_positions(edge_ids, o, deg, k, stream_start(key, np.uint64(i)))
        for j in range(o, o + k):
            e = base + edge_ids[j]
            edge_ids[j] = e
            dst[j] = i
            src[j] = indices[e]
    return edge_ids, dst, src


@njit(**NJIT)
def _slot(key: np.int64, mask: np.int64) -> np.int64:
    return np.int64(mix64(np.uint64(key)) & np.uint64(mask))


# The node table is ONE int64 array of 2 * capacity: slot h holds (key, local id) at [2h, 2h+1], so a
# lookup costs one cache miss, not two. Keys of empty slots are EMPTY; capacity is a power of 2.


@njit(**NJIT)
def insert_seeds(seeds: np.ndarray, table: np.ndarray) -> np.int64:
    """Insert seeds[i] -> i into an empty table. Returns the position of the first duplicate seed,
    or -1 when all are unique."""
    mask = np.int64(len(table) // 2 - 1)
    for i in range(len(seeds)):
        s = seeds[i]
        h = _slot(s, mask)
        while table[2 * h] != EMPTY:
            if table[2 * h] == s:
                return i
            h = (h + 1) & mask
        table[2 * h] = s
        table[2 * h + 1] = i
    return -1


@njit(**NJIT)
def relabel_sources(src: np.ndarray, table: np.ndarray, num_nodes: np.int64) -> np.ndarray:
    """Map dense source ids to local ids IN PLACE, giving unseen nodes the next ids in order of first
    appearance.

    The table already holds the `num_nodes` known nodes and must have room for all of `src` at
    load <= 1/2. Returns new_nodes int64 (k,): the newly added dense ids, in local id order.
    """
    mask = np.int64(len(table) // 2 - 1)
    new_nodes = np.empty(len(src), dtype=np.int64)  # pages past k are never touched
    k = 0
    for e in range(len(src)):
        u = src[e]
        h = _slot(u, mask)
        while True:
            cur = table[2 * h]
            if cur == u:
                src[e] = table[2 * h + 1]
                break
            if cur == EMPTY:
                table[2 * h] = u
                table[2 * h + 1] = num_nodes + k
                src[e] = num_nodes + k
                new_nodes[k] = u
                k += 1
                break
            h = (h + 1) & mask
    return new_nodes[:k].copy()


@njit(**NJIT)
def clear_table(nodes: np.ndarray, table: np.ndarray) -> None:
    """Empty the table again, given all the keys it holds (`nodes`).

    Few keys: visit only their slots, O(len(nodes)); slots are found first and cleared afterwards,
    since clearing mid-way would cut probe chains. Many keys: a sequential sweep is cheaper than
    that many cache misses.
    """
    capacity = np.int64(len(table) // 2)
    if len(nodes) * 16 > capacity:
        for h in range(capacity):
            table[2 * h] = EMPTY
        return
    mask = capacity - 1
    slots = np.empty(len(nodes), dtype=np.int64)
    for i in range(len(nodes)):
        u = nodes[i]
        h = _slot(u, mask)
        while table[2 * h] != u:
            h = (h + 1) & mask
        slots[i] = h
    for i in range(len(nodes)):
        table[2 * slots[i]] = EMPTY
