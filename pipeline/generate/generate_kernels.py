"""Numba kernels for the synthetic graph generators and their fast text writers.

Randomness is counter-based: edge e draws SplitMix64 outputs at counters key + (8e + j) * golden
(j = 1..8, a disjoint slice per edge) and node row r from a stream hashed from (key, r), so the
output depends only on the seed, never on the block size or on how threads split the work
(blockwise generation == single-block generation, bit for bit).

Node relabelling uses a keyed bijection on b-bit integers (three rounds of multiply-by-odd, xorshift
and add, all invertible mod 2^b), with cycle walking for ranges that are not powers of two: a random
permutation of [0, n) in O(1) memory. Its parameters come packed in a uint64 array `pk` built by
`gstore.pipeline.generate.seeding.permutation_params`.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from gstore.numba_config import NJIT, NJIT_PARALLEL

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_U53 = 1.0 / 9007199254740992.0     # 2^-53
PERM_ROUNDS = 3                     # pk layout: [n, bits, mask, shift, (mul, mul_inv, add) * rounds]


@njit(**NJIT)
def mix64(z: np.uint64) -> np.uint64:
    """splitmix64 finalizer: a bijective 64-bit hash."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit(**NJIT)
def stream_start(key: np.uint64, index: np.int64) -> np.uint64:
    """Start state of the random stream of item `index` under `key`."""
    return mix64(key ^ mix64(np.uint64(index) * _GOLDEN + np.uint64(1)))


EDGE_SLOTS = 8                       # counter slots per edge: rmat uses <= 5 (scale 40), sbm <= 5
_SLOT_STRIDE = np.uint64((0x9E3779B97F4A7C15 * EDGE_SLOTS) & 0xFFFFFFFFFFFFFFFF)


@njit(**NJIT)
def edge_counter(key: np.uint64, edge: np.int64) -> np.uint64:
    """Counter base of edge `edge`: its draws are mix64(base + j * golden), j = 1..EDGE_SLOTS, i.e.
    its own disjoint slice of one SplitMix64 sequence (cheaper than a hashed stream start)."""
    return key + np.uint64(edge) * _SLOT_STRIDE


@njit(**NJIT)
def uniform(z: np.uint64) -> float:
    """A 64-bit hash -> float64 in [0, 1)."""
    return float(z >> np.uint64(11)) * _U53


# ---- keyed permutation of [0, n) -------------------------------------------------------------
@njit(**NJIT)
def _perm_pow2(x: np.uint64, pk: np.ndarray) -> np.uint64:
    mask, shift = pk[2], pk[3]
    for r in range(PERM_ROUNDS):
        x = (x * pk[4 + 3 * r]) & mask
        x = x ^ (x >> shift)
        x = (x + pk[6 + 3 * r]) & mask
    return x


@njit(**NJIT)
def _perm_pow2_inverse(x: np.uint64, pk: np.ndarray) -> np.uint64:
    bits, mask, shift = pk[1], pk[2], pk[3]
    for r in range(PERM_ROUNDS - 1, -1, -1):
        x = (x - pk[6 + 3 * r]) & mask
        y = x
        done = np.uint64(0)
        while done < bits:              # undo x ^= x >> shift
            x = y ^ (x >> shift)
            done += shift
        x = (x * pk[5 + 3 * r]) & mask
    return x


@njit(**NJIT)
def permute(x: np.int64, pk: np.ndarray) -> np.int64:
    """Image of x in [0, n) under the keyed permutation (cycle walking keeps it in range)."""
    n = pk[0]
    y = _perm_pow2(np.uint64(x), pk)
    while y >= n:
        y = _perm_pow2(y, pk)
    return np.int64(y)


@njit(**NJIT)
def permute_inverse(y: np.int64, pk: np.ndarray) -> np.int64:
    n = pk[0]
    x = _perm_pow2_inverse(np.uint64(y), pk)
    while x >= n:
        x = _perm_pow2_inverse(x, pk)
    return np.int64(x)


@njit(**NJIT_PARALLEL)
def permute_many(x: np.ndarray, pk: np.ndarray, inverse: bool, out: np.ndarray) -> None:
    """out[i] = permute(x[i]) (or its inverse); int64 arrays that must not overlap
    (numba_config.py)."""
    for i in prange(len(x)):
        out[i] = permute_inverse(x[i], pk) if inverse else permute(x[i], pk)


