"""numba kernels for turning original node ids into dense ids (house rule 1: no I/O, plain arrays).

Ids are handled as int64 *keys*: integer ids are their own key, string ids are keyed by a 64-bit hash
(`hash_strings`). Dense order is sorted key order, so a range of keys is a range of dense ids.

Two remap tables:
  * bitmap: one bit per key in [base, base + 64 * len(bits)), plus `prefix[w]` = set bits before word w;
    dense(key) = prefix[w] + popcount(bits[w] & below-mask). Used when the key range is small.
  * sorted: the sorted unique keys plus a directory over their high bits (see `build_directory`).
Lookups return -1 for keys that are not nodes.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from gstore.numba_config import NJIT, NJIT_PARALLEL
from gstore.search_kernels import lower_bound
from gstore.set_kernels import mark_seen  # noqa: F401  (its one copy; tests reach it here)

INT64_MIN = np.iinfo(np.int64).min


@njit(**NJIT)
def minmax(a: np.ndarray) -> tuple[int, int]:
    """(min, max) of a non-empty int64 array."""
    lo = a[0]
    hi = a[0]
    for i in range(1, len(a)):
        x = a[i]
        if x < lo:
            lo = x
        elif x > hi:
            hi = x
    return lo, hi


@njit(**NJIT)
def _mix64(h: np.uint64) -> np.uint64:
    # splitmix64 finalizer: spreads FNV's weak high bits so hash order looks random
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


@njit(**NJIT_PARALLEL)
def hash_strings(offsets: np.ndarray, utf8: np.ndarray, out: np.ndarray) -> None:
    """out[i] = 64-bit hash (as int64) of string i = utf8[offsets[i]:offsets[i+1]] (FNV-1a + mix)."""
    n = len(offsets) - 1
    for i in prange(n):
        h = np.uint64(0xCBF29CE484222325)
        for j in range(offsets[i], offsets[i + 1]):
            h ^= np.uint64(utf8[j])
            h *= np.uint64(0x100000001B3)
        out[i] = np.int64(_mix64(h ^ np.uint64(offsets[i + 1] - offsets[i])))


@njit(**NJIT, inline="always")
def _same_string(offsets: np.ndarray, utf8: np.ndarray, a: int, b: int) -> bool:
    la = offsets[a + 1] - offsets[a]
    if la != offsets[b + 1] - offsets[b]:
        return False
    pa_, pb = offsets[a], offsets[b]
    for q in range(la):
        if utf8[pa_ + q] != utf8[pb + q]:
            return False
    return True


@njit(**NJIT)
def first_distinct_strings(keys: np.ndarray, offsets: np.ndarray, utf8: np.ndarray,
                           table: np.ndarray, clash: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of each distinct string of a column, in input order.

    keys: int64 hash of each string (offsets int64 (n+1,), utf8 uint8). A repeated key is a
    repeat only when the bytes are equal too: two different strings with one key stop the scan
    with clash[0], clash[1] = their indices (else both stay -1), so a hash collision inside a
    chunk is never merged silently. table: int64 scratch of power-of-two size >= 2 * len(keys),
    any content (it is reset here).
    """
    mask = len(table) - 1
    table[:] = -1
    clash[0] = -1
    clash[1] = -1
    out = np.empty(len(keys), dtype=np.int64)
    m = 0
    for i in range(len(keys)):
        k = keys[i]
        slot = np.int64(_mix64(np.uint64(k)) & np.uint64(mask))
        while True:
            j = table[slot]
            if j < 0:
                table[slot] = i
                out[m] = i
                m += 1
                break
            if keys[j] == k:
                if not _same_string(offsets, utf8, j, i):
                    clash[0] = j
                    clash[1] = i
                    return out[:m]
                break
            slot = (slot + 1) & mask
    return out[:m]


# ---- bucketing by key range ------------------------------------------------------------------------

@njit(**NJIT)
def _upper_bound_pair(bnd_d: np.ndarray, bnd_s: np.ndarray, d: np.int64, s: np.int64) -> int:
    # number of boundaries <= (d, s) in lexicographic order = bucket index
    lo = 0
    hi = len(bnd_d)
    while lo < hi:
        mid = (lo + hi) >> 1
        if bnd_d[mid] < d or (bnd_d[mid] == d and bnd_s[mid] <= s):
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(**NJIT)
def _bucket_of_key(bnd_d: np.ndarray, k: np.int64) -> int:
    # branch-free search over bounds virtually padded with +inf to a power of two (cmov, no
    # mispredicted branches on random keys)
    n = len(bnd_d)
    step = 1
    while step <= n:
        step <<= 1
    b = 0
    step >>= 1
    while step > 0:
        j = b + step - 1
        if j < n and bnd_d[j] <= k:
            b += step
        step >>= 1
    return b


