"""numba kernels of layer-wise inference's sum path: neighborhood sums read straight from the rows.

A sum-aggregating layer (SAGE's mean, GCN's normalised sum) needs, per destination v, only
sum_{u in row v} s_u x_u over its CSR row. The block path builds a sampled block, relabels its
sources, gathers their rows into a buffer and multiplies a sparse matrix by it; these kernels read
x_u where it lies (the store's memory-mapped features or the previous layer's array) and add it
into v's accumulator: one random row read per entry and nothing else.

Rows are passed as stored: float32, or float16 as a uint16 view (numba has no CPU float16), decoded
exactly by `half_to_float` (every bit pattern: subnormals, signed zeros, Inf and NaN). Measured on
the 2-core machine (1M nodes, 32M entries, 64 columns, one thread, CPU time per entry): float32
rows 100-120 ns; float16 decoded here 226 ns, by a 65,536-entry table 350-400 ns, by branches 400.
`nogil` and parallel over destination rows (each row is one thread's: no write races). No I/O.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from gstore.numba_config import NJIT, NJIT_PARALLEL


@intrinsic
def _bits_as_float(typingctx, bits):
    """The float32 whose bit pattern is the uint32 `bits` (a register move)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.uint32), codegen


@intrinsic
def _float_as_bits(typingctx, value):
    """The uint32 bit pattern of the float32 `value`."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.uint32(types.float32), codegen


@njit(inline="always", **NJIT)
def half_to_float(h) -> np.float32:
    """The float32 value of the float16 bit pattern h (uint16), exactly: the 15 magnitude bits
    moved into float32 position and scaled by 2^112 (which renormalises subnormals), Inf/NaN's
    exponent restored, the sign copied."""
    x = np.uint32(h)
    f = _bits_as_float((x & np.uint32(0x7fff)) << np.uint32(13)) * np.float32(5.192296858534828e+33)
    inf_nan = np.uint32(255 << 23) if f >= np.float32(65536.0) else np.uint32(0)
    return _bits_as_float(_float_as_bits(f) | inf_nan | ((x & np.uint32(0x8000)) << np.uint32(16)))


@njit(**NJIT_PARALLEL)
def halves_to_floats(bits: np.ndarray, out: np.ndarray) -> None:
    """out[i] = half_to_float(bits[i]); bits uint16 (n,), out float32 (n,) (tests check every pattern)."""
    for i in prange(bits.shape[0]):
        out[i] = half_to_float(bits[i])


@njit(**NJIT_PARALLEL)
def neighbor_sum_f32(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray, scale: np.ndarray,
                     use_scale: bool, row_start: int, row_stop: int, edge_lo: int, edge_hi: int,
                     acc: np.ndarray) -> None:
    """acc[i] += sum of scale[u] * rows[u] (scale 1 unless use_scale) over the edges j of row
    v = row_start + i with edge_lo <= j < edge_hi (a hub's slice; a whole chunk passes
    indptr[row_start], indptr[row_stop]).

    indptr int64 (N+1,); indices int32/int64 (E,) in [0, N) (the store's checked CSR); rows float32
    (N, F); scale float32 (N,) or a 1-element dummy; acc float32 (>= row_stop - row_start, F)."""
    f = rows.shape[1]
    for i in prange(row_stop - row_start):
        v = row_start + i
        lo = max(indptr[v], edge_lo)
        hi = min(indptr[v + 1], edge_hi)
        for j in range(lo, hi):
            u = indices[j]
            s = scale[u] if use_scale else np.float32(1.0)
            for k in range(f):
                acc[i, k] += s * rows[u, k]


@njit(**NJIT_PARALLEL)
def neighbor_sum_f16(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray, scale: np.ndarray,
                     use_scale: bool, row_start: int, row_stop: int, edge_lo: int, edge_hi: int,
                     acc: np.ndarray) -> None:
    """neighbor_sum_f32 for float16 rows given as their uint16 (N, F) bits."""
    f = rows.shape[1]
    for i in prange(row_stop - row_start):
        v = row_start + i
        lo = max(indptr[v], edge_lo)
        hi = min(indptr[v + 1], edge_hi)
        for j in range(lo, hi):
            u = indices[j]
            s = scale[u] if use_scale else np.float32(1.0)
            for k in range(f):
                acc[i, k] += s * half_to_float(rows[u, k])


@njit(**NJIT_PARALLEL)
def gcn_source_scales(indptr: np.ndarray, start: int, out: np.ndarray) -> None:
    """out[i] = 1 / sqrt(d_v + 1) for v = start + i, d_v = indptr[v+1] - indptr[v] (GCN's source
    factor with its self-loop); out float32 (n,)."""
    for i in prange(out.shape[0]):
        v = start + i
        out[i] = np.float32(1.0 / np.sqrt(np.float64(indptr[v + 1] - indptr[v]) + 1.0))
