"""Reusable pageable host buffers for gathered features (pin_memory=False).

Fresh memory costs a page fault per 4 KiB on first touch (~0.5 GB/s here), more than the gather
itself, so feature buffers are recycled. A buffer is free again when nothing references it any more:
the pool holds the only reference to each buffer array, every batch's `x` is a numpy slice of it (or a
torch tensor made from such a slice, which keeps the slice alive), so `sys.getrefcount` tells exactly
whether some batch, view or tensor still uses it. Batches handed to the user therefore stay valid for
as long as the user keeps them; the pool just allocates a new buffer (up to `max_buffers`, then
unpooled ones) while old ones are held.

Reuse by reference count is only safe for pageable memory: a `non_blocking` copy from pageable memory
has finished reading its source when the call returns. Pinned memory is never pooled here (an
asynchronous copy may still be reading a buffer nobody references any more): with pin_memory=True
each batch gets one staging buffer from torch's caching host allocator (staging.py).
"""
from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

# references to a free buffer's array: the pool entry and getrefcount's argument
_FREE_REFS = 2
_GROWTH = 1.25


@dataclass(eq=False)  # entries compare by identity (list.remove must not compare arrays)
class _Entry:
    array: np.ndarray            # (capacity, F) host buffer


class HostBufferPool:
    """Recycled (rows x dim) host buffers of one dtype.

    Args:
        dim: row width (feature dimension).
        dtype: numpy dtype of the rows.
        max_buffers: buffers kept for reuse; beyond it, buffers are allocated per batch.
    """

    def __init__(self, dim: int, dtype: np.dtype, max_buffers: int = 8) -> None:
        self.dim = int(dim)
        self.dtype = np.dtype(dtype)
        self.max_buffers = max(1, int(max_buffers))
        self._entries: list[_Entry] = []
        self._lock = threading.Lock()
        self.allocations = 0

    def _allocate(self, rows: int) -> _Entry:
        self.allocations += 1
        return _Entry(np.empty((rows, self.dim), dtype=self.dtype))

    def acquire(self, rows: int) -> np.ndarray:
        """A buffer with at least `rows` rows; the caller fills a prefix and slices it."""
        rows = max(1, int(rows))
        with self._lock:
            free = [e for e in self._entries if sys.getrefcount(e.array) <= _FREE_REFS]
            fit = [e for e in free if e.array.shape[0] >= rows]
            if fit:
                entry = min(fit, key=lambda e: e.array.shape[0])
            else:
                if free:  # replace the largest free buffer that is too small
                    self._entries.remove(max(free, key=lambda e: e.array.shape[0]))
                elif len(self._entries) >= self.max_buffers:
                    log.debug("all %d feature buffers in use; allocating an unpooled one",
                              len(self._entries))
                    return self._allocate(rows).array
                entry = self._allocate(int(rows * _GROWTH) + 1)
                self._entries.append(entry)
            return entry.array

    @property
    def nbytes(self) -> int:
        return sum(e.array.nbytes for e in self._entries)
