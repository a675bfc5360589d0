"""Out-of-core multilevel partitioning for graphs whose pymetis estimate exceeds the memory budget.

    coarsen (label propagation + contraction, streamed from disk) until the coarse graph fits
    -> pymetis on the coarse graph (node weights = cluster weights, edge weights = summed edges)
    -> project level by level back to the input graph, refining each level with streaming
       balance-constrained label propagation, and rebalance the finest level.

Memory: a few O(N) node arrays per level (cluster maps, node weights, indptr) plus O(budget) edge
buffers; the coarse graphs live in the scratch directory.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from gstore.errors import BudgetError
from gstore.progress import NULL_PROGRESS, Progress
from gstore.pipeline.partition.coarsen import CoarseLevel, contract, lp_clustering
from gstore.pipeline.partition.csr_stream import CSRFile
from gstore.pipeline.partition.metis import (METIS_BYTES_PER_ENTRY, METIS_BYTES_PER_NODE,
                                              metis_bytes_estimate, run_metis)
from gstore.pipeline.partition.refine import max_part_weight, rebalance, refine
from gstore.pipeline.partition.sparsify import load_sparsified

log = logging.getLogger(__name__)

# coarsen no further than this many nodes per part (METIS 5 coarsens k-way to 30 per part): fewer
# leave METIS no room to balance and cut well; a coarsest graph still over the budget is sparsified
COARSEN_FLOOR = 30
MIN_NODES_PER_PART = 8
# clusters may hold at most 1/CLUSTER_FRACTION of a part's weight, so METIS keeps room to balance;
# 4 beat 2, 8 and 16 on SBM, R-MAT and cit-HepPh (bigger clusters are purer, see docs/partition.md)
CLUSTER_FRACTION = 4
LP_ROUNDS = 5
MAX_LEVELS = 30
# sparsify the coarsest graph for METIS only while it keeps at least this share of its entries;
# below it, coarsening goes on towards MIN_NODES_PER_PART (dropping most edges lost more than
# coarsening further did: a DC-SBM at 1/128 of the pymetis estimate cut 1.16x pymetis's)
MIN_KEPT = 0.25


@dataclass
class MultilevelStats:
    """Sizes (nodes, entries) of every level from the input down to the graph given to METIS."""

    levels: list[tuple[int, int]] = field(default_factory=list)
    refine_moves: int = 0
    metis_entries: int = 0
    rebalance_moves: int = 0


def multilevel_partition(g: CSRFile, num_parts: int, *, imbalance: float, seed: int,
                         metis_budget: int, scratch: Path, chunk_entries: int,
                         progress: Progress = NULL_PROGRESS) -> tuple[np.ndarray, MultilevelStats]:
    """Partition the symmetric graph `g` into `num_parts`; returns (int32 (N,) parts, stats)."""
    stats = MultilevelStats(levels=[(g.num_nodes, g.num_entries)])
    vw = g.node_weights()
    total_w = int(vw.sum())
    lmax = max_part_weight(total_w, num_parts, imbalance, int(vw.max(initial=1)))
    del vw
    graphs: list[CSRFile] = [g]
    levels: list[CoarseLevel] = []
    with progress.phase("coarsen", total=None, unit="level") as bar:
        for level in _coarsen(g, num_parts, total_w, lmax, metis_budget, seed, scratch, chunk_entries):
            levels.append(level)
            graphs.append(level.graph)
            stats.levels.append((level.graph.num_nodes, level.graph.num_entries))
            bar.advance(1)
    cur = graphs[-1]
    with progress.phase("metis on coarsest graph", total=None):
        room = _metis_room(cur, metis_budget)
        if room < min(cur.num_entries, cur.num_nodes):
            raise BudgetError(f"the coarsest graph ({cur.num_nodes} nodes, {cur.num_entries} entries)"
                              f" leaves METIS room for only {max(0, room)} edge entries",
                              hint="raise --memory-budget or use fewer --parts")
        mem = load_sparsified(cur, room, chunk_entries, seed)
        if len(mem.adjncy) < cur.num_entries:
            log.info("coarsest graph sparsified for METIS: %d of %d entries kept", len(mem.adjncy),
                     cur.num_entries)
        stats.metis_entries = len(mem.adjncy)
        part = run_metis(mem, num_parts, imbalance, seed)
        del mem
    with progress.phase("uncoarsen + refine", total=len(levels), unit="level") as bar:
        for i in range(len(levels) - 1, -1, -1):
            part = part[levels[i].cmap]
            finer = graphs[i]
            _remove(graphs[i + 1])
            rs = refine(finer, part, num_parts, lmax, chunk_entries)
            stats.refine_moves += rs.moves
            bar.advance(1)
    stats.rebalance_moves = rebalance(g, part, num_parts, lmax, chunk_entries)
    if stats.rebalance_moves:
        stats.refine_moves += refine(g, part, num_parts, lmax, chunk_entries, max_sweeps=2).moves
    return part.astype(np.int32, copy=False), stats


def _metis_room(g: CSRFile, metis_budget: int) -> int:
    """Edge entries METIS can take for `g`'s nodes within the budget."""
    return (metis_budget - METIS_BYTES_PER_NODE * g.num_nodes) // METIS_BYTES_PER_ENTRY


