"""Depth scaling: seconds per batch and per epoch for 2..6 layers, neighbor sampling vs histories.

Usage:
    flock /tmp/gstore-heavy.lock python bench/depth.py [--nodes 200000] [--depths 2,3,4,5,6]
        [--methods sage,gas,scalable-gcn] [--json out.json]

One generated SBM (undirected, avg degree 10, 32-d float32 features, 2% train seeds), partitioned
and reordered for gas. For every depth L and method, one epoch of `gstore train` (the CLI, in its
own process) with hidden 64, SAGE layers, batch 256:
  * sage: fanout 10 at every layer, so a batch's input grows as 10^L until it covers the graph;
  * history gas: the partition's clusters (4 per batch) with their full 1-hop halo; layers >= 2
    read the halo's rows from the on-disk histories;
  * history scalable-gcn: 256 train seeds, 10 sampled in-neighbors, read from the histories the same way.
The timed numbers come from the run's metrics.jsonl (the training epoch alone: neither the history
fill, the sampled evaluation nor the final layer-wise inference). Prints s/batch, s/epoch, and
each method's s/batch relative to its own L=2 (linear growth: about L/2; exponential: ~10^(L-2)).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORK = Path(tempfile.gettempdir()) / "gstore-bench-depth"
GSTORE = [sys.executable, "-m", "gstore"]


def sh(args: list[str]) -> str:
    out = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"failed: {' '.join(map(str, args))}\n{out.stderr[-2000:]}")
    return out.stdout


def build(nodes: int, parts: int) -> Path:
    store = WORK / f"sbm{nodes}.gstore"
    if (store / "zarr.json").exists():
        return store
    raw = WORK / f"sbm{nodes}-raw"
    sh(GSTORE + ["generate", "sbm", "-n", nodes, "--communities", 10, "-d", 10, "-f", 32, "--snr", 1.0,
                 "--mixing", 0.3, "--train-frac", 0.02, "--val-frac", 0.005, "--dense-ids", "--format", "npy",
                 "-o", raw, "--force", "-q"])
    edges = next(raw.glob("edges.*"))
    sh(GSTORE + ["ingest", edges, "-o", store, "--undirected", "--nodes", raw / "nodes.csv",
                 "--features", raw / "features.npy", "-q", "--force"])
    sh(GSTORE + ["partition", store, "-k", parts, "--reorder", "-q"])
    return store


def run(store: Path, method: str, layers: int, batch: int) -> dict:
    run_dir = WORK / f"run-{method}-{layers}"
    fan = ",".join(["10"] * layers)
    args = GSTORE + ["train", store, "-o", run_dir, "--force", "--epochs", 1, "--layers", layers,
                     "--hidden", 64, "--fanouts", fan, "--batch-size", batch, "--num-workers", 2,
                     "--json", "-q"]
    if method == "sage":
        args += ["--method", "sage"]
    else:
        args += ["--method", "history", "--variant", method]
        if method == "gas":
            args += ["--clusters-per-batch", 4]
    t0 = time.perf_counter()
    res = json.loads(sh(args).strip().splitlines()[-1])
    wall = time.perf_counter() - t0
    rec = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()][-1]
    return {"method": method, "layers": layers, "batches": rec["batches"], "epoch_s": rec["seconds"],
            "s_per_batch": rec["seconds"] / rec["batches"], "wait_share": rec.get("wait_share"),
            "wall_s": wall, "peak_rss": res.get("peak_rss_bytes"), "test_accuracy": res.get("test_accuracy"),
            "extra": res.get("extra", {})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=200_000)
    ap.add_argument("--parts", type=int, default=400)
    ap.add_argument("--depths", default="2,3,4,5,6")
    ap.add_argument("--methods", default="sage,gas,scalable-gcn")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    store = build(args.nodes, args.parts)
    rows = []
    for method in args.methods.split(","):
        for layers in (int(d) for d in args.depths.split(",")):
            r = run(store, method, layers, args.batch_size)
            rows.append(r)
            print(f"{method:13s} L={layers}: {r['s_per_batch']:.4f} s/batch, {r['epoch_s']:.2f} s/epoch "
                  f"({r['batches']} batches), wait {100 * (r['wait_share'] or 0):.1f}%, "
                  f"test acc {r['test_accuracy']}", flush=True)
    print(f"\n{'method':13s} {'L':>2s} {'s/batch':>9s} {'s/epoch':>9s} {'vs L=2':>8s}")
    for r in rows:
        base = next(b for b in rows if b["method"] == r["method"] and b["layers"] == min(
            x["layers"] for x in rows if x["method"] == r["method"]))
        print(f"{r['method']:13s} {r['layers']:2d} {r['s_per_batch']:9.4f} {r['epoch_s']:9.2f} "
              f"{r['s_per_batch'] / base['s_per_batch']:7.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
