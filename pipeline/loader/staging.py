"""Pinned staging: one page-locked host buffer per batch, from torch's caching host allocator.

With `pin_memory=True` the gather stage writes every array of a batch (features, labels, mask,
nodes, edge indices, blocks) into one `Staging` buffer: a uint8 tensor from
`torch.empty(..., pin_memory=True)`, cut into 64-byte aligned fields. Batch fields are torch views of
that one tensor, so every `non_blocking` copy out of any of them is a true asynchronous DMA
(pageable sources make `non_blocking` copies synchronous) and is recorded against the allocation.

Why this is safe (docs/loader.md, "Pinned memory"): the memory belongs to torch's CachingHostAllocator,
not to us. Each `non_blocking` host->device copy from a tensor of that allocator records a CUDA event
for the allocation (keyed by the storage, so views and slices count), and a freed allocation is
handed out again only after all its events completed. The loader's own copy and a user's later
`batch.x.to("cuda", non_blocking=True)` are covered alike; gstore never reuses pinned memory itself.
(A `torch.from_numpy` alias of pinned memory would defeat this: its storage is unknown to the
allocator, so its copies record nothing. Batch tensors are therefore views of the staging tensor.)

`PinnedBudget` caps the page-locked bytes a loader holds (staged batches not yet freed, plus
blocks whose copy to the GPU is still in flight). The allocator rounds every block up to a power of
two, so the budget counts rounded sizes. A batch that does not fit waits until earlier batches free
their blocks, for at most PINNED_WAIT_S; then, and at once for the batch the deliver thread needs
next (the later batches holding the bytes cannot be delivered before it, so it would wait for
itself), it is staged in pageable memory instead (its copy is then synchronous), with a warning
logged once per loader.
"""
from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gstore.memory import format_bytes
from gstore.pipeline.loader.queues import POLL_S, PipelineControl

log = logging.getLogger(__name__)

# field alignment inside a staging buffer: a multiple of every dtype size, and of the cache line
ALIGN = 64
PINNED_BYTES_DEFAULT = 1 << 30
# longest wait for room in the budget before a batch is staged in pageable memory: waiting is what
# keeps the page-locked total under the cap, the timeout what keeps a wait from becoming a deadlock
# (with several workers, later batches can hold the budget while the batch they wait for in the
# reorder buffer still needs a gather thread that is itself waiting)
PINNED_WAIT_S = 1.0


def block_bytes(nbytes: int) -> int:
    """Bytes torch's caching host allocator reserves for a request: the next power of two."""
    return 1 << max(0, int(nbytes) - 1).bit_length()


def torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype=dtype)).dtype