# ---- R-MAT ------------------------------------------------------------------------------------
@njit(**NJIT_PARALLEL)
def rmat_edges(start: np.int64, scale: np.int64, table: np.ndarray, key: np.uint64, pk: np.ndarray,
               do_permute: bool, out_src: np.ndarray, out_dst: np.ndarray) -> None:
    """Edges start .. start+len(out_src)-1 of an R-MAT graph on 2^scale nodes into int64 outputs.

    `table` (uint8, 65536) maps a 16-bit uniform to the quadrants of two levels at once
    (bits 0-1: source bits, bits 2-3: target bits; see rmat.rmat_pair_table), so one 64-bit draw
    serves eight levels with no data-dependent branches. `pk` relabels nodes when `do_permute`.
    """
    for i in prange(len(out_src)):
        s = edge_counter(key, start + i)
        u = np.int64(0)
        v = np.int64(0)
        z = np.uint64(0)
        for level in range(0, scale, 2):
            if level % 8 == 0:
                s += _GOLDEN
                z = mix64(s)
            t = np.int64(table[np.int64(z & np.uint64(0xFFFF))])
            z >>= np.uint64(16)
            u |= (t & 3) << level
            v |= (t >> 2) << level
        if scale % 2 == 1:      # the pair's second level fell past the top bit: drop it
            top = (np.int64(1) << scale) - 1
            u &= top
            v &= top
        if do_permute:
            u = permute(u, pk)
            v = permute(v, pk)
        out_src[i] = u
        out_dst[i] = v


# ---- stochastic block model -------------------------------------------------------------------
@njit(**NJIT)
def community_of(pos: np.int64, n: np.int64, k: np.int64) -> np.int64:
    """Community of position pos: positions are split into k contiguous near-equal ranges."""
    return pos * k // n


@njit(**NJIT)
def community_start(c: np.int64, n: np.int64, k: np.int64) -> np.int64:
    return (c * n + k - 1) // k


@njit(**NJIT)
def _member(c: np.int64, u: float, skew: float, n: np.int64, k: np.int64) -> np.int64:
    """A position in community c; skew > 1 favours low offsets (heavy-tailed degrees)."""
    lo = community_start(c, n, k)
    size = community_start(c + 1, n, k) - lo
    if skew != 1.0:
        u = u ** skew
    off = np.int64(u * size)
    return lo + min(off, size - 1)


@njit(**NJIT_PARALLEL)
def sbm_edges(start: np.int64, n: np.int64, k: np.int64, mu: float, skew: float, key: np.uint64,
              pk: np.ndarray, out_src: np.ndarray, out_dst: np.ndarray) -> None:
    """Edges start .. start+len(out_src)-1 of a planted-partition graph, as dense rows (int64).

    Node row r sits at position permute(r) and belongs to community_of(position). Each edge picks
    its first endpoint's community by size, then the second endpoint's community: the same with
    probability 1 - mu, else uniform among the other k-1. Self loops are moved to the next member.
    """
    for i in prange(len(out_src)):
        s = edge_counter(key, start + i)
        s += _GOLDEN
        cu = community_of(min(np.int64(uniform(mix64(s)) * n), n - 1), n, k)
        s += _GOLDEN
        pu = _member(cu, uniform(mix64(s)), skew, n, k)
        s += _GOLDEN
        cv = cu
        if k > 1 and uniform(mix64(s)) < mu:
            s += _GOLDEN
            cv = (cu + 1 + min(np.int64(uniform(mix64(s)) * (k - 1)), k - 2)) % k
        s += _GOLDEN
        pv = _member(cv, uniform(mix64(s)), skew, n, k)
        if pv == pu:
            lo = community_start(cv, n, k)
            size = community_start(cv + 1, n, k) - lo
            if size > 1:
                pv = lo + (pu - lo + 1) % size
        out_src[i] = permute_inverse(pu, pk)
        out_dst[i] = permute_inverse(pv, pk)


@njit(**NJIT_PARALLEL)
def sbm_nodes(start: np.int64, n: np.int64, k: np.int64, pk: np.ndarray, split_key: np.uint64,
              train_frac: float, val_frac: float, labels: np.ndarray, splits: np.ndarray) -> None:
    """Community label (int64) and split code (int8: 0 train, 1 val, 2 test) of rows start.. ."""
    for i in prange(len(labels)):
        r = start + i
        labels[i] = community_of(permute(r, pk), n, k)
        u = uniform(stream_start(split_key, r))
        splits[i] = 0 if u < train_frac else (1 if u < train_frac + val_frac else 2)


@njit(**NJIT_PARALLEL)
def class_features(start: np.int64, labels: np.ndarray, means: np.ndarray, noise: float,
                   key: np.uint64, out: np.ndarray) -> None:
    """out[i] = means[labels[i]] + noise * N(0, 1) per entry (Box-Muller), float32 (n, F)."""
    f = out.shape[1]
    for i in prange(len(labels)):
        s = stream_start(key, start + i)
        c = labels[i]
        for j in range(0, f, 2):
            s += _GOLDEN
            u1 = 1.0 - uniform(mix64(s))          # (0, 1]: log is finite
            s += _GOLDEN
            u2 = uniform(mix64(s))
            rad = noise * np.sqrt(-2.0 * np.log(u1))
            out[i, j] = means[c, j] + rad * np.cos(2.0 * np.pi * u2)
            if j + 1 < f:
                out[i, j + 1] = means[c, j + 1] + rad * np.sin(2.0 * np.pi * u2)


