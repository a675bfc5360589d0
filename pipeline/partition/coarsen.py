"""Out-of-core coarsening: size-constrained label propagation, then contraction into a coarse graph
written to the scratch directory.

Label propagation (as in KaHIP/ParHIP's cluster coarsening) shrinks skewed, community-rich graphs far
faster than matching: each sweep streams the CSR in row chunks and moves every node to the heaviest
connected cluster that stays under `bound`. Contraction groups coarse rows into buckets whose edges fit
`chunk_entries`, gathers each bucket in one sequential pass over the fine CSR and merges duplicate
coarse edges (weights summed). Memory: O(N) node arrays + O(chunk_entries) edge buffers.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gstore.progress import NULL_PROGRESS, Progress
from gstore.pipeline.partition.coarsen_kernels import aggregate_rows, contract_scatter, lp_cluster_chunk
from gstore.pipeline.partition.csr_stream import CSRFile, RawAppender, row_ranges


def node_dtype(n: int) -> np.dtype:
    """int32 ids while they fit, int64 beyond 2^31 nodes."""
    return np.dtype(np.int32) if n < 2**31 - 1 else np.dtype(np.int64)


@dataclass
class CoarseLevel:
    """One contraction: `graph` is the coarse graph, `cmap` int (N_fine,) maps fine to coarse nodes."""

    graph: CSRFile
    cmap: np.ndarray


def lp_clustering(g: CSRFile, bound: int, rounds: int, seed: int, chunk_entries: int) -> np.ndarray:
    """Cluster label per node, int (N,) in [0, N): label propagation under cluster weight <= bound."""
    n = g.num_nodes
    dt = node_dtype(n)
    cluster = np.arange(n, dtype=dt)
    vw = g.node_weights()
    cweight = vw.copy()
    # rounds after the first visit only nodes next to a move of the round before (chunks without
    # one are not read): the rest keep their connections, and most of a round's moves come early
    active = np.ones(n, dtype=np.uint8)
    next_active = np.zeros(n, dtype=np.uint8)
    for r in range(rounds):
        moves = 0
        for ch in g.iter_chunks(chunk_entries, wanted=lambda r0, r1: bool(active[r0:r1].any())):
            moves += lp_cluster_chunk(ch.local_indptr, ch.nbrs, ch.ew, ch.has_weights, ch.r0, vw,
                                      cluster, cweight, bound, seed * 1000003 + r, active,
                                      next_active, True)
        if moves < max(1, n // 1000):
            break
        active, next_active = next_active, active
        next_active[:] = 0
    _bin_isolated(g, cluster, vw, bound)
    return cluster


def _bin_isolated(g: CSRFile, cluster: np.ndarray, vw: np.ndarray, bound: int) -> None:
    """Group nodes without neighbours into clusters of about `bound` weight (label propagation never
    moves them, and they cannot affect the cut; R-MAT graphs have many)."""
    iso = np.flatnonzero(np.diff(g.indptr) == 0)
    if len(iso) < 2:
        return
    bins = (np.cumsum(vw[iso]) - 1) // max(1, bound)
    first = np.searchsorted(bins, bins)  # index of each bin's first member
    cluster[iso] = iso[first]


def contract(g: CSRFile, cluster: np.ndarray, scratch: Path, level: int, chunk_entries: int,
             progress: Progress = NULL_PROGRESS) -> CoarseLevel:
    """Contract clusters into coarse nodes (weights summed); coarse graph written under `scratch`."""
    n = g.num_nodes
    present = np.zeros(n, dtype=bool)
    present[cluster] = True
    newid = np.cumsum(present, dtype=np.int64) - 1
    nc = int(newid[-1]) + 1 if n else 0
    del present
    cmap = newid[cluster].astype(node_dtype(nc))
    del newid
    vw = g.node_weights()
    cvw = np.bincount(cmap, weights=vw, minlength=nc).astype(np.int64)
    upper = np.bincount(cmap, weights=np.diff(g.indptr), minlength=nc).astype(np.int64)
    up_ptr = np.zeros(nc + 1, dtype=np.int64)
    np.cumsum(upper, out=up_ptr[1:])
    del upper
    idx_app = RawAppender(Path(scratch) / f"level{level}.indices", node_dtype(nc))
    w_app = RawAppender(Path(scratch) / f"level{level}.weights", np.int64)
    counts = np.zeros(nc, dtype=np.int64)
    marker = np.zeros(nc, dtype=np.int64)
    base = 0
    buckets = list(row_ranges(up_ptr, chunk_entries))
    with progress.phase(f"contract level {level}", total=len(buckets), unit="pass") as bar:
        for a, b in buckets:
            size = int(up_ptr[b] - up_ptr[a])
            nbr = np.empty(size, dtype=node_dtype(nc))
            w = np.empty(size, dtype=np.int64)
            row_start = up_ptr[a:b] - up_ptr[a]
            cursor = row_start.copy()
            for ch in g.iter_chunks(chunk_entries):
                contract_scatter(ch.local_indptr, ch.nbrs, ch.ew, ch.has_weights, ch.r0, cmap, a, b,
                                 cursor, nbr, w)
            k = aggregate_rows(row_start, cursor, nbr, w, marker, base, counts[a:b])
            base += k + 1
            idx_app.append(nbr[:k])
            w_app.append(w[:k])
            del nbr, w
            bar.advance(1)
    indptr = np.zeros(nc + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    graph = CSRFile(indptr=indptr, indices=idx_app.finish(), weights=w_app.finish(), vweights=cvw)
    return CoarseLevel(graph=graph, cmap=cmap)
