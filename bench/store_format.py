"""Store-format check: read throughput of the zero-copy memmap path vs zarr-python on the same array.

    python bench/store_format.py [--rows 50000000]

Writes a single-shard int32 array (the layout of `indices`), then times (median of 3):
full sequential scan and 1M random gathers, through np.memmap and through zarr-python.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

from gstore.shard_array import open_array, write_array


def _median(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=50_000_000)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="gstore-fmt-"))
    arr = np.random.default_rng(0).integers(0, 2**31 - 1, args.rows, dtype=np.int32)
    t = time.perf_counter()
    rec = write_array(root, "indices", arr)
    write_s = time.perf_counter() - t
    mm = open_array(root, rec)
    z = zarr.open_array(str(root / "indices"), mode="r")
    idx = np.sort(np.random.default_rng(1).integers(0, args.rows, 1_000_000))
    rows = [
        ("write (ShardArrayWriter)", write_s, arr.nbytes),
        ("scan: memmap sum", _median(lambda: int(mm.sum(dtype=np.int64))), arr.nbytes),
        ("scan: zarr [:] then sum", _median(lambda: int(z[:].sum(dtype=np.int64))), arr.nbytes),
        ("1M sorted gathers: memmap", _median(lambda: mm[idx].sum()), 1_000_000 * 4),
        ("1M sorted gathers: zarr oindex", _median(lambda: z.oindex[idx].sum()), 1_000_000 * 4),
    ]
    print(f"{'operation':34} {'seconds':>9} {'MB/s':>9}")
    for name, s, nbytes in rows:
        print(f"{name:34} {s:9.3f} {nbytes / s / 1e6:9.0f}")
    print(f"ratio scan zarr/memmap: {rows[2][1] / rows[1][1]:.2f}x; "
          f"gather zarr/memmap: {rows[4][1] / rows[3][1]:.2f}x")


if __name__ == "__main__":
    main()
