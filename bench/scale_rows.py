"""Writing node rows that arrive in random id order (a node table's order) into an array file:
gstore's RowDistributor against the two ways ingest did it before, same rows, same machine.

Usage:
    python bench/scale_rows.py DIR [--rows 4194304] [--dim 64] [--chunk 1048576] [--budget 1GiB]

  pwrite-runs   main before issue 11: sort each chunk, one positional write per run of consecutive
                ids (runs have length ~1 in a random order: a Python call and a syscall per row)
  mmap-scatter  a writable shared map, one numpy assignment per chunk, pages released every
                budget/4 touched (the kernel writes dirty pages back again after every chunk)
  distributor   pipeline/ingest/row_scatter.py: spill buckets by id range, then each bucket once
Prints seconds and bytes written (/proc/self/io write_bytes, fsync included) per variant.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np


def _write_bytes() -> int:
    with open("/proc/self/io") as fh:
        for line in fh:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--rows", type=int, default=1 << 22)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--chunk", type=int, default=1 << 20)
    ap.add_argument("--budget", default="1GiB")
    ap.add_argument("--variants", default="distributor,mmap-scatter,pwrite-runs")
    args = ap.parse_args()
    from gstore.memory import parse_bytes, release_pages
    from gstore.pipeline.ingest.row_scatter import RowDistributor

    budget = parse_bytes(args.budget)
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=False)
    n, f = args.rows, args.dim
    perm = np.random.default_rng(0).permutation(n)
    rows = (np.arange(n, dtype=np.float32)[:, None] % 251 + np.arange(f)).astype(np.float16)
    row_bytes = f * 2
    results = {}
    for variant in args.variants.split(","):
        out = d / f"{variant}.bin"
        fd = os.open(out, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.ftruncate(fd, n * row_bytes)
        w0, t0 = _write_bytes(), time.perf_counter()
        if variant == "distributor":
            def write_rows(start, block):
                os.pwrite(fd, np.ascontiguousarray(block).tobytes(), start * row_bytes)
            dist = RowDistributor(write_rows, n, (f,), np.float16, max(1 << 16, budget // 8), d, "bench")
            for lo in range(0, n, args.chunk):
                dist.add(perm[lo:lo + args.chunk], rows[lo:lo + args.chunk])
            dist.finish()
        elif variant == "mmap-scatter":
            mm = np.memmap(out, dtype=np.float16, mode="r+", shape=(n, f))
            touched = 0
            for lo in range(0, n, args.chunk):
                ids = perm[lo:lo + args.chunk]
                mm[ids] = rows[lo:lo + args.chunk]
                touched += len(ids) * 4096
                if touched >= budget // 4:
                    release_pages(mm)
                    touched = 0
            mm.flush()
            del mm
        elif variant == "pwrite-runs":
            for lo in range(0, n, args.chunk):
                ids = perm[lo:lo + args.chunk]
                order = np.argsort(ids, kind="stable")
                dd, vv = ids[order], rows[lo:lo + args.chunk][order]
                breaks = np.flatnonzero(np.diff(dd) != 1) + 1
                starts = np.concatenate([[0], breaks])
                ends = np.concatenate([breaks, [len(dd)]])
                for s, e in zip(starts.tolist(), ends.tolist()):
                    os.pwrite(fd, vv[s:e].tobytes(), int(dd[s]) * row_bytes)
        os.fsync(fd)
        seconds, written = time.perf_counter() - t0, _write_bytes() - w0
        check = np.fromfile(out, dtype=np.float16).reshape(n, f)
        ok = bool(np.array_equal(check[perm[:1000]], rows[:1000]))
        os.close(fd)
        out.unlink()
        results[variant] = seconds
        print(f"{variant:13s} {seconds:8.1f} s  written {written / 2**30:6.2f} GiB "
              f"(array {n * row_bytes / 2**30:.2f} GiB)  correct {ok}", flush=True)
    d.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
