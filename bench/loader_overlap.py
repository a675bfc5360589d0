"""Does the trainer wait? gstore's prefetching loader vs the same stages run inline, under a trainer step.

Usage (after `python bench/sampling.py --build-only --methods cluster` built the bench stores):
    flock /tmp/gstore-heavy.lock python bench/loader_overlap.py [--steps-ms 0,5,10,20] [--batches 60]

A simulated trainer takes each batch and then spends `step` ms in a training step. `time.sleep`
stands in for a GPU-bound step, whose host thread mostly waits on the device; `--busy` burns CPU
instead, like a CPU trainer that competes with the loader for the cores. For each step length the
script runs the same batches two ways, side by side in one process:
  inline    sample + gather in the training loop, one batch after the other (no overlap);
  prefetch  gstore's loader (threads, bounded queues, `--workers` sample/gather workers each).
It reports the epoch time, the share of it the trainer spent waiting for a batch, and the ratio
inline / prefetch. With a perfect loader the trainer never waits once the step is longer than the
loader's per-batch time, and the epoch takes batches x step.

Cluster batches come from the reordered bench store (1500 parts, q = 20, no normalisation);
neighbor batches (fanouts 15,10,5, 1024 seeds) from the bench store. Medians over `--repeats`.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

import gstore
from gstore.pipeline.features.gather import FeatureSource, gather_labels
from gstore.pipeline.loader import ClusterLoader, NeighborLoader
from gstore.pipeline.sampling.cluster import ClusterSampler
from gstore.pipeline.sampling.neighbor import NeighborSampler

DATA = Path("/work/data/bench_sampling")
STORE = DATA / "store_n2400000_p30500000_f100"
REORDERED = DATA / "store_n2400000_p30500000_f100_reordered_k1500"
FANOUTS = [15, 10, 5]


def train_step(step_s: float, busy: bool) -> None:
    if step_s <= 0:
        return
    if not busy:
        time.sleep(step_s)
        return
    end = time.perf_counter() + step_s
    x = 0.0
    while time.perf_counter() < end:
        x += 1.0


def across_epochs(loader):
    while True:
        yield from loader


def run_prefetch(loader, batches: int, step_s: float, busy: bool) -> tuple[float, float]:
    """(epoch seconds, seconds the trainer waited) over `batches` batches after one warm-up."""
    it = across_epochs(loader)
    next(it)
    waited = 0.0
    t0 = time.perf_counter()
    for _ in range(batches):
        tw = time.perf_counter()
        next(it)
        waited += time.perf_counter() - tw
        train_step(step_s, busy)
    total = time.perf_counter() - t0
    it.close()
    return total, waited


def run_inline(make_batch, payloads: list, step_s: float, busy: bool) -> tuple[float, float]:
    make_batch(payloads[0])
    waited = 0.0
    t0 = time.perf_counter()
    for p in payloads[1:]:
        tw = time.perf_counter()
        make_batch(p)
        waited += time.perf_counter() - tw
        train_step(step_s, busy)
    return time.perf_counter() - t0, waited


def cluster_setup(args):
    g = gstore.open(REORDERED)
    sampler = ClusterSampler.from_store(g, clusters_per_batch=20, normalize=False, self_loops=False,
                                        edge_ids=False)
    source = FeatureSource(g)
    buf = np.empty((40_000, source.dim), source.dtype)
    payloads = [b for e in range(3) for b in sampler.epoch_batches(e)][:args.batches + 1]

    def make_batch(ids):
        sub = sampler.sample(ids)
        source.gather(sub.nodes, buf)
        gather_labels(source.labels, sub.nodes)

    def loader():
        return ClusterLoader(g, None, None, 20, split="train", normalize=False, self_loops=False,
                             num_workers=args.workers, prefetch=args.prefetch)
    return make_batch, payloads, loader


def neighbor_setup(args):
    g = gstore.open(STORE)
    sampler = NeighborSampler.from_store(g, FANOUTS)
    source = FeatureSource(g)
    buf = np.empty((800_000, source.dim), source.dtype)
    train = np.asarray(g.split("train"), np.int64)
    rng = np.random.default_rng(0)
    payloads = [np.sort(rng.choice(train, 1024, replace=False)) for _ in range(args.batches + 1)]

    def make_batch(seeds):
        sub = sampler.sample(seeds, 0)
        source.gather(sub.nodes, buf)
        gather_labels(source.labels, sub.nodes)

    def loader():
        return NeighborLoader(g, FANOUTS, 1024, "train", num_workers=args.workers, prefetch=args.prefetch)
    return make_batch, payloads, loader


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", choices=["cluster", "neighbor"], default="cluster")
    ap.add_argument("--steps-ms", default=None, help="trainer step lengths (default: cluster 0,5,10,20; "
                                                     "neighbor 0,150,300)")
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--prefetch", type=int, default=4)
    ap.add_argument("--busy", action="store_true", help="the step burns CPU instead of sleeping")
    args = ap.parse_args()
    steps = args.steps_ms or ("0,5,10,20" if args.method == "cluster" else "0,150,300")
    make_batch, payloads, make_loader = (cluster_setup if args.method == "cluster" else neighbor_setup)(args)
    n = len(payloads) - 1
    print(f"{args.method}: {n} timed batches, {args.workers} workers, prefetch {args.prefetch}, "
          f"step = {'busy CPU' if args.busy else 'sleep (GPU-bound trainer)'}, median of {args.repeats}")
    head = (f"{'step ms':>8s} {'ideal s':>8s} | {'inline s':>9s} {'waits':>6s} | {'prefetch s':>10s} "
            f"{'waits':>6s} {'wait/batch ms':>13s} | {'inline/prefetch':>15s}")
    print(head)
    print("-" * len(head))
    for step_ms in [float(s) for s in steps.split(",")]:
        step_s = step_ms / 1000
        inl, pre = [], []
        for _ in range(args.repeats):  # interleaved, so both see the same machine
            inl.append(run_inline(make_batch, payloads, step_s, args.busy))
            pre.append(run_prefetch(make_loader(), n, step_s, args.busy))
        ti, wi = statistics.median(t for t, _ in inl), statistics.median(w for _, w in inl)
        tp, wp = statistics.median(t for t, _ in pre), statistics.median(w for _, w in pre)
        print(f"{step_ms:8.0f} {n * step_s:8.2f} | {ti:9.2f} {wi / ti:6.0%} | {tp:10.2f} {wp / tp:6.0%} "
              f"{wp / n * 1e3:13.2f} | {ti / tp:14.2f}x", flush=True)


if __name__ == "__main__":
    main()
