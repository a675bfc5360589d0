"""Scratch files of the out-of-core build: per-bucket append-only spills and raw output arrays.

Everything lives under `StoreBuilder.spill_dir`, so an interrupted build leaves nothing outside
`STORE.tmp` and the next build removes it.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gstore.builder import StoreBuilder
from gstore.shard_array import ArrayRecord


def _write_all(fd: int, arr: np.ndarray) -> None:
    view = memoryview(np.ascontiguousarray(arr)).cast("B")
    while len(view):
        n = os.write(fd, view)
        view = view[n:]


def read_into(fd: int, out: np.ndarray, offset_bytes: int) -> None:
    """Fill `out` (contiguous) from file `fd` at `offset_bytes` (preallocated buffers: no first touch)."""
    view = memoryview(out).cast("B")
    pos = offset_bytes
    while len(view):
        n = os.preadv(fd, [view], pos)
        if n <= 0:
            raise OSError(f"short read from spill file at byte {pos}")
        view = view[n:]
        pos += n


class BucketFiles:
    """One append-only file per bucket for records of a fixed dtype and row shape.

    rows(b) counts records appended to bucket b; `open_read(b)` gives an fd for `read_into`.
    With `max_open`, at most that many append descriptors stay open (all are closed when one more
    is needed): thousands of buckets must not exhaust the process's descriptors.
    """

    def __init__(self, directory: Path, prefix: str, n_buckets: int, dtype: np.dtype,
                 row_shape: tuple[int, ...] = (), max_open: int | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.dtype = np.dtype(dtype)
        self.row_shape = row_shape
        self.row_bytes = int(np.prod(row_shape, dtype=np.int64)) * self.dtype.itemsize
        self.counts = np.zeros(n_buckets, dtype=np.int64)
        self.max_open = max_open
        self._fds: dict[int, int] = {}

    def path(self, b: int) -> Path:
        return self.directory / f"{self.prefix}{b:05d}.bin"

    @property
    def n_buckets(self) -> int:
        return len(self.counts)

    def append(self, b: int, block: np.ndarray) -> None:
        if len(block) == 0:
            return
        fd = self._fds.get(b)
        if fd is None:
            if self.max_open is not None and len(self._fds) >= self.max_open:
                self.close_writers()
            fd = os.open(self.path(b), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._fds[b] = fd
        _write_all(fd, block)
        self.counts[b] += len(block)

    def append_grouped(self, block: np.ndarray, starts: np.ndarray) -> None:
        """Append block[starts[b]:starts[b+1]] to bucket b for every b."""
        for b in np.flatnonzero(np.diff(starts)):
            self.append(int(b), block[starts[b]:starts[b + 1]])

    def close_writers(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def open_read(self, b: int) -> int | None:
        """Read fd of bucket b (None when it is empty); close it with os.close."""
        if self.counts[b] == 0:
            return None
        return os.open(self.path(b), os.O_RDONLY)

    def read(self, b: int, out: np.ndarray) -> np.ndarray:
        """Bucket b's records into `out` (an array of counts[b] records); `out` as it is when b is
        empty. Returns `out`."""
        fd = self.open_read(b)
        if fd is None:
            return out
        try:
            read_into(fd, out, 0)
        finally:
            os.close(fd)
        return out

    def remove(self, b: int) -> None:
        try:
            os.unlink(self.path(b))
        except FileNotFoundError:
            pass

    def remove_all(self) -> None:
        self.close_writers()
        for b in range(self.n_buckets):
            self.remove(b)


class RawArrayFile:
    """An output array of unknown final length, appended raw and copied into the store at the end."""

    def __init__(self, path: Path, dtype: np.dtype, row_shape: tuple[int, ...] = ()) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.row_shape = row_shape
        self.rows = 0
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)

    def append(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        _write_all(self._fd, block)
        self.rows += len(block)

    def read_all(self) -> np.ndarray:
        """The whole array in memory (caller has checked it fits the budget)."""
        out = np.empty((self.rows, *self.row_shape), dtype=self.dtype)
        if self.rows:
            read_into(self._fd, out, 0)
        return out

    def copy_into_store(self, builder: StoreBuilder, name: str) -> ArrayRecord:
        """Copy the raw rows into store array `name` (kernel-side copy; no user-space buffer)."""
        w = builder.array_writer(name, (self.rows, *self.row_shape), self.dtype)
        nbytes = self.rows * (int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize)
        if nbytes:
            out_fd = os.open(w.path, os.O_WRONLY)
            try:
                _copy_range(self._fd, out_fd, nbytes)
            finally:
                os.close(out_fd)
        rec = w.finish()
        builder.add(rec)
        return rec

    def close(self, remove: bool = True) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if remove:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def _copy_range(src_fd: int, dst_fd: int, nbytes: int) -> None:
    done = 0
    try:
        while done < nbytes:
            n = os.copy_file_range(src_fd, dst_fd, nbytes - done, done, done)
            if n <= 0:
                break
            done += n
    except (OSError, AttributeError):
        pass
    step = 16 << 20
    while done < nbytes:  # fallback when copy_file_range is unavailable for these files
        data = os.pread(src_fd, min(step, nbytes - done), done)
        if not data:
            raise OSError("raw spill file shorter than expected")
        os.pwrite(dst_fd, data, done)
        done += len(data)
