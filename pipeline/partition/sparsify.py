"""The coarsest graph for pymetis, sparsified to fit the memory budget when coarsening had to stop
before the graph's edges fit.

Hubs keep coarse graphs dense: clusters around a hub touch thousands of others, so on heavy-tailed
graphs the entries shrink far slower than the nodes, and coarsening until the entries fit the budget
leaves METIS a few nodes per part (cit-HepPh at K=64 and 1/32 of the pymetis estimate: 210 nodes,
cut 1.14x pymetis's). The multilevel loop stops at a node floor instead and this module drops the
lightest coarse edges: every edge heavier than a threshold t stays, edges of weight exactly t stay
by a hash of the unordered pair (both directions together, so the graph stays symmetric), lighter
ones go. Refinement on the way back up sees every edge again.

Memory: a weight histogram (HIST_BINS int64) plus the kept graph, which is what METIS is budgeted for.
"""
from __future__ import annotations

import numpy as np

from gstore.pipeline.partition.coarsen_kernels import sparsify_chunk, weight_histogram
from gstore.pipeline.partition.csr_stream import CSRFile
from gstore.pipeline.partition.symmetrize import InMemoryGraph, load_in_memory

HIST_BINS = 1 << 16
HASH_RANGE = float(2**64)


def keep_rule(hist: np.ndarray, max_entries: int) -> tuple[int, float]:
    """(t, fraction of weight-t entries to keep) so that at most `max_entries` entries stay.

    hist int64 (B,): entries per weight (last bin: weights >= B - 1, counted as weight B - 1)."""
    above = 0
    for t in range(len(hist) - 1, -1, -1):
        if above + hist[t] > max_entries:
            return t, (max_entries - above) / float(hist[t])
        above += int(hist[t])
    return 0, 1.0


def load_sparsified(g: CSRFile, max_entries: int, chunk_entries: int, seed: int) -> InMemoryGraph:
    """`g` in RAM with at most about `max_entries` entries kept (heaviest first, ties by pair hash);
    the whole graph when it already fits. Self loops dropped."""
    if g.num_entries <= max_entries:
        return load_in_memory(g, chunk_entries)
    hist = np.zeros(HIST_BINS, dtype=np.int64)
    for ch in g.iter_chunks(chunk_entries):
        weight_histogram(ch.local_indptr, ch.nbrs, ch.ew, ch.has_weights, ch.r0, hist)
    t, frac = keep_rule(hist, max_entries)
    keep_h = np.uint64(min(2**64 - 1, int(frac * HASH_RANGE)))
    n = g.num_nodes
    counts = np.zeros(n, dtype=np.int64)
    args = (HIST_BINS - 1, t, keep_h, np.uint64(seed))
    kept = 0
    for ch in g.iter_chunks(chunk_entries):   # counting pass: the kept size is exact
        kept += sparsify_chunk(ch.local_indptr, ch.nbrs, ch.ew, ch.has_weights, ch.r0, *args,
                               counts[ch.r0:ch.r1], _EMPTY, _EMPTY, False)
    adj = np.empty(kept, dtype=np.int64)
    ew = np.empty(kept, dtype=np.int64)
    pos = 0
    for ch in g.iter_chunks(chunk_entries):
        pos += sparsify_chunk(ch.local_indptr, ch.nbrs, ch.ew, ch.has_weights, ch.r0, *args,
                              counts[ch.r0:ch.r1], adj[pos:], ew[pos:], True)
    xadj = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=xadj[1:])
    return InMemoryGraph(xadj=xadj, adjncy=adj, eweights=ew, vweights=g.vweights)


_EMPTY = np.zeros(0, dtype=np.int64)
