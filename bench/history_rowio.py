"""Per-row cost of random history rows: through a file mapping (what pipeline/history/arrays.py does)
vs os.preadv / os.pwritev per row (the alternative), warm and cold page cache.

Usage:
    python bench/history_rowio.py SCRATCH_DIR [--rows 1048576] [--width 256] [--batch 5000] [--reps 3]

Creates SCRATCH_DIR/emb_0 (rows x width float32, 1 GiB by default; a history file of
pipeline/history/arrays.py) and times, for `batch` random row ids, HistoryArrays.read_emb and
write_emb (the mapping, MADV_RANDOM, the kernels on 1 and on 8 I/O threads) and one os.preadv /
os.pwritev per row into / from a reused buffer, each after releasing the mapping; "cold" drops the
file's pages from the page cache first (posix_fadvise DONTNEED). Prints the median microseconds per
row of `reps` repeats. The directory is left for the next run; delete it when done.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path")
    ap.add_argument("--rows", type=int, default=1 << 20)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    from gstore.pipeline.history.arrays import MIN_ROWS_PER_THREAD as MIN_ROWS
    from gstore.pipeline.history.arrays import HistoryArrays, HistoryLayout

    n, w = args.rows, args.width
    rb = w * 4
    root = Path(args.path)
    layout = HistoryLayout(n, (w,), "float32", False)
    if not (root / "emb_0").exists():
        HistoryArrays.create(root, layout).close()
    arrays = {t: HistoryArrays(root, layout, io_threads=t) for t in (1, 8)}
    fd = os.open(root / "emb_0", os.O_RDWR)
    buf = np.ones((args.batch, w), np.float32)
    view = memoryview(buf).cast("B")
    rng = np.random.default_rng(0)

    def pread(ids):
        for i, r in enumerate(ids.tolist()):
            os.preadv(fd, [view[i * rb:(i + 1) * rb]], r * rb)

    def pwrite(ids):
        for i, r in enumerate(ids.tolist()):
            os.pwritev(fd, [view[i * rb:(i + 1) * rb]], r * rb)

    modes = [("preadv", pread), ("pwritev", pwrite)]
    for t, a in arrays.items():
        warm_ids = np.arange(0, 2 * MIN_ROWS * t, 2, dtype=np.int64)   # kernels and pool ready first
        a.read_emb(0, warm_ids)
        a.write_emb(0, warm_ids, a.read_emb(0, warm_ids))
        modes += [(f"mapping read x{t}", lambda ids, a=a: a.read_emb(0, ids)),
                  (f"mapping write x{t}", lambda ids, a=a: a.write_emb(0, ids, buf[:len(ids)]))]
    for cold in (False, True):
        for name, fn in modes:
            times = []
            for _ in range(args.reps):
                ids = rng.choice(n, args.batch, replace=False).astype(np.int64)
                for a in arrays.values():
                    a.release(force=True)
                if cold:
                    os.fsync(fd)
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                else:
                    pread(ids)                     # warm: the pages are in the page cache
                t = time.perf_counter()
                fn(ids)
                times.append((time.perf_counter() - t) / len(ids) * 1e6)
            print(f"{'cold' if cold else 'warm'} {name:17s} {statistics.median(times):7.2f} us/row "
                  f"(median of {args.reps}; {args.batch} random rows of {rb} B in {n * rb / 2**30:.2f} GiB)")
    for a in arrays.values():
        a.close()
    os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
