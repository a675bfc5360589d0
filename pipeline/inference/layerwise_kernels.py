"""numba kernels of layer-wise inference (no I/O; the stage module is pipeline/inference/layerwise.py)."""
from __future__ import annotations

import numpy as np
from numba import njit

from gstore.numba_config import NJIT


# serial: a few loads per node, memory-bound; a parallel launch cost more than the loop (1.3 ms vs
# 0.1 ms per small chunk on 2 busy cores)
@njit(**NJIT)
def in_degrees(indptr: np.ndarray, nodes: np.ndarray, out: np.ndarray) -> None:
    """out[i] = indptr[nodes[i] + 1] - indptr[nodes[i]] as float32: the full in-degree of each
    node, the `degree_src` a model's normalisation reads. indptr int64 (N+1,) (a memmap is fine),
    nodes int64 (n,) in [0, N) (checked by the caller), out float32 (>= n,)."""
    for i in range(nodes.shape[0]):
        v = nodes[i]
        out[i] = np.float32(indptr[v + 1] - indptr[v])
