"""Loader start time on a store: seconds from building a loader to its first batch (goal <= 5 s).

Usage:
    python bench/scale_loader.py STORE [--batch-size 1024] [--fanouts 15,10] [--clusters-per-batch 20]
        [--batches 20] [--json out.json]

Measures, for the train split: NeighborLoader (sampled neighborhoods), NeighborLoader over explicit
seed ids 0..N-1 (`neighbor_all_ids`: the path of `gstore sample`) and, when the store has a
partition, ClusterLoader (Cluster-GCN): `build_s` (constructor: seed ids, their duplicate check,
the sampler over the store's checked CSR), `first_batch_s` (iteration to the first batch, threads
started), `start_s` = their sum, then `batches_per_s` over the next --batches batches. The store's
structure check (one pass over indptr and indices, once per process) is timed on its own first,
as `check_s`, since every stage pays it once. Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def _time_loader(make, batches: int, evict=None) -> dict:
    """evict: the opened store, whose pages are dropped from the page cache first (its own mappings
    released, since pages mapped by a process stay cached)."""
    if evict is not None:
        import gc

        from gstore.memory import release_pages
        from gstore.pipeline.loader.throughput import drop_page_cache

        gc.collect()            # the previous loader's mappings
        for name in ("indptr", "indices", "features", "labels"):
            release_pages(getattr(evict, name))
        drop_page_cache(evict.path)
    t0 = time.perf_counter()
    loader = make()
    t1 = time.perf_counter()
    it = iter(loader)
    first = next(it)
    t2 = time.perf_counter()
    n = 0
    for _ in range(batches):
        try:
            next(it)
        except StopIteration:
            break
        n += 1
    t3 = time.perf_counter()
    it.close()
    loader.close()      # its read-ahead must not run into the next measurement
    return {"batches": len(loader), "build_s": round(t1 - t0, 3), "first_batch_s": round(t2 - t1, 3),
            "start_s": round(t2 - t0, 3), "first_batch_nodes": int(first.num_nodes),
            "batches_per_s": round(n / (t3 - t2), 3) if n else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store")
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--fanouts", default="15,10")
    ap.add_argument("--clusters-per-batch", type=int, default=20)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--num-workers", type=int, default=2)
    ap.add_argument("--fault-threads", type=int, default=None,
                    help="loader fault threads (gstore/cold_pages.py; 0: off; default: the loader's)")
    ap.add_argument("--evict", action="store_true",
                    help="drop the store's pages from the page cache before each loader (cold start)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import numpy as np

    import gstore
    from gstore.memory import anon_rss_bytes, peak_rss_bytes
    from gstore.pipeline.loader import ClusterLoader, NeighborLoader

    fanouts = [int(f) for f in args.fanouts.split(",")]
    extra = {} if args.fault_threads is None else {"fault_threads": args.fault_threads}

    # numba loads (or compiles) the sampler and gather kernels on first use: timed apart, on a
    # 3-node graph, so start_s is the loader's own work on the big store
    from gstore.pipeline.sampling.neighbor import NeighborSampler

    t0 = time.perf_counter()
    NeighborSampler(np.array([0, 1, 2, 2], np.int64), np.array([1, 0], np.int32), fanouts).sample(
        np.array([0, 1]))
    jit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    store = gstore.open(args.store)
    evict = store if args.evict else None
    store.csr()
    out = {"store": args.store, "num_nodes": store.num_nodes, "num_edges": store.num_edges,
           "check_s": round(time.perf_counter() - t0, 3), "jit_warmup_s": round(jit_s, 3)}
    out["neighbor"] = _time_loader(lambda: NeighborLoader(store, fanouts, args.batch_size, "train",
                                                          num_workers=args.num_workers, **extra), args.batches, evict)
    # explicit seed ids (what `gstore sample` passes): their duplicate check was np.unique, 82 s
    # of 91 s at 32.8M seeds; now one bitmap pass
    ids = np.arange(store.num_nodes, dtype=np.int64)
    out["neighbor_all_ids"] = _time_loader(lambda: NeighborLoader(store, fanouts, args.batch_size, ids,
                                                                  num_workers=args.num_workers, **extra), args.batches, evict)
    del ids
    if store.partition is not None:
        out["cluster"] = _time_loader(lambda: ClusterLoader(store, clusters_per_batch=args.clusters_per_batch,
                                                            split="train", num_workers=args.num_workers,
                                                            seeds_first=True, **extra),
                                        args.batches, evict)
    out["peak_rss_bytes"] = peak_rss_bytes()
    out["anon_rss_bytes"] = anon_rss_bytes()
    text = json.dumps(out)
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