@njit(**NJIT)
def _bucket_by_grid(k: np.int64, grid_lo: np.int64, grid_shift: np.uint64, cell_bucket: np.ndarray) -> int:
    # the first-level bounds sit on cell edges of a uniform grid, so a table lookup finds the bucket
    if k < grid_lo:
        return cell_bucket[0]
    c = (np.uint64(k) - np.uint64(grid_lo)) >> grid_shift
    if c >= np.uint64(len(cell_bucket)):
        return cell_bucket[len(cell_bucket) - 1]
    return cell_bucket[c]


@njit(**NJIT, inline="always")
def _bucket_of_record(d: np.int64, s: np.int64, dst_only: bool, use_grid: bool, grid_lo: np.int64,
                      gshift: np.uint64, cell_bucket: np.ndarray, bnd_d: np.ndarray,
                      bnd_s: np.ndarray) -> int:
    """Bucket of the record (dst d, src s): by grid cell, by dst bound, or by (dst, src) bound."""
    if dst_only and use_grid:
        return _bucket_by_grid(d, grid_lo, gshift, cell_bucket)
    if dst_only:
        return _bucket_of_key(bnd_d, d)
    return _upper_bound_pair(bnd_d, bnd_s, d, s)


@njit(**NJIT)
def scatter_edges(dst: np.ndarray, src: np.ndarray, weight: np.ndarray, has_weight: bool,
                  both_directions: bool, bnd_d: np.ndarray, bnd_s: np.ndarray,
                  grid_lo: np.int64, grid_shift: int, cell_bucket: np.ndarray,
                  out: np.ndarray, out_w: np.ndarray, starts: np.ndarray) -> None:
    """Group edge records (dst, src[, w]) by bucket, keeping input order inside each bucket.

    Bucket b holds records with (bnd[b-1]) <= (dst, src) < (bnd[b]) lexicographically, with
    len(bnd_d) + 1 buckets. both_directions also emits (src, dst) right after each (dst, src).
    out: int64 (m, 2) rows [dst, src], m = len(dst) * (2 if both_directions else 1); out_w float32 (m,).
    starts: int64 (n_buckets + 1,), filled with the start of each bucket's run in `out`.
    cell_bucket (int32, may be empty): when the bounds split on dst only and lie on the edges of
    the grid cells [grid_lo + c << grid_shift, ...), bucket of key k = cell_bucket[cell(k)].
    """
    nb = len(bnd_d) + 1
    use_grid = len(cell_bucket) > 0
    gshift = np.uint64(grid_shift)
    n = len(dst)
    reps = 2 if both_directions else 1
    # first-level bounds split on dst only (src part INT64_MIN): skip the pair compare
    dst_only = True
    for j in range(len(bnd_s)):
        if bnd_s[j] != INT64_MIN:
            dst_only = False
    counts = np.zeros(nb + 1, dtype=np.int64)
    if nb == 1:
        counts[1] = n * reps
        starts[:] = counts
        for i in range(n):
            p = i * reps
            out[p, 0] = dst[i]
            out[p, 1] = src[i]
            if both_directions:
                out[p + 1, 0] = src[i]
                out[p + 1, 1] = dst[i]
            if has_weight:
                out_w[p] = weight[i]
                if both_directions:
                    out_w[p + 1] = weight[i]
        return
    bucket = np.empty(n * reps, dtype=np.int32)
    for i in range(n):
        b = _bucket_of_record(dst[i], src[i], dst_only, use_grid, grid_lo, gshift, cell_bucket,
                              bnd_d, bnd_s)
        bucket[i * reps] = b
        counts[b + 1] += 1
        if both_directions:
            b = _bucket_of_record(src[i], dst[i], dst_only, use_grid, grid_lo, gshift, cell_bucket,
                                  bnd_d, bnd_s)
            bucket[i * reps + 1] = b
            counts[b + 1] += 1
    for b in range(nb):
        counts[b + 1] += counts[b]
    starts[:] = counts
    for i in range(n):
        b = bucket[i * reps]
        p = counts[b]
        counts[b] = p + 1
        out[p, 0] = dst[i]
        out[p, 1] = src[i]
        if has_weight:
            out_w[p] = weight[i]
        if both_directions:
            b = bucket[i * reps + 1]
            p = counts[b]
            counts[b] = p + 1
            out[p, 0] = src[i]
            out[p, 1] = dst[i]
            if has_weight:
                out_w[p] = weight[i]


