"""Plain-Python twin of pipeline/inference/sum_kernels.py: neighborhood sums by a loop over edges."""
from __future__ import annotations

import math

import numpy as np


def neighbor_sum(indptr, indices, rows, scale, row_start: int, row_stop: int, edge_lo: int,
                 edge_hi: int) -> np.ndarray:
    """float64 (row_stop - row_start, F): sum of scale[u] * rows[u] (scale None: 1) over the edges
    j of row v with edge_lo <= j < edge_hi."""
    rows = np.asarray(rows, dtype=np.float64)
    out = np.zeros((row_stop - row_start, rows.shape[1]))
    for i, v in enumerate(range(row_start, row_stop)):
        for j in range(max(int(indptr[v]), edge_lo), min(int(indptr[v + 1]), edge_hi)):
            u = int(indices[j])
            out[i] += (1.0 if scale is None else float(scale[u])) * rows[u]
    return out


def gcn_source_scales(indptr, start: int, n: int) -> list[float]:
    return [1.0 / math.sqrt(int(indptr[v + 1]) - int(indptr[v]) + 1) for v in range(start, start + n)]
