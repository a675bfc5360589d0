"""`gstore partition --reorder` (reorder_store) at a budget that cuts the new CSR into many buckets:
this checkout against another commit's reorder.py, side by side on the same store.

    nice -n 15 flock /tmp/gstore-heavy.lock python bench/reorder.py --work /work/data/reorder1
    python bench/reorder.py --work DIR --baseline main --budget 128MiB --repeats 3 [--uncached]
    python bench/reorder.py --work DIR --kernels       # map_sort_rows alone, baseline vs this checkout

The store (cached under --work): --nodes nodes, about --entries stored entries (directed, int32
indices, log-normal degrees, sorted rows), int64 node ids, and a random --parts-way partition (a
part's nodes spread over the old id order, as a real partition of an unordered store is). Every run
reorders a fresh copy of it (copy time excluded). The baseline is BASELINE's pipeline/partition/
reorder.py and reorder_kernels.py (`git show`), loaded as modules beside this checkout's.
Each run is a child process; per run: wall seconds of reorder_store, bytes read through preadv
from the old indices file (ArrayFile.read) and in all (rchar of /proc/self/io: page cache
included), bytes written (wchar), the child's peak RSS; rounds interleave baseline and new;
medians printed with the ratio.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def build_store(path: Path, n: int, entries: int, parts: int, seed: int = 0) -> None:
    import gstore
    from gstore.builder import StoreBuilder
    from gstore.manifest import StoreManifest
    from gstore.pipeline.partition.partition import PartitionResult, record_partition

    if (path / "zarr.json").exists() and gstore.open(path).partitions():
        return
    shutil.rmtree(path, ignore_errors=True)
    rng = np.random.default_rng(seed)
    deg = rng.lognormal(0.0, 1.0, n)
    deg = np.floor(deg * (entries / deg.sum())).astype(np.int64)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(deg, out=indptr[1:])
    e = int(indptr[-1])
    rows = np.repeat(np.arange(n, dtype=np.int64), deg)
    key = rows * n + rng.integers(0, n, e)
    del rows
    key.sort()
    indices = (key % n).astype(np.int32)
    del key
    with StoreBuilder(path) as b:
        b.write_array("indptr", indptr)
        b.write_array("indices", indices)
        b.write_array("node_ids", np.arange(n, dtype=np.int64))
        b.commit(StoreManifest(num_nodes=n, num_edges=e, directed=True))
    p = rng.integers(0, parts, n).astype(np.int32)
    counts = np.bincount(p, minlength=parts)
    result = PartitionResult(num_parts=parts, method="random", edge_cut=0.0,
                             balance=float(counts.max() / counts.mean()), seconds=0.0, peak_rss=0,
                             metis_estimate=0, params={"seed": seed})
    record_partition(path, str(parts), p, result)


def load_baseline(rev: str):
    """`rev`'s reorder.py with `rev`'s reorder_kernels.py, as modules in a fixed folder (so numba's
    cache of the baseline's kernels survives from one child to the next)."""
    def show(path: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{path}"], check=True,
                              capture_output=True, text=True).stdout

    folder = Path(tempfile.gettempdir()) / f"reorder-baseline-{rev.replace('/', '_')}"
    folder.mkdir(exist_ok=True)
    kernels = show("pipeline/partition/reorder_kernels.py")
    src = show("pipeline/partition/reorder.py").replace(
        "from gstore.pipeline.partition.reorder_kernels import", "from reorder_kernels_baseline import")
    for name, text in (("reorder_kernels_baseline.py", kernels), ("reorder_baseline.py", src)):
        if not (folder / name).exists() or (folder / name).read_text() != text:
            (folder / name).write_text(text)
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location("reorder_baseline", folder / "reorder_baseline.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def proc_io() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/io").read_text().splitlines():
        k, v = line.split(":")
        out[k] = int(v)
    return out


def drop_cached(path: str) -> None:
    """Evict a file's pages from the page cache (written back first: only clean pages go)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def run_once(reorder_store, pristine: Path, work: Path, key: str, budget: str,
             uncached: bool = False) -> dict:
    from gstore.pipeline.partition.csr_stream import ArrayFile

    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(pristine, work)
    import gstore
    from gstore.pipeline.partition.csr_stream import store_array_file

    old_idx = os.path.realpath(store_array_file(gstore.open(work), "indices").path)
    read_old = [0]
    real = ArrayFile.read

    def counting(self, lo, hi, out=None):
        if os.path.realpath(self.path) != old_idx:
            return real(self, lo, hi, out)
        read_old[0] += (hi - lo) * self.dtype.itemsize
        got = real(self, lo, hi, out)
        if uncached:    # every read of the old indices comes from disk, as when they outgrow the cache
            drop_cached(old_idx)
        return got

    if uncached:
        drop_cached(old_idx)
    ArrayFile.read = counting
    try:
        io0, t0 = proc_io(), time.perf_counter()
        reorder_store(work, key, memory_budget=budget)
        seconds, io1 = time.perf_counter() - t0, proc_io()
    finally:
        ArrayFile.read = real
    g = gstore.open(work)
    assert g.partition.contiguous
    return {"s": seconds, "old_idx_read": read_old[0], "rchar": io1["rchar"] - io0["rchar"],
            "wchar": io1["wchar"] - io0["wchar"], "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10,
            "indices": np.asarray(g.indices[:1000]).tolist()}


def warm_kernels(mod) -> None:
    """Compile or load (numba's cache) the kernels `mod` calls before the clock starts."""
    from gstore.set_kernels import counting_groups

    ptr, vals, ids = np.array([0, 1], np.int64), np.zeros(1, np.int32), np.zeros(1, np.int64)
    mod.scatter_rows(ptr, vals, 0, ids, 0, 1, ids, vals.copy())
    mod.map_sort_rows(ptr, vals.copy(), ids, np.zeros(0, np.float32), False)
    if hasattr(mod, "concat_rows"):
        mod.concat_rows(ptr, ids, vals, vals.copy())
    counting_groups(ids, np.int64(1), np.zeros(2, np.int64), ids.copy())


def child(args) -> None:
    if args.child == "new":
        from gstore.pipeline.partition import reorder as mod
    else:
        mod = load_baseline(args.child)
    warm_kernels(mod)
    reorder_store = mod.reorder_store
    res = run_once(reorder_store, Path(args.pristine), args.work / "run", str(args.parts), args.budget,
                   args.uncached)
    print("RESULT " + json.dumps(res))


def time_sort_kernels(pristine: Path, key: str, rev: str, repeats: int) -> None:
    """map_sort_rows of `rev` and of this checkout on the store's own rows (indices in RAM, new ids
    from the partition's permutation), min of `repeats`: ns per entry."""
    import gstore
    from gstore.pipeline.partition import reorder as mod
    from gstore.pipeline.partition.reorder import reorder_permutation

    g = gstore.open(pristine)
    indptr, indices = np.array(g.indptr), np.array(g.indices)
    meta = g.manifest.partitions[key]
    _, inv, _ = reorder_permutation(np.array(g.array(meta["arrays"]["parts"])), int(meta["num_parts"]))
    no_w = np.zeros(0, np.float32)
    out = {}
    for name, m in ((rev, load_baseline(rev)), ("new", mod)):
        warm_kernels(m)
        ts = []
        for _ in range(repeats):
            a = indices.copy()
            t0 = time.perf_counter()
            m.map_sort_rows(indptr, a, inv, no_w, False)
            ts.append(time.perf_counter() - t0)
        out[name] = a
        print(f"map_sort_rows {name:>8}: {min(ts) / len(a) * 1e9:6.1f} ns an entry (min of {repeats})", flush=True)
    assert np.array_equal(out[rev], out["new"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--nodes", type=int, default=2_000_000)
    ap.add_argument("--entries", type=int, default=60_000_000)
    ap.add_argument("--parts", type=int, default=64)
    ap.add_argument("--budget", default="128MiB")
    ap.add_argument("--baseline", default="main")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--uncached", action="store_true",
                    help="drop the old indices' pages from the page cache before the run and after "
                         "every read of them (the 10^9 case, where 8 GiB of indices do not stay cached)")
    ap.add_argument("--kernels", action="store_true",
                    help="time only map_sort_rows (baseline's and this checkout's) on the store's rows")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--pristine", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    from gstore.memory import parse_bytes

    args.work.mkdir(parents=True, exist_ok=True)
    pristine = args.work / f"store_n{args.nodes}_e{args.entries}_k{args.parts}"
    t0 = time.perf_counter()
    build_store(pristine, args.nodes, args.entries, args.parts)
    print(f"store {pristine} ready in {time.perf_counter() - t0:.1f} s", flush=True)
    import gstore

    g = gstore.open(pristine)
    e = g.num_edges
    cap = max(1 << 12, parse_bytes(args.budget) // 4) // 8
    print(f"{g.num_nodes} nodes, {e} entries ({e * 4 / 2**20:.0f} MiB of indices), budget "
          f"{args.budget}: ~{-(-e // cap)} buckets of new rows", flush=True)
    del g
    if args.kernels:
        return time_sort_kernels(pristine, str(args.parts), args.baseline, args.repeats)
    impls = [args.baseline, "new"]
    results: dict[str, list[dict]] = {k: [] for k in impls}
    for r in range(args.repeats):
        for name in impls:
            out = subprocess.run([sys.executable, __file__, "--child", name, "--pristine", str(pristine),
                                  "--work", str(args.work), "--parts", str(args.parts),
                                  "--budget", args.budget] + (["--uncached"] if args.uncached else []),
                                 check=True, capture_output=True, text=True).stdout
            res = json.loads(out.split("RESULT ", 1)[1])
            results[name].append(res)
            print(f"round {r} {name:>8}: {res['s']:7.2f} s, old indices read {res['old_idx_read'] / 2**20:8.0f} MiB "
                  f"({res['old_idx_read'] / (4 * e):.2f} passes), read {res['rchar'] / 2**20:8.0f} MiB, "
                  f"written {res['wchar'] / 2**20:6.0f} MiB, peak RSS {res['rss'] / 2**20:5.0f} MiB", flush=True)
    first = [results[k][0]["indices"] for k in impls]
    assert all(np.array_equal(first[0], x) for x in first[1:]), "the two reorders disagree"
    med = {k: {m: float(np.median([x[m] for x in v])) for m in ("s", "old_idx_read", "rchar", "wchar", "rss")}
           for k, v in results.items()}
    print(f"\nmedian of {args.repeats}     wall s   old-indices MiB   passes   read MiB   written MiB   peak RSS MiB")
    for k, m in med.items():
        print(f"{k:>12} {m['s']:9.2f} {m['old_idx_read'] / 2**20:14.0f} {m['old_idx_read'] / (4 * e):8.2f} "
              f"{m['rchar'] / 2**20:10.0f} {m['wchar'] / 2**20:12.0f} {m['rss'] / 2**20:12.0f}")
    b, n = med[args.baseline], med["new"]
    print(f"ratio {args.baseline} / new: wall {b['s'] / n['s']:.2f}x, old-indices reads "
          f"{b['old_idx_read'] / n['old_idx_read']:.1f}x, all reads {b['rchar'] / n['rchar']:.1f}x")
    shutil.rmtree(args.work / "run", ignore_errors=True)


if __name__ == "__main__":
    main()
