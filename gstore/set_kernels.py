"""Set operations over dense ids by a bitmap or a counting pass, shared by ingest, the loader, the
samplers and reorder.

np.unique / np.sort over N ids cost O(N log N) (numpy's unique is a sort, or a hash table of N
entries): 82 of the 91 s before the first batch at 33.5M seeds went to one duplicate check. Ids here
are dense, in [0, n), so a bit per id (n / 8 bytes) or a count per key answers the same in O(N).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from gstore.numba_config import NJIT


def new_bitmap(n: int) -> np.ndarray:
    """A zeroed uint64 bitset of n bits ((n + 63) // 64 words)."""
    return np.zeros((int(n) + 63) // 64, dtype=np.uint64)


@njit(**NJIT)
def mark_seen(seen: np.ndarray, dense: np.ndarray) -> int:
    """Set bit dense[i] of the uint64 bitset `seen`; returns the first i already set (or -1).
    Stops at the first repeat, so the caller can report it."""
    for i in range(len(dense)):
        d = dense[i]
        bit = np.uint64(1) << np.uint64(d & 63)
        if seen[d >> 6] & bit:
            return i
        seen[d >> 6] |= bit
    return -1


@njit(**NJIT)
def mark_all(seen: np.ndarray, dense: np.ndarray) -> None:
    """Set bit dense[i] of `seen` for every i (repeats allowed)."""
    for i in range(len(dense)):
        d = dense[i]
        seen[d >> 6] |= np.uint64(1) << np.uint64(d & 63)


@njit(**NJIT)
def count_bits(seen: np.ndarray) -> np.int64:
    total = np.int64(0)
    for w in range(len(seen)):
        x = seen[w]
        while x:
            x &= x - np.uint64(1)
            total += 1
    return total


@njit(**NJIT)
def bits_to_ids(seen: np.ndarray, out: np.ndarray) -> np.int64:
    """Write the set bits of `seen` ascending into `out` (int64, at least count_bits long);
    returns how many were written. A sorted unique id list in one pass over n / 64 words."""
    k = np.int64(0)
    for w in range(len(seen)):
        x = seen[w]
        if x == 0:
            continue
        base = np.int64(w) << 6
        for b in range(64):
            if (x >> np.uint64(b)) & np.uint64(1):
                out[k] = base + b
                k += 1
    return k


def sorted_unique_ids(ids: np.ndarray, n: int) -> np.ndarray:
    """int64 sorted distinct values of `ids` (ints in [0, n)): np.unique by a bitmap, O(len + n/64)."""
    seen = new_bitmap(n)
    mark_all(seen, np.ascontiguousarray(ids, dtype=np.int64))
    out = np.empty(int(count_bits(seen)), dtype=np.int64)
    bits_to_ids(seen, out)
    return out


def first_duplicate(ids: np.ndarray, n: int) -> int:
    """Index of the first value of `ids` (ints in [0, n)) that repeats an earlier one, or -1."""
    return int(mark_seen(new_bitmap(n), np.ascontiguousarray(ids, dtype=np.int64)))


@njit(**NJIT)
def counting_groups(keys: np.ndarray, num_keys: np.int64, starts: np.ndarray, members: np.ndarray) -> None:
    """Stable counting sort of positions by key: group g is members[starts[g]:starts[g+1]], the
    positions i with keys[i] == g in ascending i. keys in [0, num_keys); starts (num_keys + 1,)."""
    starts[:] = 0
    for i in range(len(keys)):
        starts[keys[i] + 1] += 1
    for g in range(num_keys):
        starts[g + 1] += starts[g]
    fill = starts[:-1].copy()
    for i in range(len(keys)):
        g = keys[i]
        members[fill[g]] = i
        fill[g] += 1


@njit(**NJIT)
def first_pairs(src: np.ndarray, dst: np.ndarray, n: np.int64, keep: np.ndarray) -> np.int64:
    """keep[j] = True where pair (src[j], dst[j]) (both in [0, n)) occurs for the first time in j
    order; returns the count kept. Counting pass by dst, then a stamp per src: O(m + n), no sort of
    the m keys src * n + dst (which need not fit an int64 either)."""
    m = len(src)
    starts = np.empty(n + 1, dtype=np.int64)
    order = np.empty(m, dtype=np.int64)
    counting_groups(dst, n, starts, order)
    stamp = np.full(n, -1, dtype=np.int64)
    kept = np.int64(0)
    for d in range(n):
        for k in range(starts[d], starts[d + 1]):
            j = order[k]
            s = src[j]
            if stamp[s] == d:
                keep[j] = False
            else:
                stamp[s] = d
                keep[j] = True
                kept += 1
    return kept


def first_pair_positions(src: np.ndarray, dst: np.ndarray, n: int) -> np.ndarray:
    """int64 ascending positions j of the first occurrence of each distinct (src[j], dst[j])."""
    src = np.ascontiguousarray(src, dtype=np.int64)
    dst = np.ascontiguousarray(dst, dtype=np.int64)
    keep = np.empty(len(src), dtype=np.bool_)
    first_pairs(src, dst, np.int64(n), keep)
    return np.flatnonzero(keep)