@njit(**NJIT)
def scatter_keys(keys: np.ndarray, bnd_d: np.ndarray, grid_lo: np.int64, grid_shift: int,
                 cell_bucket: np.ndarray, out: np.ndarray, starts: np.ndarray) -> None:
    """Group int64 keys by bucket (bucket b: bnd_d[b-1] <= key < bnd_d[b]); starts and the grid as
    in scatter_edges."""
    nb = len(bnd_d) + 1
    use_grid = len(cell_bucket) > 0
    gshift = np.uint64(grid_shift)
    bucket = np.empty(len(keys), dtype=np.int32)
    counts = np.zeros(nb + 1, dtype=np.int64)
    for i in range(len(keys)):
        if use_grid:
            b = _bucket_by_grid(keys[i], grid_lo, gshift, cell_bucket)
        else:
            b = _bucket_of_key(bnd_d, keys[i])
        bucket[i] = b
        counts[b + 1] += 1
    for b in range(nb):
        counts[b + 1] += counts[b]
    starts[:] = counts
    for i in range(len(keys)):
        b = bucket[i]
        out[counts[b]] = keys[i]
        counts[b] += 1


# ---- bitmap table ------------------------------------------------------------------------------------

@njit(**NJIT)
def bitmap_set(bits: np.ndarray, base: np.int64, keys: np.ndarray) -> None:
    """Set the bit of every key (all keys must lie in [base, base + 64 * len(bits)))."""
    for i in range(len(keys)):
        off = keys[i] - base
        bits[off >> 6] |= np.uint64(1) << np.uint64(off & 63)


@njit(**NJIT)
def bitmap_or_into(dst_bits: np.ndarray, word_offset: np.int64, src_bits: np.ndarray) -> None:
    """dst_bits[word_offset + w] |= src_bits[w] (growing a bitmap keeps word alignment)."""
    for w in range(len(src_bits)):
        dst_bits[word_offset + w] |= src_bits[w]


@njit(**NJIT)
def _popcount(x: np.uint64) -> np.int64:
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@njit(**NJIT)
def bitmap_prefix(bits: np.ndarray) -> np.ndarray:
    """int64 (len(bits) + 1,): set bits before each word; the last entry is the total."""
    prefix = np.empty(len(bits) + 1, dtype=np.int64)
    acc = 0
    for w in range(len(bits)):
        prefix[w] = acc
        acc += _popcount(bits[w])
    prefix[len(bits)] = acc
    return prefix


@njit(**NJIT_PARALLEL)
def bitmap_lookup(bits: np.ndarray, prefix: np.ndarray, base: np.int64, keys: np.ndarray,
                  out: np.ndarray) -> None:
    """out[i] = dense id of keys[i] (its rank among set bits), or -1 when it is not set. out must
    not overlap keys (numba_config.py)."""
    limit = np.int64(len(bits)) * 64
    for i in prange(len(keys)):
        off = keys[i] - base
        if keys[i] < base or off < 0 or off >= limit:  # off < 0: the subtraction wrapped
            out[i] = -1
            continue
        w = off >> 6
        bit = np.uint64(1) << np.uint64(off & 63)
        word = bits[w]
        if word & bit:
            out[i] = prefix[w] + _popcount(word & (bit - np.uint64(1)))
        else:
            out[i] = -1


@njit(**NJIT)
def bitmap_keys(bits: np.ndarray, prefix: np.ndarray, base: np.int64, w_lo: int, w_hi: int) -> np.ndarray:
    """The set keys of words [w_lo, w_hi), ascending (int64)."""
    out = np.empty(prefix[w_hi] - prefix[w_lo], dtype=np.int64)
    m = 0
    for w in range(w_lo, w_hi):
        word = bits[w]
        b = 0
        while word:
            if word & np.uint64(1):
                out[m] = base + np.int64(w) * 64 + b
                m += 1
            word >>= np.uint64(1)
            b += 1
    return out


