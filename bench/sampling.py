"""gstore's prefetching loader vs PyG's NeighborLoader / ClusterLoader on an ogbn-products-sized graph.

Usage:
    flock /tmp/gstore-heavy.lock python bench/sampling.py [--repeats 3] [--batches 30] [--cluster-batches 75]

Builds (once, cached under /work/data/bench_sampling/) a synthetic undirected graph of 2.4M nodes and
~60M stored edge entries with 100-dim float32 features, straight from numpy through StoreBuilder. The
graph has planted communities (1500 groups of 1600 nodes, 80% of edges inside a group, ids shuffled)
and Zipf-skewed degrees, so Cluster-GCN batches have real edges and a hot-row cache has hot rows.
Both Cluster-GCN loaders get the same parts: the planted communities (what METIS would recover;
PyG's `ClusterData._metis` is monkeypatched to return them). gstore's cluster loader runs twice: on the
store as built (parts scattered over the ids) and on a reordered copy (cached beside it; the parts
recorded as a partition and laid out contiguously by `reorder_store`, as `gstore partition --reorder`
does), whose one-time record + reorder seconds count as its "setup s", like PyG's permutation.

Every configuration runs in a fresh subprocess (so peak RSS is its own), and the repeats interleave the
configurations (gstore and PyG alternate, so machine noise hits both). After one warm-up batch a run
times `--batches` neighbor batches or `--cluster-batches` cluster batches (default: one epoch, 1500
parts / q=20 = 75; much shorter runs mostly measure the first touch of fresh buffers); medians over
`--repeats`. gstore "cold" evicts the store's files from the page cache (posix_fadvise DONTNEED)
first; "warm" reads them all first.
PyG loads the graph and features into RAM (its usual mode) and runs once per `--pyg-worker-list` entry
(default 0 and 2 DataLoader workers; PyG's workers are forked processes, gstore's are threads), with
whichever sampling backend is installed (the table prints it: pyg_lib or torch_sparse). Every ratio is
printed against each PyG configuration. PyG is skipped cleanly when torch_geometric (+ torch_sparse or
pyg_lib) is not importable.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path("/work/data/bench_sampling")
FANOUTS = [15, 10, 5]


# ---------------------------------------------------------------------------------------------
# synthetic store
def store_path(args) -> Path:
    return DATA / f"store_n{args.nodes}_p{args.pairs}_f{args.dim}"


def parts_path(args) -> Path:
    return DATA / f"parts_n{args.nodes}_p{args.pairs}_k{args.parts}.npy"


def reordered_path(args) -> Path:
    return DATA / f"store_n{args.nodes}_p{args.pairs}_f{args.dim}_reordered_k{args.parts}"


def build_reordered(args) -> float:
    """A copy of the bench store laid out by the planted parts (`gstore partition --reorder` path:
    record the parts as a partition, then reorder_store). Returns the seconds of record + reorder
    (cached in a JSON beside the store), which count as gstore's one-time setup like PyG's permutation."""
    import shutil

    from gstore.pipeline.partition.partition import PartitionResult, record_partition
    from gstore.pipeline.partition.reorder import reorder_store

    out = reordered_path(args)
    timing = out.parent / (out.name + ".setup.json")
    if (out / "zarr.json").exists() and timing.exists():
        return float(json.loads(timing.read_text())["seconds"])
    timing.unlink(missing_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(store_path(args), out)
    t0 = time.perf_counter()
    parts = np.load(parts_path(args))
    counts = np.bincount(parts, minlength=args.parts)
    result = PartitionResult(num_parts=args.parts, method="planted", edge_cut=0.0,
                             balance=float(counts.max() / counts.mean()), seconds=0.0, peak_rss=0,
                             metis_estimate=0, params={"source": str(parts_path(args))})
    key = str(args.parts)
    record_partition(out, key, parts, result)
    reorder_store(out, key, memory_budget="4GiB")
    seconds = time.perf_counter() - t0
    timing.write_text(json.dumps({"seconds": seconds}))
    print(f"reordered {out} by {args.parts} planted parts in {seconds:.1f} s", flush=True)
    return seconds


def build_graph(args) -> None:
    import gstore  # noqa: F401
    from gstore.builder import StoreBuilder
    from gstore.manifest import StoreManifest

    out = store_path(args)
    if (out / "zarr.json").exists() and parts_path(args).exists():
        return
    t0 = time.perf_counter()
    n, pairs, k = args.nodes, args.pairs, args.parts
    rng = np.random.default_rng(0)
    size = -(-n // k)
    w = 1.0 / np.arange(1, n + 1) ** 0.6          # Zipf-ish popularity over ranks
    cdf = np.cumsum(w)
    cdf /= cdf[-1]
    a = np.searchsorted(cdf, rng.random(pairs)).astype(np.int64)
    rank_shuffle = rng.permutation(n)              # popular nodes spread over communities
    a = rank_shuffle[a]
    intra = rng.random(pairs) < 0.8
    b = np.empty(pairs, dtype=np.int64)
    comm = a[intra] // size
    b[intra] = np.minimum(comm * size + rng.integers(0, size, int(intra.sum())), n - 1)
    b[~intra] = rank_shuffle[np.searchsorted(cdf, rng.random(int((~intra).sum())))]
    del intra, comm
    perm = rng.permutation(n)                      # hide the communities behind random ids
    a, b = perm[a], perm[b]
    parts = np.empty(n, dtype=np.int32)
    parts[perm] = (np.arange(n) // size).astype(np.int32)
    keep = a != b
    a, b = a[keep], b[keep]
    key = np.concatenate([b * n + a, a * n + b])   # both directions; rows = dst
    del a, b, keep
    key = np.unique(key)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(key // n, minlength=n), out=indptr[1:])
    indices = (key % n).astype(np.int32)
    del key
    m = StoreManifest(num_nodes=n, num_edges=int(len(indices)), directed=False)
    train = np.sort(rng.choice(n, n // 10, replace=False))
    labels = ((parts.astype(np.int64) + rng.integers(0, 3, n)) % 47)
    with StoreBuilder(out, force=True) as bld:
        bld.write_array("indptr", indptr)
        bld.write_array("indices", indices)
        bld.write_array("node_ids", np.arange(n, dtype=np.int64))
        del indices
        wr = bld.array_writer("features", (n, args.dim), np.float32)
        for s in range(0, n, 200_000):
            wr.append(rng.standard_normal((min(n, s + 200_000) - s, args.dim), dtype=np.float32))
        bld.add(wr.finish())
        bld.write_array("labels", labels)
        bld.write_array("splits/train", train)
        m.feature_dim, m.feature_dtype = args.dim, "float32"
        m.label_names, m.num_classes = [str(i) for i in range(47)], 47
        m.split_sizes = {"train": int(len(train))}
        bld.commit(m)
    np.save(parts_path(args), parts)
    print(f"built {out} ({m.num_edges} stored edges) in {time.perf_counter() - t0:.0f} s", flush=True)


def read_all(path: Path) -> None:
    """Warm the page cache: read every file of the store once."""
    for p in path.rglob("*"):
        if p.is_file():
            with open(p, "rb") as fh:
                while fh.read(1 << 24):
                    pass


# ---------------------------------------------------------------------------------------------
# child processes: one configuration each, prints one JSON line
def child_gstore(args) -> dict:
    import gstore
    from gstore.pipeline.loader import ClusterLoader, NeighborLoader
    from gstore.pipeline.loader.throughput import drop_page_cache, measure

    reordered = args.child == "gstore-cluster-reordered"
    path = reordered_path(args) if reordered else store_path(args)
    if args.cold:
        drop_page_cache(path)
    t0 = time.perf_counter()
    g = gstore.open(path)
    common = dict(prefetch=args.prefetch, num_workers=args.workers, cache_bytes=args.cache_bytes,
                  seed=args.seed)
    if args.child == "gstore-neighbor":
        loader = NeighborLoader(g, FANOUTS, args.batch_size, "train", **common)
    elif reordered:  # the store's own (contiguous) partition
        loader = ClusterLoader(g, None, None, args.clusters_per_batch, split="train",
                               normalize=False, self_loops=False, **common)
    else:
        parts = np.load(parts_path(args))
        loader = ClusterLoader(g, parts, args.parts, args.clusters_per_batch, split="train",
                               normalize=False, self_loops=False, **common)
    setup = time.perf_counter() - t0
    if reordered:
        setup += build_reordered(args)  # cached: the one-time record + reorder seconds
    r = measure(loader, args.batches, warmup=1)
    return {"batches_per_s": r.batches_per_s, "edges_per_s": r.edges_per_s, "nodes_per_s": r.nodes_per_s,
            "mean_edges": r.mean_edges, "mean_nodes": r.mean_nodes, "setup_s": setup,
            "feature_mb_per_s": r.feature_mb_per_s, "peak_rss": r.peak_rss_bytes,
            "peak_anon": r.peak_anon_bytes,
            "cache_hit_rate": r.cache_hit_rate, "stage_median_s": r.stage_median_s}


def child_pyg(args) -> dict:
    import torch
    from torch_geometric.data import Data

    import gstore
    from gstore.memory import anon_rss_bytes, peak_rss_bytes

    g = gstore.open(store_path(args))
    t0 = time.perf_counter()
    n = g.num_nodes
    dst = torch.from_numpy(np.repeat(np.arange(n, dtype=np.int64), np.diff(g.indptr)))
    src = torch.from_numpy(np.asarray(g.indices, dtype=np.int64))
    data = Data(x=torch.from_numpy(np.array(g.features)), y=torch.from_numpy(np.array(g.labels)),
                edge_index=torch.stack([src, dst]), num_nodes=n)
    del src, dst
    if args.child == "pyg-neighbor":
        from torch_geometric.loader import NeighborLoader

        loader = NeighborLoader(data, num_neighbors=FANOUTS, batch_size=args.batch_size,
                                input_nodes=torch.from_numpy(np.array(g.split("train"))), shuffle=True,
                                num_workers=args.pyg_workers)
    else:
        from torch_geometric.loader import ClusterData, ClusterLoader

        parts = torch.from_numpy(np.load(parts_path(args)).astype(np.int64))
        ClusterData._metis = lambda self, edge_index, num_nodes: parts  # same parts as gstore
        cd = ClusterData(data, num_parts=args.parts, log=False)
        loader = ClusterLoader(cd, batch_size=args.clusters_per_batch, shuffle=True,
                               num_workers=args.pyg_workers)
    setup = time.perf_counter() - t0
    torch.manual_seed(args.seed)
    count = edges = nodes = 0
    t_start = None
    peak_anon = anon_rss_bytes()
    while count < args.batches + 1:
        for b in loader:
            peak_anon = max(peak_anon, anon_rss_bytes())
            count += 1
            if count == 1:
                t_start = time.perf_counter()
                continue
            edges += int(b.edge_index.size(1))
            nodes += int(b.num_nodes)
            if count >= args.batches + 1:
                break
    el = time.perf_counter() - t_start
    k = count - 1
    return {"batches_per_s": k / el, "edges_per_s": edges / el, "nodes_per_s": nodes / el,
            "mean_edges": edges / k, "mean_nodes": nodes / k, "setup_s": setup,
            "feature_mb_per_s": nodes * data.x.shape[1] * 4 / el / 1e6, "peak_rss": peak_rss_bytes(),
            "peak_anon": peak_anon, "cache_hit_rate": None}


def pyg_available(method: str) -> str | None:
    """None when PyG can run `method` here, else why not. ClusterLoader needs no compiled backend
    once METIS is replaced by the given parts; neighbor sampling needs pyg_lib or torch_sparse."""
    try:
        import torch_geometric.typing as t
    except Exception as exc:  # noqa: BLE001
        return f"torch_geometric not importable ({exc.__class__.__name__})"
    if method == "neighbor" and not (t.WITH_PYG_LIB or t.WITH_TORCH_SPARSE):
        return "PyG neighbor sampling needs pyg_lib or torch_sparse (neither installed)"
    return None


def pyg_backend() -> str:
    """Which sampling backend PyG would use here (the ratios depend on it)."""
    try:
        import torch_geometric.typing as t
    except Exception:  # noqa: BLE001
        return "PyG absent"
    return "pyg_lib" if t.WITH_PYG_LIB else "torch_sparse, no pyg_lib" if t.WITH_TORCH_SPARSE else "no backend"


def gather_sort_check(args) -> None:
    """Does reading ids in sorted order help? Times gather_features on real sampled node sets."""
    import gstore
    from gstore.pipeline.features.gather import gather_features
    from gstore.pipeline.loader.throughput import drop_page_cache
    from gstore.pipeline.sampling.neighbor import NeighborSampler

    path = store_path(args)
    g = gstore.open(path)
    sampler = NeighborSampler.from_store(g, FANOUTS)
    train = np.asarray(g.split("train"))
    rng = np.random.default_rng(1)
    sets = [sampler.sample(np.sort(rng.choice(train, args.batch_size, replace=False)), i).nodes
            for i in range(args.batches)]
    out = np.empty((max(len(s) for s in sets), args.dim), np.float32)
    gather_features(g.features, sets[0][:10], out, sort=False)  # compile / load
    print(f"gather of {np.mean([len(s) for s in sets]):.0f} rows per batch, {args.batches} batches:")
    for cold in (False, True):
        for sort in (False, True):
            times = []
            for ids in sets:
                if cold:
                    del g
                    drop_page_cache(path)
                    g = gstore.open(path)
                t = time.perf_counter()
                gather_features(g.features, ids, out, sort=sort)
                times.append(time.perf_counter() - t)
            med = statistics.median(times)
            mb = np.mean([len(s) for s in sets]) * args.dim * 4 / 1e6
            print(f"  {'cold' if cold else 'warm'} sort={sort!s:5s}  median {med * 1e3:7.1f} ms/batch  "
                  f"{mb / med:8.0f} MB/s", flush=True)


# ---------------------------------------------------------------------------------------------
def run_child(args, child: str, cold: bool = False, workers: int | None = None,
              cache_bytes: int = 0, seed: int = 0, pyg_workers: int = 0) -> dict:
    batches = args.cluster_batches if "cluster" in child else args.batches
    cmd = [sys.executable, __file__, "--child", child, "--nodes", str(args.nodes), "--pairs", str(args.pairs),
           "--dim", str(args.dim), "--parts", str(args.parts), "--batches", str(batches),
           "--batch-size", str(args.batch_size), "--clusters-per-batch", str(args.clusters_per_batch),
           "--workers", str(workers or 1), "--prefetch", str(args.prefetch), "--seed", str(seed),
           "--cache-bytes", str(cache_bytes), "--pyg-workers", str(pyg_workers)]
    if cold:
        cmd.append("--cold")
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{child} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict]) -> dict:
    keys = ["batches_per_s", "edges_per_s", "nodes_per_s", "mean_edges", "mean_nodes", "feature_mb_per_s",
            "setup_s"]
    out = {k: statistics.median(r[k] for r in runs) for k in keys}
    out["peak_rss"] = max(r["peak_rss"] for r in runs)
    out["peak_anon"] = max(r.get("peak_anon", 0) for r in runs)
    hr = [r["cache_hit_rate"] for r in runs if r.get("cache_hit_rate") is not None]
    out["cache_hit_rate"] = statistics.median(hr) if hr else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=2_400_000)
    ap.add_argument("--pairs", type=int, default=30_500_000, help="random pairs (x2 directions stored)")
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--parts", type=int, default=1500)
    ap.add_argument("--batches", type=int, default=30, help="timed neighbor batches per run")
    ap.add_argument("--cluster-batches", type=int, default=75,
                    help="timed cluster batches per run (75 = one epoch of 1500 parts at q=20)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--clusters-per-batch", type=int, default=20)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--worker-list", default="1,2", help="gstore worker counts to compare (warm)")
    ap.add_argument("--prefetch", type=int, default=4)
    ap.add_argument("--cache-bytes", type=int, default=0)
    ap.add_argument("--pyg-workers", type=int, default=0, help="(child) PyG DataLoader workers")
    ap.add_argument("--pyg-worker-list", default="0,2", help="PyG num_workers values to compare")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cold", action="store_true")
    ap.add_argument("--skip-pyg", action="store_true")
    ap.add_argument("--methods", default="neighbor,cluster")
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--gather-sort", action="store_true", help="only time sorted vs unsorted gather")
    ap.add_argument("--child", default=None)
    args = ap.parse_args()
    if args.child:
        fn = child_gstore if args.child.startswith("gstore") else child_pyg
        print(json.dumps(fn(args)), flush=True)
        return

    DATA.mkdir(parents=True, exist_ok=True)
    build_graph(args)
    if "cluster" in args.methods.split(","):
        build_reordered(args)
    if args.build_only:
        return
    if args.gather_sort:
        gather_sort_check(args)
        return
    import gstore

    g = gstore.open(store_path(args))
    print(f"graph: {g.num_nodes} nodes, {g.num_edges} stored edges, features {args.dim} x float32; "
          f"train {len(g.split('train'))}; {args.repeats} repeats x {args.batches} neighbor / "
          f"{args.cluster_batches} cluster batches, median",
          flush=True)
    why_not = {m: "--skip-pyg" if args.skip_pyg else pyg_available(m) for m in args.methods.split(",")}
    workers = [int(w) for w in args.worker_list.split(",")]
    pyg_workers = [int(w) for w in args.pyg_worker_list.split(",") if w.strip()]
    backend = pyg_backend()
    # (label, child, workers, store to warm first or None, cold); PyG's workers ride in the same slot
    configs: list[tuple[str, str, int, Path | None, bool]] = []
    for method in args.methods.split(","):
        variants = [("", store_path(args))]
        if method == "cluster":  # the same parts, laid out contiguously (gstore partition --reorder)
            variants.append(("-reordered", reordered_path(args)))
        for suffix, path in variants:
            label = f"gstore {method}{' reordered' if suffix else ''}"
            for w in workers:
                configs.append((f"{label} warm, {w} worker(s)", f"gstore-{method}{suffix}", w, path, False))
            configs.append((f"{label} cold, {workers[-1]} worker(s)", f"gstore-{method}{suffix}",
                            workers[-1], None, True))
        if why_not[method] is None:
            for pw in pyg_workers:
                configs.append((f"PyG {method} (in RAM, {backend}, num_workers={pw})", f"pyg-{method}",
                                pw, None, False))
    # repeats interleave the configurations (A B C A B C ...), so a slow spell of the shared machine
    # hits every configuration alike instead of one configuration's whole median
    runs: dict[str, list[dict]] = {c[0]: [] for c in configs}
    for r in range(args.repeats):
        for label, child, w, warm_path, cold in configs:
            if warm_path is not None:
                read_all(warm_path)  # a cold run before may have evicted it
            if child.startswith("pyg"):
                runs[label].append(run_child(args, child, seed=r, pyg_workers=w))
            else:
                runs[label].append(run_child(args, child, cold=cold, workers=w, seed=r))
            print(f"  repeat {r + 1}/{args.repeats} done: {label} "
                  f"{runs[label][-1]['batches_per_s']:.2f} batches/s", flush=True)
    rows = [(label, median_of(runs[label])) for label, *_ in configs]
    print_table(rows, why_not, runs)


def print_table(rows, why_not, runs: dict[str, list[dict]] | None = None) -> None:
    head = f"{'configuration':44s} {'batches/s':>10s} {'edges/s':>12s} {'nodes/batch':>12s} " \
           f"{'edges/batch':>12s} {'feat MB/s':>10s} {'setup s':>8s} {'peak RSS':>12s} {'anon':>12s}"
    print(head)
    print("-" * len(head))
    for name, r in rows:
        print(f"{name:44s} {r['batches_per_s']:10.2f} {r['edges_per_s']:12.3g} {r['mean_nodes']:12.0f} "
              f"{r['mean_edges']:12.0f} {r['feature_mb_per_s']:10.0f} {r['setup_s']:8.1f} "
              f"{r['peak_rss'] / 2**30:8.2f} GiB {r['peak_anon'] / 2**30:8.2f} GiB")
    for method, why in why_not.items():
        if why:
            print(f"PyG {method} skipped: {why}")
    for method in why_not:
        pygs = [(n, r) for n, r in rows if n.startswith(f"PyG {method}")]
        for label in (f"gstore {method}", f"gstore {method} reordered"):
            best = max((r for n, r in rows if n.startswith(f"{label} warm")),
                       key=lambda r: r["batches_per_s"], default=None)
            for p_name, pyg in pygs if best else ():
                print(f"{label[7:]}: gstore warm (best) / {p_name} = "
                      f"{best['batches_per_s'] / pyg['batches_per_s']:.2f}x batches/s, "
                      f"{best['edges_per_s'] / pyg['edges_per_s']:.2f}x edges/s")
                paired = _paired_ratios(rows, runs, best, p_name)
                if paired:
                    print(f"  per repeat (run next to each other): {' '.join(f'{x:.2f}x' for x in paired)}"
                          f"; min {min(paired):.2f}x, median {statistics.median(paired):.2f}x")


def _paired_ratios(rows, runs, best: dict, pyg_prefix: str) -> list[float]:
    """batches/s of the best gstore configuration over PyG's, repeat by repeat (the two ran in the
    same interleaved round, so they saw the same state of the machine)."""
    if not runs:
        return []
    g_label = next(n for n, r in rows if r is best)
    p_label = next((n for n in runs if n == pyg_prefix or n.startswith(pyg_prefix)), None)
    if p_label is None:
        return []
    return [g["batches_per_s"] / p["batches_per_s"] for g, p in zip(runs[g_label], runs[p_label])]


if __name__ == "__main__":
    main()
