"""Nanoseconds per entry of the partition kernels at N = 32M nodes (the 10^9 chain's cache footprint).

    flock /tmp/gstore-heavy.lock python bench/partition_kernels.py
    GSTORE_SRC=<a checkout of another commit> python bench/partition_kernels.py   # before/after

One chunk of 1M rows x 60 neighbours over 32M nodes, 70 % of them in the row's own part (a good
partition, as in late sweeps), K = 1024; median of 3 calls after a warm-up (compile excluded).
Nothing is read from disk; ~1.5 GB of RAM. GSTORE_SRC loads gstore from another source tree
(its gstore/, pipeline/, train/ folders) through the editable install's finder, so two commits'
kernels can be timed on the same data in the same session.
"""
import os, sys, time, inspect
if os.environ.get("GSTORE_SRC"):
    import __editable___gstore_0_1_0_finder as _f
    _s = os.environ["GSTORE_SRC"]
    _f.MAPPING.update({"gstore": _s + "/gstore", "gstore.pipeline": _s + "/pipeline", "gstore.train": _s + "/train"})
import numpy as np
from gstore.pipeline.partition.refine_kernels import refine_chunk, cut_chunk, REFINE
from gstore.pipeline.partition.coarsen_kernels import lp_cluster_chunk
new = "active" in inspect.signature(refine_chunk.py_func).parameters
N, E, K, rows = 32_000_000, 60_000_000, 1024, 1_000_000
rng = np.random.default_rng(0)
deg = E // rows
indptr = np.arange(rows + 1, dtype=np.int64) * deg
part = rng.integers(0, K, N).astype(np.int32)
# 70 % of each row's neighbours share its part (a good partition), the rest anywhere
order = np.argsort(part, kind="stable"); starts = np.searchsorted(part[order], np.arange(K + 1))
own = np.repeat(part[:rows], deg)
same = rng.random(E) < 0.7
nb = rng.integers(0, N, E)
pick = starts[own] + (rng.random(E) * (starts[own + 1] - starts[own])).astype(np.int64)
nbrs = np.where(same, order[pick], nb).astype(np.int32)
vw = np.ones(N, dtype=np.int64); e0 = np.zeros(0, np.int64)
act = np.ones(N, np.uint8); nxt = np.zeros(N, np.uint8)
def run_refine():
    pw = np.bincount(part, minlength=K).astype(np.int64); p = part.copy()
    conn = np.zeros(K, np.int64); t = np.zeros(K, np.int64)
    a = (indptr, nbrs, e0, False, 0, vw, p, pw, int(pw.max() * 2), conn, t, REFINE, 0)
    return refine_chunk(*(a + ((act, nxt, False) if new else ())))
def run_lp():
    cl = np.arange(N, dtype=np.int32); cw = vw.copy()
    if new:
        return lp_cluster_chunk(indptr, nbrs, e0, False, 0, vw, cl, cw, 64, 1, act, nxt, False)
    return lp_cluster_chunk(indptr, nbrs, e0, False, 0, vw, cl, cw, 64, np.full(N, -1, np.int32), 1)
def run_cut():
    return cut_chunk(indptr, nbrs, e0, False, 0, part)
for name, f in [("refine_chunk", run_refine), ("lp_cluster_chunk", run_lp), ("cut_chunk", run_cut)]:
    f(); ts = []
    for _ in range(3):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    print(f"{name:18s} {sorted(ts)[1] / E * 1e9:6.1f} ns/entry (median of 3)", flush=True)
