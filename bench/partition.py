"""Benchmark `gstore partition`: edge cut, time and peak RSS of metis vs multilevel vs random.

    flock /tmp/gstore-heavy.lock python bench/partition.py --graphs cit-hepph,sbm,rmat --parts 16,128,1024
    flock /tmp/gstore-heavy.lock python bench/partition.py --graphs rmat --parts 128 --budget-runs

Stores are generated once under --data (default /work/data/partition). Every partition run happens in
a fresh subprocess so its peak RSS is its own. `multilevel` gets a memory budget of 1/--squeeze of the
pymetis estimate (forcing out-of-core coarsening); `--budget-runs` runs multilevel with absolute budgets.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout (a worktree under /work/wt/<name> has it two levels up)
SHARED = next((p / "shared" / "data" for p in ROOT.parents if (p / "shared" / "data").is_dir()),
              ROOT.parent / "shared" / "data")


# ---- graph generation -------------------------------------------------------------------------------
def build_csr_store(path: Path, src: np.ndarray, dst: np.ndarray, n: int, directed: bool) -> None:
    """In-memory CSR build (dedup, rows = destinations) for graphs that fit in RAM."""
    from gstore.builder import StoreBuilder
    from gstore.manifest import StoreManifest

    src = src.astype(np.int64)
    dst = dst.astype(np.int64)
    if not directed:
        src, dst = np.concatenate([src, dst]), np.concatenate([dst, src])
    key = dst * n + src
    del src, dst
    key = np.unique(key)
    rows = key // n
    indices = (key % n).astype(np.int32)
    del key
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    del rows
    with StoreBuilder(path, force=True) as b:
        b.write_array("indptr", indptr)
        b.write_array("indices", indices)
        b.write_array("node_ids", np.arange(n, dtype=np.int64))
        b.commit(StoreManifest(num_nodes=n, num_edges=len(indices), directed=directed))


def gen_cit_hepph(path: Path) -> None:
    with gzip.open(SHARED / "cit-HepPh" / "Cit-HepPh.txt.gz", "rt") as fh:
        data = np.loadtxt(fh, dtype=np.int64, comments="#")
    ids, inv = np.unique(data.ravel(), return_inverse=True)
    inv = inv.reshape(-1, 2)
    build_csr_store(path, inv[:, 0], inv[:, 1], len(ids), directed=True)


def gen_sbm(path: Path, n: int = 256_000, blocks: int = 128, m: int = 2_560_000, p_intra: float = 0.8,
            seed: int = 0) -> None:
    """Undirected SBM-style graph: `blocks` equal communities, a fraction p_intra of edges inside."""
    rng = np.random.default_rng(seed)
    size = n // blocks
    src = rng.integers(0, n, m)
    comm = src // size
    inside = rng.random(m) < p_intra
    dst = np.where(inside, comm * size + rng.integers(0, size, m), rng.integers(0, n, m))
    # shuffle ids so communities are not contiguous id ranges
    relabel = rng.permutation(n)
    build_csr_store(path, relabel[src], relabel[dst], n, directed=False)


def gen_rmat(path: Path, scale: int = 21, m: int = 20_000_000, seed: int = 0,
             abcd=(0.57, 0.19, 0.19, 0.05)) -> None:
    """Directed R-MAT graph with 2^scale nodes and m edges (Graph500 parameters), ids shuffled."""
    rng = np.random.default_rng(seed)
    n = 1 << scale
    src = np.zeros(m, dtype=np.int64)
    dst = np.zeros(m, dtype=np.int64)
    a, b, c, _ = abcd
    for bit in range(scale):
        r = rng.random(m)
        down = r >= a + b              # quadrant c or d: source bit set
        right = ((r >= a) & (r < a + b)) | (r >= a + b + c)
        src |= down.astype(np.int64) << bit
        dst |= right.astype(np.int64) << bit
    relabel = rng.permutation(n)
    build_csr_store(path, relabel[src], relabel[dst], n, directed=True)


def gen_cit_hepph_undirected(path: Path) -> None:
    """cit-HepPh stored undirected (both directions of every citation): real, heavy-tailed degrees."""
    with gzip.open(SHARED / "cit-HepPh" / "Cit-HepPh.txt.gz", "rt") as fh:
        data = np.loadtxt(fh, dtype=np.int64, comments="#")
    ids, inv = np.unique(data.ravel(), return_inverse=True)
    inv = inv.reshape(-1, 2)
    keep = inv[:, 0] != inv[:, 1]
    build_csr_store(path, inv[keep, 0], inv[keep, 1], len(ids), directed=False)


def gen_rmat_undirected(path: Path, scale: int = 18, m: int = 4_000_000, seed: int = 1) -> None:
    """Undirected R-MAT (Graph500 parameters), 2^18 nodes: hubs of ~10^4 neighbours, no communities."""
    rng = np.random.default_rng(seed)
    n = 1 << scale
    src = np.zeros(m, dtype=np.int64)
    dst = np.zeros(m, dtype=np.int64)
    for bit in range(scale):
        r = rng.random(m)
        src |= (r >= 0.76).astype(np.int64) << bit
        dst |= (((r >= 0.57) & (r < 0.76)) | (r >= 0.95)).astype(np.int64) << bit
    keep = src != dst
    relabel = rng.permutation(n)
    build_csr_store(path, relabel[src[keep]], relabel[dst[keep]], n, directed=False)


def gen_chung_lu(path: Path, n: int = 200_000, m: int = 2_000_000, exponent: float = 2.1,
                 blocks: int = 64, p_intra: float = 0.7, seed: int = 2) -> None:
    """Power-law (Chung-Lu) graph with planted communities: expected degree of node i ~ i^(-1/(g-1))
    (g = `exponent`, so the top hubs get thousands of neighbours); a fraction p_intra of edges joins
    two nodes of one of `blocks` communities, both endpoints drawn by weight. Undirected."""
    rng = np.random.default_rng(seed)
    w = (np.arange(n) + 1.0) ** (-1.0 / (exponent - 1.0))
    comm = rng.integers(0, blocks, n)
    src = rng.choice(n, m, p=w / w.sum())
    inside = rng.random(m) < p_intra
    dst = rng.choice(n, m, p=w / w.sum())
    # intra-community endpoint: weighted draw among src's community members
    order = np.argsort(comm, kind="stable")
    starts = np.searchsorted(comm[order], np.arange(blocks + 1))
    cw = np.cumsum(w[order])
    c = comm[src[inside]]
    lo = np.where(starts[c] > 0, cw[np.maximum(starts[c] - 1, 0)], 0.0)
    hi = cw[starts[c + 1] - 1]
    pos = np.searchsorted(cw, lo + rng.random(len(c)) * (hi - lo), side="right")
    dst[inside] = order[np.minimum(pos, starts[c + 1] - 1)]
    keep = src != dst
    relabel = rng.permutation(n)
    build_csr_store(path, relabel[src[keep]], relabel[dst[keep]], n, directed=False)


def gen_dcsbm(path: Path, n: int = 200_000, communities: int = 64, degree: float = 20.0,
              skew: float = 3.0, seed: int = 3) -> None:
    """Degree-corrected SBM from `gstore generate sbm --degree-skew` (heavy-tailed degrees inside
    planted communities), ingested undirected."""
    raw = path.parent / f"{path.name}.raw"
    gs = [sys.executable, "-m", "gstore"]
    subprocess.run(gs + ["generate", "sbm", "-n", str(n), "--communities", str(communities),
                         "-d", str(degree), "--degree-skew", str(skew), "-f", "0", "--format", "npy",
                         "--dense-ids", "--seed", str(seed), "-o", str(raw), "--force", "-q"], check=True)
    edges = next(raw.glob("edges.*"))
    subprocess.run(gs + ["ingest", str(edges), "-o", str(path), "--undirected", "--force", "-q"],
                   check=True)


GRAPHS = {"cit-hepph": gen_cit_hepph, "sbm": gen_sbm, "rmat": gen_rmat,
          "cit-hepph-u": gen_cit_hepph_undirected, "rmat18-u": gen_rmat_undirected,
          "chung-lu": gen_chung_lu, "dcsbm": gen_dcsbm}


# ---- one run, in a subprocess -------------------------------------------------------------------------
def single_run(store: str, k: int, method: str, budget: str, seed: int) -> dict:
    import gstore
    from gstore.memory import peak_rss_bytes, reset_peak_rss
    from gstore.pipeline.partition.partition import partition_store
    from gstore.pipeline.partition.refine import edge_cut
    from gstore.pipeline.partition.symmetrize import store_csr

    if method == "random":
        reset_peak_rss()
        g = gstore.open(store)
        t = time.perf_counter()
        parts = (np.random.default_rng(seed).permutation(g.num_nodes) % k).astype(np.int32)
        cut = edge_cut(store_csr(g), parts, 1 << 22).fraction
        return {"edge_cut": cut, "balance": 1.0, "seconds": time.perf_counter() - t,
                "peak_rss": peak_rss_bytes(), "levels": []}
    r = partition_store(store, k, method=method, memory_budget=budget, seed=seed, force=True)
    return {"edge_cut": r.edge_cut, "balance": r.balance, "seconds": r.seconds, "peak_rss": r.peak_rss,
            "levels": r.levels, "metis_estimate": r.metis_estimate, "method": r.method}


def run_in_subprocess(store: Path, k: int, method: str, budget: str, seed: int) -> dict:
    cmd = [sys.executable, __file__, "--single", str(store), str(k), method, budget, str(seed)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else f"rc {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def metis_estimate(store: Path) -> int:
    import gstore
    from gstore.pipeline.partition.metis import metis_bytes_estimate

    g = gstore.open(store)
    entries = g.num_edges * (2 if g.directed else 1)
    return metis_bytes_estimate(g.num_nodes, entries)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--graphs", default="cit-hepph,sbm,rmat")
    ap.add_argument("--parts", default="16,128,1024")
    ap.add_argument("--data", default="/work/data/partition")
    ap.add_argument("--squeeze", type=float, default=8.0,
                    help="multilevel budget = pymetis estimate / squeeze")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default="metis,multilevel,random")
    ap.add_argument("--budget-runs", default="", help="comma list of absolute multilevel budgets")
    ap.add_argument("--single", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.single:
        store, k, method, budget, seed = args.single
        print(json.dumps(single_run(store, int(k), method, budget, int(seed))))
        return
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    from gstore.memory import format_bytes

    for name in args.graphs.split(","):
        store = data / f"{name}.store"
        if not (store / "zarr.json").exists():
            t = time.perf_counter()
            GRAPHS[name](store)
            print(f"# generated {name} in {time.perf_counter() - t:.1f}s", flush=True)
        import gstore

        g = gstore.open(store)
        est = metis_estimate(store)
        print(f"\n## {name}: {g.num_nodes:,} nodes, {g.num_edges:,} stored edges "
              f"({'directed' if g.directed else 'undirected'}), pymetis estimate {format_bytes(est)}",
              flush=True)
        if args.budget_runs:
            print("| graph | K | method | budget | edge cut | balance | time s | peak RSS | levels (nodes) |")
            print("|---|---|---|---|---|---|---|---|---|")
            for budget in args.budget_runs.split(","):
                for k in [int(x) for x in args.parts.split(",")]:
                    r = run_in_subprocess(store, k, "multilevel", budget, args.seed)
                    _row(name, k, "multilevel", budget, r)
            continue
        ml_budget = str(max(1 << 16, int(est / args.squeeze)))
        print(f"multilevel budget: {format_bytes(int(ml_budget))} (estimate / {args.squeeze:g})")
        print("| graph | K | method | edge cut | vs metis | vs random | balance | time s | peak RSS | levels (nodes) |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for k in [int(x) for x in args.parts.split(",")]:
            res = {}
            for method in args.methods.split(","):
                budget = ml_budget if method == "multilevel" else "20GiB"
                res[method] = run_in_subprocess(store, k, method, budget, args.seed)
            for method, r in res.items():
                _row(name, k, method, None, r, res.get("metis"), res.get("random"))


def _row(name, k, method, budget, r, metis=None, rnd=None) -> None:
    from gstore.memory import format_bytes

    if "error" in r:
        print(f"| {name} | {k} | {method} | error: {r['error']} |", flush=True)
        return
    levels = " > ".join(f"{n:,}" for n, _ in r.get("levels", [])) or "-"
    if budget is not None:
        print(f"| {name} | {k} | {method} | {budget} | {r['edge_cut']:.4f} | {r['balance']:.3f} | "
              f"{r['seconds']:.1f} | {format_bytes(r['peak_rss'])} | {levels} |", flush=True)
        return
    vs_m = f"{r['edge_cut'] / metis['edge_cut']:.3f}x" if metis and "error" not in metis and metis["edge_cut"] else "-"
    vs_r = f"{rnd['edge_cut'] / r['edge_cut']:.2f}x better" if rnd and "error" not in rnd and r["edge_cut"] else "-"
    print(f"| {name} | {k} | {method} | {r['edge_cut']:.4f} | {vs_m} | {vs_r} | {r['balance']:.3f} | "
          f"{r['seconds']:.1f} | {format_bytes(r['peak_rss'])} | {levels} |", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
