"""Sampler throughput on a random in-memory graph (no disk): neighbor and Cluster-GCN batches.

Usage: flock /tmp/gstore-heavy.lock python bench/sampler_kernels.py [--nodes 1000000] [--pairs 10000000]
       [--cache /work/data/bench_sampling]   (keeps the generated CSR as .npy files for reruns)
Builds an undirected random graph (`--pairs` random pairs, both directions stored, deduplicated:
~2 * pairs CSR entries), then times (after a warm-up call that compiles the kernels):
- NeighborSampler, fanouts 15,10,5, batch 1024 random unique seeds: sampled edges/s, per thread count;
- ClusterSampler over random parts (K=1000, q=20) and over a contiguous id-range partition.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numba
import numpy as np

from gstore.pipeline.sampling.cluster import ClusterSampler
from gstore.pipeline.sampling.neighbor import NeighborSampler


def random_csr(n: int, pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n, pairs)
    b = rng.integers(0, n, pairs)
    key = np.unique(np.concatenate([b * n + a, a * n + b]))  # rows = dst, sorted sources
    del a, b
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(key // n, minlength=n), out=indptr[1:])
    return indptr, (key % n).astype(np.int32)


def time_batches(fn, batches) -> tuple[float, int]:
    """Median seconds per call and total edges over `batches`."""
    times, edges = [], 0
    for i, b in enumerate(batches):
        t = time.perf_counter()
        sub = fn(b, i)
        times.append(time.perf_counter() - t)
        edges += sub.num_edges
    return statistics.median(times), edges // len(batches)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1_000_000)
    ap.add_argument("--pairs", type=int, default=10_000_000)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--cache", type=Path, default=None)
    args = ap.parse_args()
    t = time.perf_counter()
    files = None if args.cache is None else \
        [args.cache / f"n{args.nodes}_p{args.pairs}_{a}.npy" for a in ("indptr", "indices")]
    if files and all(f.exists() for f in files):
        indptr, indices = np.load(files[0]), np.load(files[1])
    else:
        indptr, indices = random_csr(args.nodes, args.pairs)
        if files:
            args.cache.mkdir(parents=True, exist_ok=True)
            np.save(files[0], indptr)
            np.save(files[1], indices)
    n, e = len(indptr) - 1, len(indices)
    print(f"graph: {n:,} nodes, {e:,} CSR entries (built in {time.perf_counter() - t:.1f}s)")
    rng = np.random.default_rng(1)
    seed_batches = [np.sort(rng.choice(n, 1024, replace=False)) for _ in range(args.batches)]

    print("\n| sampler | threads | batch | median ms/batch | edges/batch | nodes/batch | M sampled edges/s |")
    print("|---|---|---|---|---|---|---|")
    for replace in (False, True):
        sampler = NeighborSampler(indptr, indices, [15, 10, 5], replace=replace, seed=0)
        sampler.sample(seed_batches[0], 0)  # compile
        nodes = sampler.sample(seed_batches[0], 0).num_nodes
        for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(threads)
            sec, edges = time_batches(sampler.sample, seed_batches)
            name = f"neighbor 15,10,5 replace={replace}"
            print(f"| {name} | {threads} | 1024 seeds | {sec * 1e3:.1f} | {edges:,} | {nodes:,} | "
                  f"{edges / sec / 1e6:.2f} |")
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)

    k, q = 1000, 20
    random_parts = rng.integers(0, k, n).astype(np.int32)
    range_parts = (np.arange(n) * k // n).astype(np.int32)  # contiguous clusters (a reordered store)
    for label, parts in (("random parts", random_parts), ("contiguous parts", range_parts)):
        sampler = ClusterSampler(indptr, indices, parts, num_parts=k, clusters_per_batch=q, seed=0)
        batches = sampler.epoch_batches(0)[:args.batches]
        sampler.sample(batches[0], 0)  # compile
        nodes = sampler.sample(batches[0], 0).num_nodes
        deg = np.diff(indptr)
        scanned = sum(int(deg[sampler.cluster_nodes(b)].sum()) for b in batches) // len(batches)
        for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(threads)
            sec, edges = time_batches(sampler.sample, batches)
            print(f"| cluster K={k} q={q} {label} (scans {scanned:,} edges: "
                  f"{scanned / sec / 1e6:.2f} M/s) | {threads} | {q} clusters | {sec * 1e3:.1f} | "
                  f"{edges:,} | {nodes:,} | {edges / sec / 1e6:.2f} |")
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)

if __name__ == "__main__":
    main()
