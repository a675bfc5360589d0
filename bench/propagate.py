"""Benchmark `gstore propagate` (out of core) against scipy.sparse in RAM: A_hat^K X, same graph.

    flock /tmp/gstore-heavy.lock python bench/propagate.py \\
        --store /work/data/bench_train/labelled_n2400000_p30500000_f100 --scratch /work/scratch/prop-bench

The store is copied to --scratch first (propagate writes into it) and the copy removed at the end.
Each side runs in its own child process (`--child gstore|scipy`), so its peak RSS (VmHWM) is its
own: gstore under --memory-budget; scipy builds A_hat = D^-1/2 (A+I) D^-1/2 (or D^-1 (A+I)) as a
CSR matrix in RAM with the features and repeats `A_hat @ X` K times. scipy's hop K is saved to the
scratch dir and compared with gstore's (max abs difference, float32). `--small-budget` adds one
gstore run whose features exceed its budget several times (panels re-read per block).
Prints one JSON line per run and a summary table; --repeat R runs each side R times (medians).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STORE = "/work/data/bench_train/labelled_n2400000_p30500000_f100"


def _status(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


# ---- children -----------------------------------------------------------------------------------
def child_gstore(store: str, hops: int, norm: str, budget: str) -> dict:
    from gstore.pipeline.propagation import PropagationParams, propagate

    t = time.perf_counter()
    r = propagate(store, PropagationParams(hops=hops, norm=norm), memory_budget=budget, force=True)
    return {"side": "gstore", "budget": budget, "seconds": time.perf_counter() - t,
            "seconds_per_hop": r.seconds_per_hop, "peak_rss_bytes": r.peak_rss_bytes,
            "peak_anon_bytes": r.peak_anon_bytes, "start_rss_bytes": r.start_rss_bytes, "plan": r.plan,
            "read_bytes": [h.read_bytes for h in r.hop_stats], "wait_s": [h.wait_s for h in r.hop_stats],
            "compute_s": [h.compute_s for h in r.hop_stats], "write_s": [h.write_s for h in r.hop_stats]}


def child_scipy(store: str, hops: int, norm: str, out: str) -> dict:
    import scipy.sparse as sp

    import gstore

    g = gstore.open(store)
    n = g.num_nodes
    t0 = time.perf_counter()
    indptr, indices = np.array(g.indptr), np.array(g.indices)
    a = sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(n, n))
    del indptr, indices
    a = (a + sp.identity(n, dtype=np.float32, format="csr")).tocsr()
    d = np.asarray(a.sum(axis=1), dtype=np.float64).ravel()
    if norm == "sym":
        s = (1.0 / np.sqrt(d)).astype(np.float32)
        a = (sp.diags(s) @ a @ sp.diags(s)).tocsr()
    else:
        a = (sp.diags((1.0 / d).astype(np.float32)) @ a).tocsr()
    x = np.array(g.features, dtype=np.float32)
    build = time.perf_counter() - t0
    per_hop = []
    for _ in range(hops):
        t = time.perf_counter()
        x = a @ x
        per_hop.append(time.perf_counter() - t)
    anon = _status("RssAnon:")
    np.save(out, x)
    return {"side": "scipy", "seconds": time.perf_counter() - t0, "build_s": build,
            "seconds_per_hop": per_hop, "peak_rss_bytes": _status("VmHWM:"), "end_anon_bytes": anon,
            "matrix_bytes": int(a.data.nbytes + a.indices.nbytes + a.indptr.nbytes)}


def run_child(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], capture_output=True, text=True,
                          cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def max_abs_diff(store: str, hops: int, norm: str, scipy_out: str) -> float:
    import gstore
    from gstore.pipeline.propagation import PropagationParams, open_propagated

    got = open_propagated(gstore.open(store), PropagationParams(hops=hops, norm=norm)).hops[hops]
    want = np.load(scipy_out, mmap_mode="r")
    worst = 0.0
    for lo in range(0, len(want), 1 << 18):
        hi = lo + (1 << 18)
        worst = max(worst, float(np.max(np.abs(np.asarray(got[lo:hi], np.float32) - want[lo:hi]), initial=0.0)))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default=DEFAULT_STORE)
    ap.add_argument("--scratch", default="/work/scratch/prop-bench")
    ap.add_argument("--hops", type=int, default=3)
    ap.add_argument("--norm", default="sym", choices=["sym", "rw"])
    ap.add_argument("--budget", default="2GiB")
    ap.add_argument("--small-budget", default="256MiB", help="the over-budget run ('' to skip)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the scratch copy")
    ap.add_argument("--child", choices=["gstore", "scipy"], help=argparse.SUPPRESS)
    ap.add_argument("--child-budget", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child == "gstore":
        print(json.dumps(child_gstore(a.store, a.hops, a.norm, a.child_budget)))
        return
    if a.child == "scipy":
        print(json.dumps(child_scipy(a.store, a.hops, a.norm, a.child_out)))
        return

    scratch = Path(a.scratch)
    if scratch.exists():
        raise SystemExit(f"{scratch} exists; remove it or pass another --scratch")
    scratch.mkdir(parents=True)
    store = scratch / "store"
    try:
        shutil.copytree(a.store, store)
        scipy_out = str(scratch / "scipy_hopK.npy")
        common = ["--store", str(store), "--hops", str(a.hops), "--norm", a.norm]
        runs: dict[str, list[dict]] = {"gstore": [], "scipy": [], "gstore-small": []}
        for _ in range(a.repeat):         # interleaved, so a noisy neighbour hits both sides
            runs["scipy"].append(run_child(common + ["--child", "scipy", "--child-out", scipy_out]))
            print(json.dumps(runs["scipy"][-1]), flush=True)
            runs["gstore"].append(run_child(common + ["--child", "gstore", "--child-budget", a.budget]))
            print(json.dumps(runs["gstore"][-1]), flush=True)
        diff = max_abs_diff(str(store), a.hops, a.norm, scipy_out)
        if a.small_budget:
            for _ in range(a.repeat):
                runs["gstore-small"].append(run_child(common + ["--child", "gstore", "--child-budget", a.small_budget]))
                print(json.dumps(runs["gstore-small"][-1]), flush=True)
            diff_small = max_abs_diff(str(store), a.hops, a.norm, scipy_out)
        import gstore

        feats = gstore.open(store).manifest.arrays["features"].logical_bytes
        med = {k: {m: statistics.median(r[m] for r in v) for m in ("seconds", "peak_rss_bytes")}
               for k, v in runs.items() if v}
        gib = 2 ** 30
        print(f"\nA_hat^{a.hops} X ({a.norm}), {a.store}, features {feats / gib:.2f} GiB, {a.repeat} run(s), medians")
        print(f"{'side':<28}{'seconds':>9}{'s/hop':>8}{'peak RSS GiB':>14}{'peak anon GiB':>15}")
        for k, v in runs.items():
            if not v:
                continue
            label = {"gstore": f"gstore --memory-budget {a.budget}", "scipy": "scipy (in RAM, incl. build)",
                     "gstore-small": f"gstore --memory-budget {a.small_budget}"}[k]
            anon = statistics.median(r.get("peak_anon_bytes", r.get("end_anon_bytes", 0)) for r in v)
            hop = statistics.median(statistics.mean(r["seconds_per_hop"]) for r in v)
            print(f"{label:<28}{med[k]['seconds']:>9.1f}{hop:>8.1f}{med[k]['peak_rss_bytes'] / gib:>14.2f}"
                  f"{anon / gib:>15.2f}")
        sc_hops = statistics.median(sum(r["seconds_per_hop"]) for r in runs["scipy"])
        print(f"time ratio scipy/gstore: {med['scipy']['seconds'] / med['gstore']['seconds']:.2f} (total), "
              f"{sc_hops / med['gstore']['seconds']:.2f} (scipy's hops only, without building A_hat)")
        print(f"max |gstore - scipy| at hop {a.hops}: {diff:.3g}"
              + (f" (small budget: {diff_small:.3g})" if a.small_budget else ""))
    finally:
        if not a.keep:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
