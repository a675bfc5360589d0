"""Parse throughput of the ingest edge reader (edges/s) on a generated int edge list.

Usage: flock /tmp/gstore-heavy.lock python bench/ingest_readers.py [--edges 20000000] [--dir /work/data]
Writes DIR/bench_edges_<E>.{csv,csv.gz,tsv,zst,parquet,npy} once (reused), then times a full pass of
iter_edge_chunks over each (checks the edge count and a checksum against the generated arrays).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from gstore.pipeline.ingest.chunks import EdgeReadOptions
from gstore.pipeline.ingest.edge_reader import iter_edge_chunks


def make_inputs(d: Path, e: int, formats: list[str]) -> tuple[dict[str, Path], int]:
    rng = np.random.default_rng(1)
    src = rng.integers(0, 50_000_000, e)
    dst = rng.integers(0, 50_000_000, e)
    checksum = int((src * 3 + dst).sum())
    table = pa.table({"src": src, "dst": dst})
    paths = {}
    for fmt in formats:
        p = d / f"bench_edges_{e}.{fmt}"
        paths[fmt] = p
        if p.exists():
            continue
        tmp = p.with_name(p.name + ".tmp")
        if fmt == "csv":
            pcsv.write_csv(table, tmp, pcsv.WriteOptions(include_header=False))
        elif fmt == "tsv":
            pcsv.write_csv(table, tmp, pcsv.WriteOptions(include_header=True, delimiter="\t",
                                                         quoting_style="none"))
        elif fmt in ("csv.gz", "csv.zst"):
            codec = "gzip" if fmt == "csv.gz" else "zstd"
            with pa.CompressedOutputStream(str(tmp), codec) as out:
                pcsv.write_csv(table, out, pcsv.WriteOptions(include_header=False))
        elif fmt == "parquet":
            pq.write_table(table, tmp)
        elif fmt == "npy":
            with open(tmp, "wb") as f:
                np.save(f, np.stack([src, dst], 1))
        os.replace(tmp, p)
    return paths, checksum


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--edges", type=int, default=20_000_000)
    ap.add_argument("--dir", default="/work/data")
    ap.add_argument("--formats", default="csv,tsv,csv.gz,csv.zst,parquet,npy")
    ap.add_argument("--id-type", default="auto")
    args = ap.parse_args()
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    paths, checksum = make_inputs(d, args.edges, args.formats.split(","))
    print(f"{'format':<10}{'id_type':<8}{'block':>7}{'MiB':>9}{'seconds':>9}{'M edges/s':>11}")
    if "csv" in paths:
        # reference: plain pyarrow on the whole file (no blocks, no checks), same machine and load
        t0 = time.perf_counter()
        n = pcsv.read_csv(paths["csv"], read_options=pcsv.ReadOptions(column_names=["a", "b"]),
                          convert_options=pcsv.ConvertOptions(
                              column_types={"a": pa.int64(), "b": pa.int64()})).num_rows
        dt = time.perf_counter() - t0
        print(f"{'arrow-ref':<10}{'int':<8}{'-':>7}{os.path.getsize(paths['csv']) / 2**20:>9.0f}"
              f"{dt:>9.2f}{n / dt / 1e6:>11.1f}")
    runs = [(fmt, p, 16) for fmt, p in paths.items()]
    if "csv" in paths:
        runs.insert(1, ("csv", paths["csv"], 4))
    for fmt, p, block_mib in runs:
        t0 = time.perf_counter()
        n, s = 0, 0
        opts = EdgeReadOptions(id_type=args.id_type, block_bytes=block_mib << 20)
        for c in iter_edge_chunks([p], opts):
            n += len(c)
            if args.id_type != "string":
                s += int((c.src * 3 + c.dst).sum())
        dt = time.perf_counter() - t0
        if n != args.edges or (args.id_type != "string" and s != checksum):
            raise SystemExit(f"{fmt}: wrong result ({n} edges)")
        print(f"{fmt:<10}{args.id_type:<8}{block_mib:>7}{os.path.getsize(p) / 2**20:>9.0f}"
              f"{dt:>9.2f}{n / dt / 1e6:>11.1f}")


if __name__ == "__main__":
    main()
