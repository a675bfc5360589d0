"""Graph500-style R-MAT edge lists of any size, streamed to disk block by block in flat memory.

    g = generate_rmat("edges.csv", scale=20, edge_factor=16, seed=1)   # 2^20 nodes, 16 * 2^20 edges

Edges are i.i.d. (self loops and duplicates kept, as in Graph500; ingest removes them). Edge e draws
from its own counter-based stream, so the bytes depend only on the parameters and the seed, never on
the block size or thread count. `permute` relabels nodes by a seeded bijection of [0, 2^scale) so
the high-degree nodes are not the low ids.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from gstore.errors import OptionError
from gstore.progress import NULL_PROGRESS, Progress
from gstore.pipeline.generate.generate_kernels import rmat_edges
from gstore.pipeline.generate.generated import GeneratedGraph
from gstore.pipeline.generate.seeding import derive_key, permutation_params
from gstore.pipeline.generate.writers import (check_edge_dtype, check_output_files, edge_format_for,
                                              open_edge_writer)

log = logging.getLogger(__name__)

DEFAULT_BLOCK_EDGES = 1 << 22
MAX_SCALE = 40


def _check_rmat(scale: int, edge_factor: int, a: float, b: float, c: float, block_edges: int) -> None:
    if not 1 <= scale <= MAX_SCALE:
        raise OptionError(f"--scale must be in 1..{MAX_SCALE}, got {scale}")
    if edge_factor < 1:
        raise OptionError(f"--edge-factor must be >= 1, got {edge_factor}")
    if min(a, b, c) < 0 or a + b + c > 1 + 1e-12:
        raise OptionError(f"R-MAT probabilities a={a} b={b} c={c} must be >= 0 with a+b+c <= 1",
                          hint="Graph500 uses a=0.57 b=0.19 c=0.19 (d = 0.05)")
    if block_edges < 1:
        raise OptionError(f"block size must be >= 1, got {block_edges}")


def rmat_pair_table(a: float, b: float, c: float) -> np.ndarray:
    """uint8 (65536,): 16-bit uniform -> quadrants of two R-MAT levels (probabilities to 2^-16).

    Entry bits 0-1 are the two source bits (level l, l+1), bits 2-3 the two target bits. Quadrants:
    a = (0, 0), b = (0, 1), c = (1, 0), d = (1, 1) as (source bit, target bit).
    """
    probs = np.array([a, b, c, max(0.0, 1.0 - a - b - c)])
    bits = [(0, 0), (0, 1), (1, 0), (1, 1)]
    codes, weights = [], []
    for q1 in range(4):
        for q2 in range(4):
            (u1, v1), (u2, v2) = bits[q1], bits[q2]
            codes.append((u1 | u2 << 1) | (v1 | v2 << 1) << 2)
            weights.append(probs[q1] * probs[q2])
    bounds = np.rint(np.cumsum(weights) / np.sum(weights) * 65536).astype(np.int64)
    table = np.empty(65536, dtype=np.uint8)
    lo = 0
    for code, hi in zip(codes, bounds):
        table[lo:hi] = code
        lo = hi
    return table


def rmat_block(start: int, count: int, *, scale: int, a: float = 0.57, b: float = 0.19,
               c: float = 0.19, seed: int = 0, permute: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Edges start .. start+count-1 as (src, dst) int64 arrays (in memory; for tests and callers that
    stream edges themselves)."""
    src = np.empty(count, dtype=np.int64)
    dst = np.empty(count, dtype=np.int64)
    pk = permutation_params(1 << scale, derive_key(seed, "rmat-permute"))
    rmat_edges(np.int64(start), np.int64(scale), rmat_pair_table(a, b, c), derive_key(seed, "rmat-edges"),
               pk, bool(permute), src, dst)
    return src, dst


def generate_rmat(path: str | Path, scale: int, edge_factor: int = 16, *, a: float = 0.57,
                  b: float = 0.19, c: float = 0.19, seed: int = 0, permute: bool = True,
                  fmt: str | None = None, header: bool = True, block_edges: int = DEFAULT_BLOCK_EDGES,
                  num_edges: int | None = None, edge_dtype: str = "int64", force: bool = False,
                  progress: Progress = NULL_PROGRESS) -> GeneratedGraph:
    """Write edge_factor * 2^scale R-MAT edges (or exactly `num_edges`) to `path` (format from `fmt`
    or the suffix). edge_dtype: int64, int32 or auto (int32 when 2^scale - 1 fits) for npy / parquet.

    An existing file at `path` is replaced only with `force`.
    Memory: two (block_edges,) int64 buffers plus two formatted-text buffers, whatever the size.
    """
    _check_rmat(scale, edge_factor, a, b, c, block_edges)
    fmt = edge_format_for(path, fmt)
    path = Path(path)
    check_output_files([path], force)
    num_nodes = 1 << scale
    if num_edges is None:
        num_edges = edge_factor * num_nodes
    elif num_edges < 1:
        raise OptionError(f"--num-edges must be >= 1, got {num_edges}")
    block_edges = min(block_edges, num_edges)
    ids_dtype = check_edge_dtype(fmt, edge_dtype, num_nodes - 1)
    key = derive_key(seed, "rmat-edges")
    table = rmat_pair_table(a, b, c)
    pk = permutation_params(num_nodes, derive_key(seed, "rmat-permute"))
    src = np.empty(block_edges, dtype=np.int64)
    dst = np.empty(block_edges, dtype=np.int64)
    t0 = time.perf_counter()
    writer = open_edge_writer(path, fmt, block_edges=block_edges, num_edges=num_edges,
                              max_id=num_nodes - 1, header=header, dtype=ids_dtype)
    try:
        with progress.phase("rmat edges", total=num_edges, unit="edge", unit_scale=True) as bar:
            for start in range(0, num_edges, block_edges):
                n = min(block_edges, num_edges - start)
                rmat_edges(np.int64(start), np.int64(scale), table, key, pk, bool(permute),
                           src[:n], dst[:n])
                writer.write(src[:n], dst[:n])
                bar.advance(n)
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    seconds = time.perf_counter() - t0
    log.info("wrote %d R-MAT edges to %s in %.1f s", num_edges, path, seconds)
    return GeneratedGraph(
        kind="rmat", edges_path=path, edge_format=fmt, num_nodes=num_nodes, num_edges=num_edges,
        seed=seed, params={"scale": scale, "edge_factor": edge_factor, "a": a, "b": b, "c": c,
                           "permute": permute, "header": header, "edge_dtype": str(ids_dtype)},
        dense_ids=True, id_range=num_nodes, bytes_written=path.stat().st_size, seconds=seconds)
