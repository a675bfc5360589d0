"""The graph the partitioner works on: the store's CSR made symmetric, without self loops.

Undirected stores already hold both directions, so their CSR is used as is (kernels skip self loops).
A directed store (rows = destinations, entries = in-neighbours) is symmetrised out of core:

1. out-degrees by streaming `indices` (O(N) counts);
2. the transpose (out-CSR) written to scratch in row buckets of at most `chunk_entries` entries, each
   bucket one sequential pass over the in-CSR;
3. a streaming merge of in- and out-rows into the symmetric CSR, edge weight = multiplicity (1 or 2;
   more for a pair stored several times in a store built without dedup),
   so the weighted cut of the symmetric graph equals the cut counted on the directed store.

Memory: O(N) node arrays plus O(chunk_entries) edge buffers; disk: up to 3x the store's indices.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gstore.progress import NULL_PROGRESS, Progress
from gstore.pipeline.partition.csr_stream import CSRFile, RawAppender, row_ranges, store_array_file
from gstore.pipeline.partition.symmetrize_kernels import drop_self_loops, merge_rows, scatter_transpose


def store_csr(store) -> CSRFile:
    """The store's own CSR (rows = destinations) as a streaming CSRFile; indptr loaded into RAM."""
    indptr = np.array(store.csr().indptr, dtype=np.int64)   # csr(): structurally checked first
    weights = None  # store float weights are not used for partitioning (cut counts edges)
    return CSRFile(indptr=indptr, indices=store_array_file(store, "indices"), weights=weights)


def symmetric_graph(store, scratch: Path, chunk_entries: int,
                    progress: Progress = NULL_PROGRESS) -> CSRFile:
    """The symmetric graph of `store` (the store's CSR itself when undirected)."""
    csr = store_csr(store)
    if not store.directed:
        return csr
    return symmetrize_csr(csr, scratch, chunk_entries, progress)


# a merged weight counts one neighbour's entries in both directions of a row: a store built without
# dedup (multi-edges) can hold one pair 2^31 times, and an int32 weight would wrap negative
INT32_WEIGHT_MAX_ROW = 2**31 - 1


def multiplicity_dtype(row_entries: np.ndarray) -> np.dtype:
    """Weight dtype of the symmetric graph: int32 while no row (in- plus out-entries, int (N,))
    exceeds INT32_WEIGHT_MAX_ROW entries (half the scratch of int64), else int64."""
    return np.dtype(np.int32) if int(row_entries.max(initial=0)) <= INT32_WEIGHT_MAX_ROW else np.dtype(np.int64)


def symmetrize_csr(csr: CSRFile, scratch: Path, chunk_entries: int,
                   progress: Progress = NULL_PROGRESS) -> CSRFile:
    """The symmetric graph of the directed in-edge CSR `csr` (steps 1-3 of the module doc), written
    under `scratch`: weights = multiplicity (1 or 2), self loops dropped, rows sorted."""
    n = csr.num_nodes
    outdeg = np.zeros(n, dtype=np.int64)
    with progress.phase("symmetrise: degrees", total=csr.num_entries, unit="edge", unit_scale=True) as bar:
        for ch in csr.iter_chunks(chunk_entries):
            outdeg += np.bincount(ch.nbrs, minlength=n)
            bar.advance(len(ch.nbrs))
    out_indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(outdeg, out=out_indptr[1:])
    del outdeg
    out_app = RawAppender(Path(scratch) / "transpose.indices", csr.indices.dtype)
    buckets = list(row_ranges(out_indptr, chunk_entries))
    with progress.phase("symmetrise: transpose", total=len(buckets), unit="pass") as bar:
        for a, b in buckets:
            size = int(out_indptr[b] - out_indptr[a])
            buf = np.empty(size, dtype=csr.indices.dtype)
            cursor = out_indptr[a:b] - out_indptr[a]
            for ch in csr.iter_chunks(chunk_entries):
                scatter_transpose(ch.local_indptr, ch.nbrs, ch.r0, a, b, cursor, buf)
            out_app.append(buf)
            del buf
            bar.advance(1)
    out_csr = CSRFile(indptr=out_indptr, indices=out_app.finish())

    both = csr.indptr + out_indptr
    w_dtype = multiplicity_dtype(np.diff(both))
    sym_idx = RawAppender(Path(scratch) / "sym.indices", csr.indices.dtype)
    sym_w = RawAppender(Path(scratch) / "sym.weights", w_dtype)
    counts = np.zeros(n, dtype=np.int64)
    with progress.phase("symmetrise: merge", total=n, unit="node", unit_scale=True) as bar:
        for r0, r1 in row_ranges(both, chunk_entries):
            a = csr.read_rows(r0, r1)
            o = out_csr.read_rows(r0, r1)
            cap = len(a.nbrs) + len(o.nbrs)
            res_n = np.empty(cap, dtype=csr.indices.dtype)
            res_w = np.empty(cap, dtype=w_dtype)
            k = merge_rows(a.local_indptr, a.nbrs, o.local_indptr, o.nbrs, r0, counts[r0:r1], res_n, res_w)
            sym_idx.append(res_n[:k])
            sym_w.append(res_w[:k])
            bar.advance(r1 - r0)
    out_csr.indices.path.unlink(missing_ok=True)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return CSRFile(indptr=indptr, indices=sym_idx.finish(), weights=sym_w.finish())


@dataclass
class InMemoryGraph:
    """A symmetric graph in RAM for pymetis. xadj int64 (N+1,), adjncy int64 (M,), eweights int64 (M,)
    or None, vweights int64 (N,) or None. No self loops."""

    xadj: np.ndarray
    adjncy: np.ndarray
    eweights: np.ndarray | None
    vweights: np.ndarray | None


def load_in_memory(g: CSRFile, chunk_entries: int) -> InMemoryGraph:
    """Read a CSRFile fully into RAM, dropping self loops (only for graphs that fit the budget)."""
    n = g.num_nodes
    counts = np.zeros(n, dtype=np.int64)
    adj = np.empty(g.num_entries, dtype=np.int64)
    ew = np.empty(g.num_entries, dtype=np.int64) if g.weights is not None else None
    pos = 0
    dummy = np.zeros(0, dtype=np.int64)
    for ch in g.iter_chunks(chunk_entries):
        k = drop_self_loops(ch.local_indptr, ch.nbrs, ch.ew, ch.has_weights, ch.r0, counts[ch.r0:ch.r1],
                            adj[pos:], ew[pos:] if ew is not None else dummy)
        pos += k
    xadj = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=xadj[1:])
    adj = adj[:pos]  # a contiguous view: no second copy of the edges
    if ew is not None:
        ew = ew[:pos]
    return InMemoryGraph(xadj=xadj, adjncy=adj, eweights=ew, vweights=g.vweights)
