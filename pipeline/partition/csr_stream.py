"""Streaming access to on-disk CSR graphs for the partitioner, in row chunks of bounded size.

Edge arrays are read with `os.preadv` into reused buffers rather than through memory maps: pages of a
memory map count as resident memory while mapped, so streaming a 4 GiB `indices` through a memmap would
raise peak RSS by 4 GiB. Node arrays (indptr, O(N)) are held in RAM.

A `CSRFile` is either a store's own CSR (rows = destinations, both directions for undirected stores)
or a symmetrised / coarse graph the partitioner wrote to its scratch directory as raw little-endian
files. Self loops may be present; every kernel skips them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from gstore.shard_array import shard_path


@dataclass
class ArrayFile:
    """A flat on-disk array of `length` items of `dtype` starting at byte `offset` of `path`."""

    path: Path
    dtype: np.dtype
    length: int
    offset: int = 0

    def read(self, lo: int, hi: int, out: np.ndarray | None = None) -> np.ndarray:
        """Items [lo, hi) as a numpy array (into `out[:hi-lo]` when given, to reuse its pages)."""
        lo, hi = int(lo), int(hi)    # numpy int32 offsets times itemsize would wrap past 2^31 bytes
        n = hi - lo
        dst = np.empty(n, dtype=self.dtype) if out is None or len(out) < n else out[:n]
        if n == 0:
            return dst
        view = memoryview(dst).cast("B")
        pos, start = 0, self.offset + lo * self.dtype.itemsize
        with open(self.path, "rb", buffering=0) as fh:
            while pos < len(view):
                got = os.preadv(fh.fileno(), [view[pos:]], start + pos)
                if got <= 0:
                    raise OSError(f"short read from {self.path}")
                pos += got
        return dst

    def read_all(self) -> np.ndarray:
        return self.read(0, self.length)


def store_array_file(store, name: str) -> ArrayFile:
    """The data region of a store array (rows are contiguous from byte 0 of its shard file)."""
    rec = store.manifest.arrays[name]
    path = shard_path(Path(store.path) / rec.name, len(rec.shape))
    return ArrayFile(path, np.dtype(rec.dtype), int(rec.shape[0]))


def write_raw(path: Path, arr: np.ndarray) -> ArrayFile:
    """Write a whole array as a raw scratch file and return its handle."""
    arr = np.ascontiguousarray(arr)
    with open(path, "wb") as fh:
        fh.write(memoryview(arr).cast("B"))
    return ArrayFile(Path(path), arr.dtype, len(arr))


class RawAppender:
    """Appends blocks to a raw scratch file; `finish()` gives the ArrayFile."""

    def __init__(self, path: Path, dtype: np.dtype | str) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.length = 0
        self._fh = open(self.path, "wb")

    def append(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if len(block):
            self._fh.write(memoryview(block).cast("B"))
            self.length += len(block)

    def finish(self) -> ArrayFile:
        self._fh.close()
        return ArrayFile(self.path, self.dtype, self.length)


@dataclass
class CSRFile:
    """A CSR graph on disk. indptr: int64 (N+1,) in RAM; indices int32/int64 and optional integer
    weights (E,) on disk; vweights: int64 (N,) node weights in RAM or None (all ones).

    indptr holds absolute entry offsets into the files and may start past 0: a window of rows of a
    larger file, such as the rows after a hub (tests drive every stage this way past 2^31 entries)."""

    indptr: np.ndarray
    indices: ArrayFile
    weights: ArrayFile | None = None
    vweights: np.ndarray | None = None

    @property
    def num_nodes(self) -> int:
        return len(self.indptr) - 1

    @property
    def num_entries(self) -> int:
        return int(self.indptr[-1] - self.indptr[0])

    def node_weights(self) -> np.ndarray:
        """int64 (N,) node weights (ones when unweighted)."""
        if self.vweights is None:
            return np.ones(self.num_nodes, dtype=np.int64)
        return self.vweights

    def row_chunks(self, max_entries: int) -> Iterator[tuple[int, int]]:
        """Row ranges [r0, r1) holding at most `max_entries` entries each (or one long row)."""
        yield from row_ranges(self.indptr, max_entries)

    def read_rows(self, r0: int, r1: int, ibuf: np.ndarray | None = None,
                  wbuf: np.ndarray | None = None) -> "RowChunk":
        lo, hi = int(self.indptr[r0]), int(self.indptr[r1])
        nbrs = self.indices.read(lo, hi, ibuf)
        if self.weights is not None:
            ew = self.weights.read(lo, hi, wbuf)
        else:
            ew = _NO_WEIGHTS
        return RowChunk(r0, r1, self.indptr[r0:r1 + 1] - lo, nbrs, ew, self.weights is not None)

    def iter_chunks(self, max_entries: int,
                    wanted: Callable[[int, int], bool] | None = None) -> Iterator["RowChunk"]:
        """Stream the graph in row chunks, reusing two read buffers; with `wanted`, chunks whose
        row range [r0, r1) it rejects are not read at all."""
        cap = max(1, min(max_entries, self.num_entries))
        ibuf = np.empty(cap, dtype=self.indices.dtype)
        wbuf = np.empty(cap, dtype=self.weights.dtype) if self.weights is not None else None
        for r0, r1 in self.row_chunks(max_entries):
            if wanted is not None and not wanted(r0, r1):
                continue
            n = int(self.indptr[r1] - self.indptr[r0])
            yield self.read_rows(r0, r1, ibuf if n <= cap else None, wbuf if n <= cap else None)


_NO_WEIGHTS = np.zeros(0, dtype=np.int64)


@dataclass
class RowChunk:
    """Rows [r0, r1): local_indptr int64 (rows+1, from 0), nbrs (entries,), ew (entries,) or empty."""

    r0: int
    r1: int
    local_indptr: np.ndarray
    nbrs: np.ndarray
    ew: np.ndarray
    has_weights: bool


def row_ranges(indptr: np.ndarray, max_entries: int) -> Iterator[tuple[int, int]]:
    """Split rows into ranges of at most `max_entries` entries (a longer single row stands alone)."""
    n = len(indptr) - 1
    r0 = 0
    max_entries = max(1, int(max_entries))
    while r0 < n:
        target = indptr[r0] + max_entries
        r1 = int(np.searchsorted(indptr, target, side="right")) - 1
        r1 = min(max(r1, r0 + 1), n)
        yield r0, r1
        r0 = r1