# ---- fast text formatting ---------------------------------------------------------------------
_POW10 = np.array([10 ** k for k in range(19)], dtype=np.int64)
_DIGIT_PAIRS = np.frombuffer("".join(f"{k:02d}" for k in range(100)).encode(), dtype=np.uint8).copy()


@njit(**NJIT)
def _uint_len(v: np.int64) -> np.int64:
    """Decimal digits of v >= 0 (comparisons, no division: ids are mostly < 10^8)."""
    if v < 100000000:
        if v < 10000:
            return 1 + np.int64(v >= 10) + np.int64(v >= 100) + np.int64(v >= 1000)
        return 5 + np.int64(v >= 100000) + np.int64(v >= 1000000) + np.int64(v >= 10000000)
    k = 9
    while k < 19 and v >= _POW10[k]:
        k += 1
    return k


@njit(**NJIT)
def _int_len(v: np.int64) -> np.int64:
    """Characters of decimal v (sign included)."""
    return np.int64(1) + _uint_len(-v) if v < 0 else _uint_len(v)


@njit(**NJIT)
def _put_int(out: np.ndarray, pos: np.int64, v: np.int64) -> np.int64:
    """Write decimal v at out[pos:], return the position after it (two digits per step, unsigned
    division: cheaper than Python-semantics signed floor division)."""
    if v < 0:
        out[pos] = 45   # '-'
        pos += 1
        v = -v
    end = pos + _uint_len(v)
    j = end
    u = np.uint64(v)
    while u >= 100:
        q = u // np.uint64(100)
        d = np.int64(u - np.uint64(100) * q) * 2
        out[j - 1] = _DIGIT_PAIRS[d + 1]
        out[j - 2] = _DIGIT_PAIRS[d]
        j -= 2
        u = q
    if u >= 10:
        d = np.int64(u) * 2
        out[j - 1] = _DIGIT_PAIRS[d + 1]
        out[j - 2] = _DIGIT_PAIRS[d]
    else:
        out[j - 1] = 48 + np.int64(u)
    return end


@njit(**NJIT_PARALLEL)
def format_int_pairs(a: np.ndarray, b: np.ndarray, delim: np.uint8, out: np.ndarray,
                     piece_lens: np.ndarray) -> None:
    """Write lines "a[i]<delim>b[i]\n" into the uint8 buffer `out`, in len(piece_lens) pieces.

    Piece p holds lines p*n//P .. (p+1)*n//P - 1 at out[p*stride:], stride = len(out)//P, and its
    byte count goes to piece_lens[p]: threads write disjoint regions in one pass and the caller
    writes the pieces in order (writev). `out` must hold P * (ceil(n/P) * max line bytes).
    """
    n = len(a)
    npieces = len(piece_lens)
    stride = len(out) // npieces
    for p in prange(npieces):
        pos = p * stride
        for i in range(p * n // npieces, (p + 1) * n // npieces):
            pos = _put_int(out, pos, a[i])
            out[pos] = delim
            pos = _put_int(out, pos + 1, b[i])
            out[pos] = 10
            pos += 1
        piece_lens[p] = pos - p * stride


_PIECES = 64    # work units per block: enough to balance 2..64 threads


@njit(**NJIT_PARALLEL)
def format_node_rows(ids: np.ndarray, labels: np.ndarray, splits: np.ndarray, split_names: np.ndarray,
                     split_lens: np.ndarray, out: np.ndarray) -> np.int64:
    """Write lines "id,c<label>,<split name>\\n" into `out`; return the byte count.

    split_names: uint8 (3, W) padded names; split_lens: int64 (3,) their lengths.
    """
    n = len(ids)
    sizes = np.zeros(_PIECES + 1, dtype=np.int64)
    for p in prange(_PIECES):
        t = np.int64(0)
        for i in range(p * n // _PIECES, (p + 1) * n // _PIECES):
            t += _int_len(ids[i]) + _int_len(labels[i]) + split_lens[splits[i]] + 4
        sizes[p + 1] = t
    for p in range(_PIECES):
        sizes[p + 1] += sizes[p]
    for p in prange(_PIECES):
        pos = sizes[p]
        for i in range(p * n // _PIECES, (p + 1) * n // _PIECES):
            pos = _put_int(out, pos, ids[i])
            out[pos] = 44       # ','
            out[pos + 1] = 99   # 'c'
            pos = _put_int(out, pos + 2, labels[i])
            out[pos] = 44
            pos += 1
            sp = splits[i]
            for j in range(split_lens[sp]):
                out[pos + j] = split_names[sp, j]
            pos += split_lens[sp]
            out[pos] = 10
            pos += 1
    return sizes[_PIECES]

