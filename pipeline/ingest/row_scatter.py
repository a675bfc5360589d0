"""Rows that arrive in any dense-id order (node tables, feature files) written to an array in
sequential writes, in bounded memory.

A node table lists nodes in its own order, so its dense ids are a random permutation: a positional
write per run of consecutive ids is a Python call per node (3 x 33.5M at the scale chain's size),
and scattering through a writable map makes every 1M-row chunk dirty nearly every page of the
output again, which the kernel writes back again and again (12 GB written for 0.8 GB of float16
features). Instead, `RowDistributor` works as one distribution pass:

- the output is cut into buckets of `bucket_rows` consecutive ids (bucket_rows * row_bytes <= cap);
- `add(dense, values)` groups a chunk's rows by bucket (one counting pass) and appends them, with
  their ids, to the bucket's spill files;
- `finish()` reads one bucket at a time, places its rows in a buffer (pre-filled with `fill`) and
  writes the buffer at its offset: every output byte is written once, in order.

When the whole output fits in one bucket there are no spill files: rows go straight to the buffer.
Memory: two buffers of at most `cap` bytes plus the chunk being added.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from gstore.pipeline.ingest.spill_files import BucketFiles
from gstore.set_kernels import counting_groups


class RowDistributor:
    """Rows of an (n, *row_shape) array of `dtype`, added in any id order, written by
    `write_rows(start, block)` in ascending blocks at `finish()`. Rows never added are `fill`.

    Ids must be in [0, n) and distinct between `override()` calls (the callers check duplicates
    with a bitmap first); rows added after `override()` replace rows added before it.
    """

    def __init__(self, write_rows: Callable[[int, np.ndarray], None], n: int, row_shape: tuple[int, ...],
                 dtype, cap_bytes: int, spill_dir: Path, name: str, fill=0) -> None:
        self.write_rows = write_rows
        self.n = int(n)
        self.row_shape = tuple(row_shape)
        self.dtype = np.dtype(dtype)
        self.fill = fill
        row_bytes = max(1, self.dtype.itemsize * int(np.prod(self.row_shape, dtype=np.int64)))
        self.bucket_rows = max(1, min(max(self.n, 1), int(cap_bytes) // row_bytes))
        self.num_buckets = max(1, -(-self.n // self.bucket_rows))
        self._buf = np.full((self.bucket_rows,) + self.row_shape, fill, dtype=self.dtype)
        self._rows = self._ids = None
        if self.num_buckets > 1:
            d = Path(spill_dir)
            self._rows = BucketFiles(d, f"{name}-rows", self.num_buckets, self.dtype, self.row_shape)
            self._ids = BucketFiles(d, f"{name}-ids", self.num_buckets, np.int64)
        self._layers: list[np.ndarray] = []      # per-bucket row counts at each override()

    def override(self) -> None:
        """Rows added from now on replace earlier rows of the same ids (--labels over --nodes)."""
        if self._rows is not None:
            self._layers.append(self._rows.counts.copy())

    def add(self, dense: np.ndarray, values: np.ndarray) -> None:
        """Rows `values` (len(dense), *row_shape) for dense ids `dense` (int64)."""
        if len(dense) == 0:
            return
        if self._rows is None:
            self._buf[dense] = values
            return
        dense = np.ascontiguousarray(dense, dtype=np.int64)
        keys = dense // self.bucket_rows
        starts = np.empty(self.num_buckets + 1, dtype=np.int64)
        order = np.empty(len(dense), dtype=np.int64)
        counting_groups(keys, np.int64(self.num_buckets), starts, order)
        self._rows.append_grouped(np.ascontiguousarray(np.asarray(values, dtype=self.dtype)[order]), starts)
        self._ids.append_grouped(dense[order], starts)

    def finish(self) -> None:
        """Write every row, bucket by bucket (spill files removed as they are consumed)."""
        if self._rows is None:
            if self.n:
                self.write_rows(0, self._buf[:self.n])
            return
        self._rows.close_writers()
        self._ids.close_writers()
        for k in range(self.num_buckets):
            lo = k * self.bucket_rows
            m = min(self.bucket_rows, self.n - lo)
            buf = self._buf[:m]
            buf[...] = self.fill
            count = int(self._rows.counts[k])
            if count:
                ids = self._ids.read(k, np.empty(count, dtype=np.int64))
                rows = self._rows.read(k, np.empty((count,) + self.row_shape, dtype=self.dtype))
                # one assignment per layer, in order: ids repeat only across layers
                cuts = [0] + [int(c[k]) for c in self._layers] + [count]
                for a, b in zip(cuts[:-1], cuts[1:]):
                    buf[ids[a:b] - lo] = rows[a:b]
                del ids, rows
            self.write_rows(lo, buf)
            self._rows.remove(k)
            self._ids.remove(k)

    def abort(self) -> None:
        if self._rows is not None:
            self._rows.remove_all()
            self._ids.remove_all()

