"""Plain-Python twins of pipeline/propagation/propagate_kernels.py and a dense reference of A_hat^k X.

The twins loop exactly like the kernels (per row, per edge, per panel) so a test can compare them
on any input; the dense reference builds A_hat as a full matrix from the CSR (tiny graphs only),
so it shares nothing with the blocked algorithm it checks.
"""
from __future__ import annotations

import math

import numpy as np


def node_scales_ref(indptr, weights, use_weights: bool, self_weight: float, mode: int, start: int,
                    out: np.ndarray) -> int:
    bad = 0
    for i in range(len(out)):
        v = start + i
        lo, hi = int(indptr[v]), int(indptr[v + 1])
        d = float(self_weight) + (sum(float(weights[j]) for j in range(lo, hi)) if use_weights else hi - lo)
        if d == 0.0:
            out[i] = 0.0
        elif d < 0.0 and mode == 0:
            out[i] = 0.0
            bad += 1
        else:
            out[i] = 1.0 / math.sqrt(d) if mode == 0 else 1.0 / d
    return bad


def accumulate_panel_ref(indptr, indices, weights, use_weights: bool, row_start: int, row_stop: int,
                         edge_lo: int, edge_hi: int, panel: np.ndarray, panel_start: int,
                         self_weight: float, cursor: np.ndarray, acc: np.ndarray) -> int:
    c0, c1 = panel_start, panel_start + len(panel)
    bad = 0
    for i in range(row_stop - row_start):
        v = row_start + i
        hi = min(int(indptr[v + 1]), edge_hi)
        j = int(cursor[i])
        while j < hi:
            u = int(indices[j])
            if u >= c1:
                break
            if u < c0:
                bad += 1
                j = hi
                break
            w = np.float32(weights[j]) if use_weights else np.float32(1.0)
            acc[i] += w * panel[u - c0]
            j += 1
        cursor[i] = j
        if self_weight != 0.0 and c0 <= v < c1:
            acc[i] += np.float32(self_weight) * panel[v - c0]
    return bad


def blocked_hop_ref(indptr, indices, weights, x: np.ndarray, *, norm: str, self_loops: bool,
                    blocks: list[tuple[int, int, int, int]], panel_rows: int) -> np.ndarray:
    """One hop by the stage's algorithm, with the twins: `blocks` are (start, stop, edge_lo,
    edge_hi) in node order (a hub's slices consecutive), panels of `panel_rows` source rows."""
    n, f = x.shape
    use_w = weights is not None
    w = weights if use_w else np.ones(1, np.float32)
    sw = 1.0 if self_loops else 0.0
    scales = np.empty(n, np.float32)
    node_scales_ref(indptr, w, use_w, sw, 0 if norm == "sym" else 1, 0, scales)
    src = x.astype(np.float32) * (scales[:, None] if norm == "sym" else 1.0)
    out = np.zeros((n, f), np.float32)
    acc = None
    for b, (start, stop, lo, hi) in enumerate(blocks):
        first = b == 0 or blocks[b - 1][0] != start      # a hub's slices share their start
        last = b + 1 == len(blocks) or blocks[b + 1][0] != start
        if first:
            acc = np.zeros((stop - start, f), np.float32)
        cursor = np.array([max(int(indptr[v]), lo) for v in range(start, stop)], np.int64)
        for c0 in range(0, n, panel_rows):
            assert accumulate_panel_ref(indptr, indices, w, use_w, start, stop, lo, hi, src[c0:c0 + panel_rows],
                                        c0, sw if last else 0.0, cursor, acc) == 0
        if last:
            out[start:stop] = acc * scales[start:stop, None]
    return out


def dense_operator(indptr, indices, weights, n: int, *, norm: str, self_loops: bool) -> np.ndarray:
    """A_hat as a dense float64 (N, N) matrix: A[v, u] = sum of w over the edges u -> v (row v of
    the CSR), + I with self loops, then D^-1/2 . D^-1/2 (sym) or D^-1 . (rw), d = row sums."""
    a = np.zeros((n, n))
    for v in range(n):
        for j in range(int(indptr[v]), int(indptr[v + 1])):
            a[v, int(indices[j])] += 1.0 if weights is None else float(weights[j])
    if self_loops:
        a += np.eye(n)
    d = a.sum(axis=1)
    with np.errstate(divide="ignore"):
        inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1.0), 0.0)
    if norm == "sym":
        s = np.sqrt(inv)
        return s[:, None] * a * s[None, :]
    return inv[:, None] * a


def dense_hops(indptr, indices, weights, x: np.ndarray, hops: int, *, norm: str, self_loops: bool,
               dtype: str = "float32") -> list[np.ndarray]:
    """[A_hat X, ..., A_hat^K X], each rounded to `dtype` as stored before the next hop reads it."""
    a = dense_operator(indptr, indices, weights, len(x), norm=norm, self_loops=self_loops)
    out, h = [], x.astype(np.float64)
    for _ in range(hops):
        h = (a @ h).astype(dtype).astype(np.float64)
        out.append(h)
    return out
