"""Plain-Python twins of pipeline/generate/generate_kernels.py (slow, obviously correct, for tests)."""
from __future__ import annotations

import math

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
ROUNDS = 3


def mix64(z: int) -> int:
    z &= M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def stream_start(key: int, index: int) -> int:
    return mix64(int(key) ^ mix64((index * GOLDEN + 1) & M64))


def edge_counter(key: int, edge: int) -> int:
    return (int(key) + edge * ((GOLDEN * 8) & M64)) & M64


def uniform(z: int) -> float:
    return (z >> 11) * 2.0 ** -53


def permute(x: int, pk) -> int:
    pk = [int(v) for v in pk]
    n, mask, shift = pk[0], pk[2], pk[3]
    while True:
        for r in range(ROUNDS):
            x = (x * pk[4 + 3 * r]) & mask
            x ^= x >> shift
            x = (x + pk[6 + 3 * r]) & mask
        if x < n:
            return x


def rmat_edge(e: int, scale: int, table, key: int, pk, do_permute: bool) -> tuple[int, int]:
    s = edge_counter(key, e)
    u = v = z = 0
    for level in range(0, scale, 2):
        if level % 8 == 0:
            s = (s + GOLDEN) & M64
            z = mix64(s)
        t = int(table[z & 0xFFFF])
        z >>= 16
        u |= (t & 3) << level
        v |= (t >> 2) << level
    u &= (1 << scale) - 1
    v &= (1 << scale) - 1
    if do_permute:
        u, v = permute(u, pk), permute(v, pk)
    return u, v


def community_bounds(c: int, n: int, k: int) -> tuple[int, int]:
    """Positions [lo, hi) of community c: the positions p with p * k // n == c."""
    members = [p for p in range(n) if p * k // n == c]
    return members[0], members[-1] + 1


def sbm_edge(e: int, n: int, k: int, mu: float, skew: float, key: int, pk) -> tuple[int, int]:
    """Dense rows (src, dst) of SBM edge e."""
    s = edge_counter(key, e)

    def draw() -> float:
        nonlocal s
        s = (s + GOLDEN) & M64
        return uniform(mix64(s))

    def member(c: int, u: float) -> int:
        lo, hi = community_bounds(c, n, k)
        return lo + min(int((u ** skew if skew != 1.0 else u) * (hi - lo)), hi - lo - 1)

    cu = min(int(draw() * n), n - 1) * k // n
    pu = member(cu, draw())
    cv = cu
    mixed = draw() < mu               # drawn even when k == 1
    if k > 1 and mixed:
        cv = (cu + 1 + min(int(draw() * (k - 1)), k - 2)) % k
    pv = member(cv, draw())
    if pv == pu:
        lo, hi = community_bounds(cv, n, k)
        if hi - lo > 1:
            pv = lo + (pu - lo + 1) % (hi - lo)
    inverse = {permute(r, pk): r for r in range(n)}
    return inverse[pu], inverse[pv]


def class_features_row(row: int, label: int, means, noise: float, key: int) -> list[float]:
    s = stream_start(key, row)
    f = len(means[label])
    out = [0.0] * f
    for j in range(0, f, 2):
        s = (s + GOLDEN) & M64
        u1 = 1.0 - uniform(mix64(s))
        s = (s + GOLDEN) & M64
        u2 = uniform(mix64(s))
        rad = noise * math.sqrt(-2.0 * math.log(u1))
        out[j] = means[label][j] + rad * math.cos(2.0 * math.pi * u2)
        if j + 1 < f:
            out[j + 1] = means[label][j + 1] + rad * math.sin(2.0 * math.pi * u2)
    return out


def format_pairs(a, b, delim: str) -> bytes:
    return "".join(f"{int(x)}{delim}{int(y)}\n" for x, y in zip(a, b)).encode()


def format_nodes(ids, labels, splits, names=("train", "val", "test")) -> bytes:
    return "".join(f"{int(i)},c{int(l)},{names[int(s)]}\n" for i, l, s in zip(ids, labels, splits)).encode()