@dataclass(frozen=True)
class StagedField:
    """One array inside a staging buffer: bytes [offset, offset + nbytes) as `dtype` of `shape`."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    offset: int

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


def plan_fields(specs: list[tuple[str, np.dtype, tuple[int, ...]]]) -> tuple[list[StagedField], int]:
    """Aligned layout of (name, dtype, shape) specs, and the total bytes (>= 1)."""
    out, pos = [], 0
    for name, dtype, shape in specs:
        f = StagedField(name, np.dtype(dtype), tuple(int(s) for s in shape), pos)
        out.append(f)
        pos += -(-f.nbytes // ALIGN) * ALIGN
    return out, max(pos, 1)


class PinnedBudget:
    """Page-locked bytes of one loader, at most `max_bytes` (block_bytes-rounded).

    Bytes are taken by `acquire` and given back when the batch's `PinnedLease` is freed (a weakref
    finalizer): every tensor handed out over the staging memory references the lease, so it lives
    as long as the batch's tensors do. (Not the staging tensor itself: a torch view does not keep
    its base's Python object alive, so a finalizer on it would fire while views still use the
    memory.) `hold(event, lease)` keeps a lease counted until the copy recorded by `event`
    completed (polled, never waited on). Dropping it earlier would be safe, the allocator still
    waits for the copy, but the block would then stay page-locked uncounted.
    """

    def __init__(self, max_bytes: int = PINNED_BYTES_DEFAULT, wait_s: float = PINNED_WAIT_S) -> None:
        self.max_bytes = int(max_bytes)
        self.wait_s = float(wait_s)
        self._cond = threading.Condition()  # an RLock: a finalizer may run inside acquire's poll
        self._held: deque[tuple[Any, PinnedLease]] = deque()
        self.used = 0
        self.peak = 0
        self.next_seq = 0          # the sequence number the deliver thread is waiting for
        self.pageable = 0          # batches staged in pageable memory because the budget was full
        self._warned = False

    def acquire(self, nbytes: int, seq: int, control: PipelineControl | None = None) -> bool:
        """Reserve room for a pinned buffer of `nbytes` for batch `seq`: True when reserved, False
        when the batch must use pageable memory (it is the next one due, larger than the cap, or
        waited wait_s in vain). Raises queues.Stopped when `control` stops the run meanwhile."""
        need = block_bytes(nbytes)
        deadline = time.monotonic() + self.wait_s
        with self._cond:
            while True:
                self._poll_locked()
                if self.used + need <= self.max_bytes:
                    self.used += need
                    self.peak = max(self.peak, self.used)
                    return True
                if seq <= self.next_seq or need > self.max_bytes or time.monotonic() >= deadline:
                    self.pageable += 1
                    if not self._warned:
                        self._warned = True
                        log.warning("pinned memory budget of %s is full (%s in use, batch %d needs "
                                    "%s): staging it in pageable memory, so its copy to the GPU is "
                                    "synchronous; raise pinned_bytes to avoid this (logged once)",
                                    format_bytes(self.max_bytes), format_bytes(self.used), seq,
                                    format_bytes(need))
                    return False
                self._cond.wait(POLL_S)
                if control is not None:
                    control.check()

    def release(self, nbytes: int) -> None:
        with self._cond:
            self.used -= block_bytes(nbytes)
            self._cond.notify_all()

    def lease(self, nbytes: int) -> "PinnedLease":
        """A token whose death gives back the `nbytes` reserved by `acquire`."""
        token = PinnedLease(nbytes)
        fin = weakref.finalize(token, self.release, nbytes)
        fin.atexit = False
        return token

    def hold(self, event, lease: "PinnedLease") -> None:
        """Keep `lease` counted until `event` (the copy out of its memory) completed."""
        with self._cond:
            self._held.append((event, lease))

    def advance(self, next_seq: int) -> None:
        """The deliver thread now waits for batch `next_seq`."""
        with self._cond:
            self.next_seq = int(next_seq)
            self._cond.notify_all()

    def _poll_locked(self) -> None:
        if self._held:
            self._held = deque(h for h in self._held if not h[0].query())

    def poll(self) -> None:
        with self._cond:
            self._poll_locked()


class PinnedLease:
    """The reservation of one pinned staging buffer in its PinnedBudget (see there)."""

    __slots__ = ("nbytes", "__weakref__")

    def __init__(self, nbytes: int) -> None:
        self.nbytes = int(nbytes)


class Staging:
    """One batch's host buffer: the arrays of `specs` in one uint8 tensor, pinned when the budget
    allows (`pinned`), else pageable. `array(name)` is a writable numpy view (for the gather),
    `tensor(name)` a torch view of the same bytes sharing the buffer's storage."""

    def __init__(self, specs: list[tuple[str, np.dtype, tuple[int, ...]]], budget: PinnedBudget | None,
                 seq: int, control: PipelineControl | None = None) -> None:
        fields, total = plan_fields(specs)
        self.fields = {f.name: f for f in fields}
        self.nbytes = total
        self.pinned = budget is not None and budget.acquire(total, seq, control)
        self.lease = budget.lease(total) if self.pinned else None  # from here on, freed = released
        try:
            self.buffer = torch.empty(total, dtype=torch.uint8, pin_memory=self.pinned)
        except RuntimeError as err:  # cudaHostAlloc refused (page-locked memory is a scarce resource)
            if not self.pinned:
                raise
            log.warning("cannot allocate %s of pinned memory (%s); staging batch %d in pageable "
                        "memory", format_bytes(block_bytes(total)), str(err).splitlines()[0], seq)
            self.pinned, self.lease = False, None
            self.buffer = torch.empty(total, dtype=torch.uint8)
        self._bytes = self.buffer.numpy()

    def __contains__(self, name: str) -> bool:
        return name in self.fields

    def array(self, name: str) -> np.ndarray:
        f = self.fields[name]
        return self._bytes[f.offset:f.offset + f.nbytes].view(f.dtype).reshape(f.shape)

    def tensor(self, name: str) -> torch.Tensor:
        """Torch view of field `name`; it carries the lease, so the budget counts this memory for
        as long as the view lives."""
        f = self.fields[name]
        t = self.buffer[f.offset:f.offset + f.nbytes].view(torch_dtype(f.dtype)).view(f.shape)
        if self.lease is not None:
            t._gstore_pinned_lease = self.lease
        return t