def _coarsen(g: CSRFile, num_parts: int, total_w: int, lmax: int, metis_budget: int, seed: int,
             scratch: Path, chunk_entries: int) -> Iterator[CoarseLevel]:
    """Yield coarse levels until the graph fits METIS's budget, or reaches the node floor with
    enough room left that sparsifying it keeps >= MIN_KEPT of its entries.

    Floors, in turn: COARSEN_FLOOR nodes per part (lowered where the budget cannot hold that many
    nodes with a few entries each), then MIN_NODES_PER_PART, then MIN_NODES_PER_PART without the
    cluster cap. Cluster weights are capped at
    W / floor, so a level never undershoots the floor; a level that shrinks the graph by < 5 %
    retries with clusters twice as big (up to the cap) and then counts as having reached it.
    """
    fits = metis_budget // (METIS_BYTES_PER_NODE + 4 * METIS_BYTES_PER_ENTRY)
    # (node floor, clusters capped at W / floor); the last stage is main's old rule, for budgets
    # too small for anything else: uncapped clusters down to MIN_NODES_PER_PART
    floors = [(max(MIN_NODES_PER_PART * num_parts, min(COARSEN_FLOOR * num_parts, fits)), True),
              (MIN_NODES_PER_PART * num_parts, True), (MIN_NODES_PER_PART * num_parts, False)]
    stage, bound_scale, stalled, depth = 0, 1, False, 0
    cur = g
    while metis_bytes_estimate(cur.num_nodes, cur.num_entries) > metis_budget and depth < MAX_LEVELS:
        node_floor, capped = floors[stage]
        if cur.num_nodes <= node_floor or stalled:
            if stage == len(floors) - 1 or _metis_room(cur, metis_budget) >= MIN_KEPT * cur.num_entries:
                return
            stage, bound_scale, stalled = stage + 1, 1, False
            continue
        cap = max(2, total_w // node_floor) if capped else lmax
        max_vw = int(cur.node_weights().max(initial=1))
        bound = max(max_vw, 2, min((lmax * bound_scale) // CLUSTER_FRACTION, cap))
        cluster = lp_clustering(cur, bound, LP_ROUNDS, seed + 7919 * depth, chunk_entries)
        level = contract(cur, cluster, scratch, depth, chunk_entries)
        del cluster
        shrink = max(level.graph.num_nodes / max(1, cur.num_nodes),
                     level.graph.num_entries / max(1, cur.num_entries))
        log.info("level %d: %d -> %d nodes, %d entries (bound %d)", depth + 1, cur.num_nodes,
                 level.graph.num_nodes, level.graph.num_entries, bound)
        if shrink > 0.95:
            _remove(level.graph)
            if bound >= min(lmax // 2, cap) or level.graph.num_nodes <= num_parts:
                stalled = True
            else:
                bound_scale *= 2
            continue
        depth += 1
        cur = level.graph
        yield level


def _remove(g: CSRFile) -> None:
    for f in (g.indices, g.weights):
        if f is not None and f.path.name.startswith("level"):
            f.path.unlink(missing_ok=True)