@njit(**NJIT)
def bitmap_rank_of_bound(bits: np.ndarray, prefix: np.ndarray, base: np.int64, key: np.int64) -> np.int64:
    """Number of set keys < key (key may lie outside the bitmap)."""
    off = key - base
    if key <= base:
        return 0
    if off < 0:  # wrapped: key is far above the bitmap
        return prefix[len(bits)]
    limit = np.int64(len(bits)) * 64
    if off >= limit:
        return prefix[len(bits)]
    w = off >> 6
    return prefix[w] + _popcount(bits[w] & ((np.uint64(1) << np.uint64(off & 63)) - np.uint64(1)))


# ---- sorted-keys table -------------------------------------------------------------------------------

@njit(**NJIT)
def unique_sorted_inplace(a: np.ndarray) -> int:
    """Compact a sorted array to its distinct values in place; returns how many."""
    if len(a) == 0:
        return 0
    m = 1
    for i in range(1, len(a)):
        if a[i] != a[m - 1]:
            a[m] = a[i]
            m += 1
    return m


@njit(**NJIT)
def build_directory(uniq: np.ndarray, base: np.int64, shift: int, n_dir: int) -> np.ndarray:
    """dir[j] = first index i with ((uniq[i] - base) >> shift) >= j, for j in [0, n_dir]."""
    d = np.empty(n_dir + 1, dtype=np.int64)
    i = 0
    n = len(uniq)
    ushift = np.uint64(shift)
    for j in range(n_dir + 1):
        # unsigned difference: hash keys span the whole int64 range
        while i < n and np.int64((np.uint64(uniq[i]) - np.uint64(base)) >> ushift) < j:
            i += 1
        d[j] = i
    return d


@njit(**NJIT_PARALLEL)
def sorted_lookup(uniq: np.ndarray, directory: np.ndarray, base: np.int64, shift: int,
                  keys: np.ndarray, out: np.ndarray) -> None:
    """out[i] = position of keys[i] in sorted unique `uniq`, or -1 if absent. out must not overlap
    keys (numba_config.py)."""
    n_dir = len(directory) - 1
    n = len(uniq)
    ushift = np.uint64(shift)
    for i in prange(len(keys)):
        k = keys[i]
        out[i] = -1
        if n == 0 or k < uniq[0] or k > uniq[n - 1]:
            continue
        j = np.int64((np.uint64(k) - np.uint64(base)) >> ushift)
        if j >= n_dir:
            lo = directory[n_dir]
            hi = n
        else:
            lo = directory[j]
            hi = directory[j + 1]
        lo = lower_bound(uniq, lo, hi, k)
        if lo < n and uniq[lo] == k:
            out[i] = lo


# ---- string ids ----------------------------------------------------------------------------------

@njit(**NJIT)
def gather_strings(offsets: np.ndarray, utf8: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Strings idx[0], idx[1], ... of a column as a new (lengths int64 (k,), utf8 uint8) pair."""
    lengths = np.empty(len(idx), dtype=np.int64)
    total = 0
    for j in range(len(idx)):
        i = idx[j]
        lengths[j] = offsets[i + 1] - offsets[i]
        total += lengths[j]
    out = np.empty(total, dtype=np.uint8)
    p = 0
    for j in range(len(idx)):
        i = idx[j]
        for q in range(offsets[i], offsets[i + 1]):
            out[p] = utf8[q]
            p += 1
    return lengths, out


@njit(**NJIT)
def dedup_sorted_strings(keys: np.ndarray, order: np.ndarray, offsets: np.ndarray, utf8: np.ndarray,
                         out_lengths: np.ndarray, out_utf8: np.ndarray) -> tuple[int, int, int]:
    """Walk strings in hash order (order: argsort of keys), keep one per hash, check equal hashes
    hold equal bytes. Returns (distinct count, bytes written, index of a colliding string or -1)."""
    m = 0
    p = 0
    prev = -1
    for t in range(len(order)):
        i = order[t]
        if prev >= 0 and keys[i] == keys[prev]:
            if not _same_string(offsets, utf8, i, prev):
                return m, p, i
            continue
        keys_len = offsets[i + 1] - offsets[i]
        out_lengths[m] = keys_len
        for q in range(offsets[i], offsets[i + 1]):
            out_utf8[p] = utf8[q]
            p += 1
        m += 1
        prev = i
    return m, p, -1
