"""Data-parallel training on one machine: memory and epoch time of 1 vs N ranks (docs/distributed.md).

    flock /tmp/gstore-heavy.lock python bench/ddp.py STORE --nproc 1 2 --epochs 1 --repeats 1

Each configuration runs `gstore train STORE --nproc N` (torchrun's agent, N spawned ranks) and
samples /proc/PID/smaps_rollup of every rank every 0.2 s: peak RSS, peak PSS (a page shared by k
processes counts 1/k in each: the sum of the ranks' PSS is what they hold together) and their file
and anonymous parts. If the ranks share the store through the page cache, the sum of PSS of N ranks
stays near one rank's, while the sum of their RSS grows N-fold. Epoch time is metrics.jsonl's
`seconds` (the same global batch: --batch-size B / N per rank).

    python bench/ddp.py STORE --share-check        # a few seconds: the mechanism alone

--share-check: 1, then 2 spawned processes open the store and touch every page of its features
and CSR (what N ranks' loaders do over an epoch), and print their smaps_rollup numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path




def rollup(pid: int) -> dict[str, int] | None:
    """smaps_rollup of `pid` in bytes (Rss, Pss, Pss_Anon, Pss_File), None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    out = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith(":"):
            out[parts[0][:-1]] = int(parts[1]) * 1024
    return out


def children(pid: int) -> list[int]:
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(k) for k in kids]


def ranks_of(launcher: int) -> list[int]:
    """The rank processes: the launcher's python children that run `-m gstore` (the agent spawns them)."""
    out = []
    stack = children(launcher)
    while stack:
        p = stack.pop()
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"gstore" in cmd and b"-m" in cmd:
            out.append(p)
        stack.extend(children(p))
    return out


def run(store: str, nproc: int, batch: int, epochs: int, extra: list[str]) -> dict:
    work = Path(tempfile.mkdtemp(prefix="ddp-bench-", dir=os.environ.get("DDP_BENCH_TMP")))
    cmd = [sys.executable, "-m", "gstore", "train", store, "-o", str(work / "run"), "--epochs", str(epochs),
           "--batch-size", str(batch // nproc), "--device", "cpu", "-q", "--json", "--nproc", str(nproc), *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak: dict[int, dict[str, int]] = {}
    total_peak = {"Rss": 0, "Pss": 0}
    while proc.poll() is None:
        now = {"Rss": 0, "Pss": 0}
        for p in ranks_of(proc.pid):
            r = rollup(p)
            if r is None:
                continue
            mine = peak.setdefault(p, {})
            for k in ("Rss", "Pss", "Pss_Anon", "Pss_File"):
                mine[k] = max(mine.get(k, 0), r.get(k, 0))
            now["Rss"] += r.get("Rss", 0)
            now["Pss"] += r.get("Pss", 0)
        for k in now:
            total_peak[k] = max(total_peak[k], now[k])
        time.sleep(0.2)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"nproc {nproc} failed:\n{err[-3000:]}")
    metrics = [json.loads(ln) for ln in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    result = json.loads(out.strip().splitlines()[-1])
    shutil.rmtree(work)
    gib = 2 ** 30
    return {"nproc": nproc, "wall_s": wall, "epoch_s": [m["seconds"] for m in metrics],
            "test_accuracy": result.get("test_accuracy"),
            "peak_rss_per_rank_gib": [round(v["Rss"] / gib, 3) for v in peak.values()],
            "peak_pss_per_rank_gib": [round(v["Pss"] / gib, 3) for v in peak.values()],
            "peak_pss_anon_per_rank_gib": [round(v["Pss_Anon"] / gib, 3) for v in peak.values()],
            "peak_pss_file_per_rank_gib": [round(v["Pss_File"] / gib, 3) for v in peak.values()],
            "peak_sum_rss_gib": round(total_peak["Rss"] / gib, 3),
            "peak_sum_pss_gib": round(total_peak["Pss"] / gib, 3)}


SHARE_CHILD = r"""
import sys, time, numpy as np, gstore
s = gstore.open(sys.argv[1])
for a in (s.features, s.indptr, s.indices):
    for i in range(0, a.shape[0], 1 << 16):
        float(np.asarray(a[i:i + (1 << 16)]).ravel()[::512].sum())   # a read in every 4 KiB page
print("ready", flush=True)
time.sleep(4)
"""


def share_check(store: str) -> None:
    gib = 2 ** 30
    for n in (1, 2):
        procs = [subprocess.Popen([sys.executable, "-c", SHARE_CHILD, store], stdout=subprocess.PIPE, text=True)
                 for _ in range(n)]
        for p in procs:
            p.stdout.readline()
        r = [rollup(p.pid) for p in procs]
        print(json.dumps({"procs": n, "rss_gib": [round(x["Rss"] / gib, 3) for x in r],
                          "pss_gib": [round(x["Pss"] / gib, 3) for x in r],
                          "pss_file_gib": [round(x["Pss_File"] / gib, 3) for x in r],
                          "pss_anon_gib": [round(x["Pss_Anon"] / gib, 3) for x in r],
                          "sum_rss_gib": round(sum(x["Rss"] for x in r) / gib, 3),
                          "sum_pss_gib": round(sum(x["Pss"] for x in r) / gib, 3)}), flush=True)
        for p in procs:
            p.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch-size", type=int, default=1024, help="global batch (split among the ranks)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--share-check", action="store_true", help="only map the store in 1 and 2 processes")
    a, extra = ap.parse_known_args()      # the rest: more gstore train options (after --)
    if a.share_check:
        share_check(a.store)
        return
    extra = [x for x in extra if x != "--"]
    rows = []
    for rep in range(a.repeats):
        for n in a.nproc:
            r = run(a.store, n, a.batch_size, a.epochs, extra)
            r["repeat"] = rep
            rows.append(r)
            print(json.dumps(r), flush=True)
    base = [r for r in rows if r["nproc"] == a.nproc[0]]
    for n in a.nproc[1:]:
        mine = [r for r in rows if r["nproc"] == n]
        e1 = sorted(sum(r["epoch_s"]) for r in base)[len(base) // 2]
        en = sorted(sum(r["epoch_s"]) for r in mine)[len(mine) // 2]
        print(f"nproc {n} vs {a.nproc[0]}: epoch time {en:.1f} s vs {e1:.1f} s ({en / e1:.2f}x); sum of PSS "
              f"{mine[0]['peak_sum_pss_gib']} vs {base[0]['peak_sum_pss_gib']} GiB, sum of RSS "
              f"{mine[0]['peak_sum_rss_gib']} vs {base[0]['peak_sum_rss_gib']} GiB")


if __name__ == "__main__":
    main()
