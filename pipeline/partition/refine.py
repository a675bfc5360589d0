"""Streaming refinement of a k-way partition: balance-constrained label propagation sweeps over the
CSR in row chunks (positive-gain moves, plus zero-gain moves that even out parts), a rebalancing
stage that empties overweight parts with the smallest connection loss first, and the edge cut.

Memory: the part array (N,), K-sized part weights, and O(chunk_entries) edge buffers.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from gstore.pipeline.partition.csr_stream import CSRFile
from gstore.pipeline.partition.refine_kernels import REBALANCE, REFINE, cut_chunk, refine_chunk

log = logging.getLogger(__name__)

# a refinement sweep that gains less than this share of the cut weight it saw ends the level: on
# R-MAT 2^18 sweeps 4-8 of the finest level gained 0.03 % of the cut together
MIN_SWEEP_GAIN = 1e-4
_NO_FLAGS = np.zeros(0, dtype=np.uint8)


def max_part_weight(total_weight: int, num_parts: int, imbalance: float, max_node_weight: int) -> int:
    """Balance bound: floor((1 + imbalance) * W / K), never below ceil(W/K) or the heaviest node."""
    avg = total_weight / num_parts
    bound = int(np.floor((1.0 + imbalance) * avg + 1e-9))
    return max(bound, int(np.ceil(avg)), int(max_node_weight))


@dataclass
class RefineStats:
    sweeps: int
    moves: int
    gain: int


def refine(g: CSRFile, part: np.ndarray, num_parts: int, lmax: int, chunk_entries: int,
           max_sweeps: int = 8) -> RefineStats:
    """Improve `part` (int (N,), in place) by label-propagation sweeps; stops when moves dry up.

    The first sweep visits every node; later ones only the nodes that moved or have a neighbour
    that moved in the sweep before (row chunks without such a node are not even read). Sweeps stop
    when they move <= N/2000 nodes or gain less than MIN_SWEEP_GAIN of the cut they saw.
    """
    vw = g.node_weights()
    pweight = np.bincount(part, weights=vw, minlength=num_parts).astype(np.int64)
    conn = np.zeros(num_parts, dtype=np.int64)
    touched = np.zeros(num_parts, dtype=np.int64)
    active = np.ones(g.num_nodes, dtype=np.uint8)
    next_active = np.zeros(g.num_nodes, dtype=np.uint8)
    total_moves = total_gain = 0
    sweeps = 0
    for _ in range(max_sweeps):
        sweeps += 1
        moves = gain = cut = 0
        for ch in g.iter_chunks(chunk_entries, wanted=lambda r0, r1: bool(active[r0:r1].any())):
            m, gsum, csum = refine_chunk(ch.local_indptr, ch.nbrs, ch.ew, ch.has_weights, ch.r0, vw,
                                         part, pweight, lmax, conn, touched, REFINE, 0, active,
                                         next_active, True)
            moves += m
            gain += gsum
            cut += csum
        total_moves += moves
        total_gain += gain
        log.debug("refine sweep %d on %d nodes (%d visited): %d moves, gain %d of cut %d", sweeps,
                  g.num_nodes, int(np.count_nonzero(active)), moves, gain, cut)
        if moves <= max(1, g.num_nodes // 2000) or gain <= MIN_SWEEP_GAIN * cut:
            break
        active, next_active = next_active, active
        next_active[:] = 0
    return RefineStats(sweeps=sweeps, moves=total_moves, gain=total_gain)


def rebalance(g: CSRFile, part: np.ndarray, num_parts: int, lmax: int, chunk_entries: int) -> int:
    """Move nodes out of parts heavier than `lmax`, cheapest first; returns the number of moves.

    Sweeps allow growing connection losses (0, 1, 2, 4, ...) and finish with a sweep that sends nodes
    without a neighbouring part with room to the lightest part, so unit-weight graphs always end
    balanced.
    """
    vw = g.node_weights()
    pweight = np.bincount(part, weights=vw, minlength=num_parts).astype(np.int64)
    conn = np.zeros(num_parts, dtype=np.int64)
    touched = np.zeros(num_parts, dtype=np.int64)
    moves = 0
    losses = [0, 1, 2, 4, 8, 16, 64, -1, -1, -1]
    for max_loss in losses:
        if pweight.max(initial=0) <= lmax:
            break
        for ch in g.iter_chunks(chunk_entries):
            m, _, _ = refine_chunk(ch.local_indptr, ch.nbrs, ch.ew, ch.has_weights, ch.r0, vw, part,
                                   pweight, lmax, conn, touched, REBALANCE, max_loss, _NO_FLAGS,
                                   _NO_FLAGS, False)
            moves += m
    return moves


@dataclass
class CutStats:
    cut: int
    total: int

    @property
    def fraction(self) -> float:
        return self.cut / self.total if self.total else 0.0


def edge_cut(g: CSRFile, part: np.ndarray, chunk_entries: int) -> CutStats:
    """Weighted cut of `part` over all entries of `g` (a store CSR: the fraction of stored edges)."""
    cut = total = 0
    for ch in g.iter_chunks(chunk_entries):
        c, t = cut_chunk(ch.local_indptr, ch.nbrs, ch.ew, ch.has_weights, ch.r0, part)
        cut += c
        total += t
    return CutStats(cut=int(cut), total=int(total))
