"""pymetis on an in-memory symmetric graph, and the memory estimate `auto` decides by.

pymetis (64-bit idx_t) needs about 135 bytes per stored entry of the symmetric graph (measured: the
CSR copies, METIS's coarsening hierarchy and edge weights) plus a per-node overhead.
"""
from __future__ import annotations

import numpy as np

from gstore.errors import OptionError
from gstore.pipeline.partition.symmetrize import InMemoryGraph

METIS_BYTES_PER_ENTRY = 135
METIS_BYTES_PER_NODE = 200


def metis_bytes_estimate(num_nodes: int, sym_entries: int) -> int:
    """Estimated peak bytes of pymetis on a symmetric graph with `sym_entries` stored entries."""
    return METIS_BYTES_PER_ENTRY * int(sym_entries) + METIS_BYTES_PER_NODE * int(num_nodes)


def run_metis(g: InMemoryGraph, num_parts: int, imbalance: float, seed: int) -> np.ndarray:
    """k-way METIS partition of `g`; int32 (N,) part per node."""
    import pymetis

    n = len(g.xadj) - 1
    if num_parts < 1:
        raise OptionError(f"--parts must be >= 1, got {num_parts}")
    if num_parts == 1 or n == 0:
        return np.zeros(n, dtype=np.int32)
    if num_parts > n:
        raise OptionError(f"cannot split {n} nodes into {num_parts} parts", hint="use fewer --parts")
    opts = pymetis.Options(ufactor=max(1, int(round(imbalance * 1000))), seed=int(seed) & 0x7FFFFFFF)
    adjacency = pymetis.CSRAdjacency(np.ascontiguousarray(g.xadj, dtype=np.int64),
                                     np.ascontiguousarray(g.adjncy, dtype=np.int64))
    ew = None if g.eweights is None else np.ascontiguousarray(g.eweights, dtype=np.int64)
    vw = None if g.vweights is None else np.ascontiguousarray(g.vweights, dtype=np.int64)
    result = pymetis.part_graph(num_parts, adjacency, eweights=ew, vweights=vw, options=opts)
    return np.frombuffer(result.vertex_part, dtype=np.int64).astype(np.int32)
