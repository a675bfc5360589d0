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

import numpy as np

from gstore.errors import BudgetError
from gstore.progress import NULL_PROGRESS, Progress
from gstore.pipeline.partition.coarsen import CoarseLevel, contract, lp_clustering
from gstore.pipeline.partition.csr_stream import CSRFile
from gstore.pipeline.partition.metis import metis_bytes_estimate, run_metis
from gstore.pipeline.partition.refine import max_part_weight, rebalance, refine
from gstore.pipeline.partition.symmetrize import load_in_memory

log = logging.getLogger(__name__)

# never coarsen below this many nodes per part: METIS needs room to balance and cut well
MIN_NODES_PER_PART = 8
# clusters may hold at most 1/CLUSTER_FRACTION of a part's weight, so METIS keeps room to balance;
# 4 beat 2, 8 and 16 on SBM, R-MAT and cit-HepPh (bigger clusters are purer, see docs/partition.md)
CLUSTER_FRACTION = 4
LP_ROUNDS = 5
MAX_LEVELS = 30


@dataclass
class MultilevelStats:
    """Sizes (nodes, entries) of every level from the input down to the graph given to METIS."""

    levels: list[tuple[int, int]] = field(default_factory=list)
    refine_moves: int = 0
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
    cur = g
    bound_scale = 1
    with progress.phase("coarsen", total=None, unit="level") as bar:
        while (metis_bytes_estimate(cur.num_nodes, cur.num_entries) > metis_budget
               and cur.num_nodes > MIN_NODES_PER_PART * num_parts):
            if len(levels) >= MAX_LEVELS:
                raise BudgetError(f"graph still needs {metis_bytes_estimate(cur.num_nodes, cur.num_entries)}"
                                  f" bytes for METIS after {MAX_LEVELS} coarsening levels",
                                  hint="raise --memory-budget")
            max_vw = int(cur.node_weights().max(initial=1))
            bound = max(max_vw, 2, (lmax * bound_scale) // CLUSTER_FRACTION)
            cluster = lp_clustering(cur, bound, LP_ROUNDS, seed + 7919 * len(levels), chunk_entries)
            level = contract(cur, cluster, scratch, len(levels), chunk_entries)
            del cluster
            shrink = max(level.graph.num_nodes / max(1, cur.num_nodes),
                         level.graph.num_entries / max(1, cur.num_entries))
            log.info("level %d: %d -> %d nodes, %d entries (bound %d)", len(levels) + 1, cur.num_nodes,
                     level.graph.num_nodes, level.graph.num_entries, bound)
            if shrink > 0.95:
                # label propagation stalled under this cluster bound: allow bigger clusters
                _remove(level.graph)
                if bound >= lmax // 2 or level.graph.num_nodes <= num_parts:
                    raise BudgetError("coarsening stalled before the graph fit the METIS budget "
                                      f"({cur.num_nodes} nodes, {cur.num_entries} entries left)",
                                      hint="raise --memory-budget")
                bound_scale *= 2
                continue
            levels.append(level)
            graphs.append(level.graph)
            cur = level.graph
            stats.levels.append((cur.num_nodes, cur.num_entries))
            bar.advance(1)
    with progress.phase("metis on coarsest graph", total=None):
        mem = load_in_memory(cur, chunk_entries)
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


def _remove(g: CSRFile) -> None:
    for f in (g.indices, g.weights):
        if f is not None and f.path.name.startswith("level"):
            f.path.unlink(missing_ok=True)
