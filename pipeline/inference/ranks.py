"""Layer-wise inference split across the ranks of a data-parallel job (train/distributed.py).

Rank r of W computes every layer for one contiguous node range (`rank_nodes`: ranges balanced by
in-edges + rows, the two things a chunk's cost grows with) and writes those rows into the layer's
one shared file (pwrite at row offsets into a file rank 0 preallocated: ranges are disjoint, so
no two ranks write a byte twice). A barrier after each layer: the next layer reads rows of every
range. Rank 0 alone creates the scratch dir, finishes (checksums) and publishes the arrays.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from gstore.pipeline.inference.chunks import ChunkPlan, plan_chunks


class RankGroup(Protocol):
    """What inference needs of a job: who it is and a barrier (DistContext has these)."""

    rank: int
    world_size: int

    def barrier(self) -> None: ...


def rank_nodes(indptr: np.ndarray, rank: int, world_size: int) -> tuple[int, int]:
    """Node range [lo, hi) of `rank`: boundary b_r is the first node v with indptr[v] + v >=
    r / W * (E + N) (a bisection: O(log N) reads of a memory-mapped indptr, no N-sized array)."""
    n = len(indptr) - 1
    total = int(indptr[n]) + n

    def boundary(r: int) -> int:
        if r <= 0:
            return 0
        if r >= world_size:
            return n
        target = total * r // world_size
        lo, hi = 0, n
        while lo < hi:
            mid = (lo + hi) // 2
            if int(indptr[mid]) + mid < target:
                lo = mid + 1
            else:
                hi = mid
        return lo

    return boundary(rank), boundary(rank + 1)


def plan_range(indptr: np.ndarray, lo: int, hi: int, max_edges: int, max_rows: int) -> ChunkPlan:
    """plan_chunks of the nodes [lo, hi) only (entries in node ids of the whole graph)."""
    plan = plan_chunks(indptr[lo:hi + 1], max_edges, max_rows)   # edge offsets stay absolute
    plan.starts += lo
    plan.stops += lo
    return plan
