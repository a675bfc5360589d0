"""Per-row cost of random history rows: through a file mapping (what pipeline/history/arrays.py does)
vs os.preadv / os.pwritev per row (the alternative), warm and cold page cache.

Usage:
    python bench/history_rowio.py SCRATCH_FILE [--rows 1000000] [--width 256] [--batch 5000] [--reps 5]

Creates SCRATCH_FILE (rows x width float32; 1 GiB by default; refused if it exists and has
another size) and times, for `batch` random sorted row ids, a gather through the mapping
(MADV_RANDOM, the feature gather kernel), a scatter through it (history_kernels.scatter_rows), one
os.preadv / os.pwritev per row into / from a reused buffer, each after releasing the mapping; "cold"
drops the file's pages from the page cache first (posix_fadvise DONTNEED). Prints the median
microseconds per row of `reps` repeats. The file is left for the next run; delete it when done.
"""
from __future__ import annotations

import argparse
import mmap
import os
import statistics
import sys
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path")
    ap.add_argument("--rows", type=int, default=1 << 20)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    from gstore.memory import release_pages
    from gstore.pipeline.features.cache import bit_view
    from gstore.pipeline.features.gather import gather_features
    from gstore.pipeline.history.history_kernels import scatter_rows

    n, w = args.rows, args.width
    rb = w * 4
    size = n * rb
    if os.path.exists(args.path) and os.path.getsize(args.path) != size:
        sys.exit(f"{args.path} exists with another size: pick another path")
    if not os.path.exists(args.path):
        with open(args.path, "wb") as fh:
            for start in range(0, n, 1 << 16):
                fh.write(np.full((min(1 << 16, n - start), w), start, np.float32).tobytes())
    fd = os.open(args.path, os.O_RDWR)
    arr = np.memmap(args.path, np.float32, "r+", shape=(n, w))
    arr._mmap.madvise(mmap.MADV_RANDOM)
    buf = np.empty((args.batch, w), np.float32)
    view = memoryview(buf).cast("B")
    rng = np.random.default_rng(0)

    def mm_read(ids):
        gather_features(arr, ids, buf)

    def mm_write(ids):
        scatter_rows(bit_view(arr), ids, np.arange(len(ids), dtype=np.int64), bit_view(buf))

    def pread(ids):
        for i, r in enumerate(ids.tolist()):
            os.preadv(fd, [view[i * rb:(i + 1) * rb]], r * rb)

    def pwrite(ids):
        for i, r in enumerate(ids.tolist()):
            os.pwritev(fd, [view[i * rb:(i + 1) * rb]], r * rb)

    mm_read(np.arange(4, dtype=np.int64))          # kernels loaded before any timing
    mm_write(np.arange(4, dtype=np.int64))
    results = {}
    for cold in (False, True):
        for name, fn in (("mapping read", mm_read), ("mapping write", mm_write), ("preadv", pread),
                         ("pwritev", pwrite)):
            times = []
            for _ in range(args.reps):
                ids = np.sort(rng.choice(n, args.batch, replace=False)).astype(np.int64)
                release_pages(arr)
                if cold:
                    arr.flush()
                    os.fsync(fd)
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                elif name in ("preadv", "pwritev"):
                    mm_read(ids)                     # warm: the pages are in the page cache
                    release_pages(arr)
                else:
                    pread(ids)
                t = time.perf_counter()
                fn(ids)
                times.append((time.perf_counter() - t) / len(ids) * 1e6)
            results[f"{'cold' if cold else 'warm'} {name}"] = statistics.median(times)
            print(f"{'cold' if cold else 'warm'} {name:14s} {statistics.median(times):7.2f} us/row "
                  f"(median of {args.reps}; {args.batch} random rows of {rb} B in {size / 2**30:.2f} GiB)")
    os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
