"""Write a random edge-list CSV (src,dst int ids) by streaming numpy blocks, for ingest benchmarks.

    python bench/ingest_make_csv.py /work/data/e10m.csv --edges 10e6 --nodes 1e6 [--sparse]
"""
from __future__ import annotations

import argparse

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--edges", type=float, required=True)
    ap.add_argument("--nodes", type=float, required=True)
    ap.add_argument("--sparse", action="store_true", help="ids spread over [0, 2^40) instead of 0..N-1")
    ap.add_argument("--block", type=int, default=10_000_000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    e, n = int(a.edges), int(a.nodes)
    rng = np.random.default_rng(a.seed)
    ids = np.sort(rng.choice(1 << 40, n, replace=False)) if a.sparse else None
    opts = pcsv.WriteOptions(include_header=True)
    with pcsv.CSVWriter(a.out, pa.schema([("src", pa.int64()), ("dst", pa.int64())]), write_options=opts) as w:
        for s in range(0, e, a.block):
            k = min(a.block, e - s)
            src, dst = rng.integers(0, n, k), rng.integers(0, n, k)
            if ids is not None:
                src, dst = ids[src], ids[dst]
            w.write_table(pa.table({"src": src, "dst": dst}))


if __name__ == "__main__":
    main()
