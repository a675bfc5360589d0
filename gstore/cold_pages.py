"""Cold page cache: fault a batch's pages in many at a time, map random-access files without
read-around, and read small files ahead at the disk's bandwidth.

A store fresh from disk (a reboot, or a page cache another job evicted) turns a loader's first
batches into one page fault after another: the sampler and the gather each touch one page at a time,
so the device sees a queue of one or two reads. Measured on the 10^9-edge chain's store (8.6 GB of
indices, 4.3 GB of features, a virtual disk with 690 MB/s sequential reads and 18k random 4 KiB
reads/s at one in flight, 39k at 16-32): the first batch of 1024 seeds, fanouts 15,10 took 20 s,
9.2 s sampling (each fault also read the 128 KiB around it) and 5.9 s gathering 175k feature rows.

- `random_access(arr)`: a second mapping of a store file with MADV_RANDOM, so a fault reads its own
  page and not the read-around window (sampling: 9.2 s -> 1.2-2 s). Only the loader's own mappings
  get it: a sequential pass (layer-wise inference, propagation) keeps the store's, with read-around.
- `ColdPages.rows` / `.csr_rows`: before a gather or a sampling hop, `mincore` probes 64 of the
  rows' pages; when some are missing, touch one item per page the kernel will read, split over
  FAULT_THREADS threads (the touch kernels release the GIL and the threads mostly sleep in the
  fault), so up to that many reads are in flight (the feature rows of that batch: 5.9 s -> 3.0 s).
- `read_ahead(paths)`: posix_fadvise(WILLNEED) over files, one chunk in flight: the kernel's
  readahead, nothing pinned, no RSS. A loader's ColdStart runs it in a thread over the store's files
  that fit in the page cache, from its first run on; the history arrays use it for their files.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import mmap
import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from gstore.cold_page_kernels import touch_csr_rows, touch_rows

log = logging.getLogger(__name__)

# reads in flight when pages are cold: the disk measured above peaks at 16-32 (39k reads/s) and
# falls off at 64 (17k/s, queueing); threads that wait in a fault use no CPU
FAULT_THREADS = 32
# fewer rows than this per thread are not worth a thread hand-off (~10-20 us, a cold fault 60+ us)
ROWS_PER_THREAD_MIN = 32
# rows probed per batch (mincore, one call each), and how many missing make the batch cold: 2 of 64
# is ~3% of the rows, at which the touch (~5 ms of CPU for 175k cached rows) pays for itself
PROBE_ROWS = 64
PROBE_COLD_MIN = 2
PAGE_BYTES = mmap.PAGESIZE
# longest stretch of a CSR row that a touch reads page by page
CSR_PAGES_MAX = 8
READ_AHEAD_CHUNK = 4 << 20
# chunks in flight: one while a loader's first batch takes its own faults, then this many
READ_AHEAD_DEPTH = 8
# files up to this share of the available memory are read ahead whole and keep their read-around:
# a batch's random rows then land in most 128 KiB windows anyway (10^9 chain: 175k rows of 1M
# pages of features), so read-around reads the file at bandwidth and every later batch is warm
CACHE_SHARE = 0.75


def random_access(arr: np.ndarray) -> np.ndarray:
    """A read-only mapping of the same file as `arr` (an np.memmap) advised MADV_RANDOM; `arr`
    itself when it is not a file mapping or madvise is not available (the reads are the same,
    only slower on a cold cache). A structurally checked `arr` gives a checked mapping: the same
    bytes of the same file (gstore/store_invariants.py)."""
    from gstore.store_invariants import is_checked, mark_checked

    if not isinstance(arr, np.memmap) or arr.filename is None or not hasattr(mmap, "MADV_RANDOM"):
        return arr
    fresh = np.memmap(arr.filename, dtype=arr.dtype, mode="r", shape=arr.shape, offset=arr.offset)
    try:
        fresh._mmap.madvise(mmap.MADV_RANDOM)
    except (AttributeError, OSError, ValueError):
        pass
    if is_checked(arr):
        mark_checked(fresh)
    return fresh


def fits_page_cache(nbytes: int, share: float = CACHE_SHARE) -> bool:
    """Whether `nbytes` of files fit in `share` of the memory available now (unknown: no)."""
    from gstore.memory import available_memory_bytes

    avail = available_memory_bytes()
    return avail is not None and nbytes <= share * avail


class ColdStart:
    """A loader's cold-page machinery: the threads that take the faults (started on first use) and
    the read-ahead it starts with the first run (`start`), one chunk in flight until the first batch
    is out (`first_batch_out`), then READ_AHEAD_DEPTH. The loader's MADV_RANDOM mappings come from
    `random_access`.

    `threads` 0 turns the touches off (ColdPages then do nothing).
    """

    def __init__(self, threads: int = FAULT_THREADS) -> None:
        self.threads = max(0, int(threads))
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._read_ahead: ReadAhead | None = None
        self.started = False             # `start` ran (the loader's first run began)
        # what to stop when the loader goes away without close(): its threads hold no reference
        # to this object, so garbage collection reaches it
        self._owned: list = []
        self._finalizer = weakref.finalize(self, _stop_owned, self._owned)

    def pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="gstore-fault")
                self._owned.append(self._pool)
            return self._pool

    def start(self, paths) -> None:
        """Once, as the loader's first run begins: read `paths` ahead in a thread (throttled, see
        read_ahead), in order, each while the total still fits in the page cache (fits_page_cache).
        The loader passes its per-node arrays, then features and CSR indices, once the epoch's
        seed permutation is made (beside it, the page-cache fill made 2.3 s take 5.5 s on 2 cores):
        one chunk in flight beside the first batch's own faults, then the disk's bandwidth."""
        with self._lock:
            if self.started:
                return
            self.started = True
        chosen: list[str] = []
        total = 0
        for p in dict.fromkeys(str(p) for p in paths):
            size = file_bytes([p])
            if fits_page_cache(total + size):
                chosen.append(p)
                total += size
        ahead = ReadAhead(chosen, depth=1)       # deeper once the first batch is out
        with self._lock:
            self._read_ahead = ahead
            self._owned.append(ahead)
        ahead.start()

    def first_batch_out(self) -> None:
        """The loader delivered its first batch: let the read-ahead take the disk's bandwidth."""
        ahead = self._read_ahead
        if ahead is not None:
            ahead.depth = READ_AHEAD_DEPTH

    def close(self) -> None:
        """Stop the read-ahead and the fault threads (ColdPages then stop touching)."""
        with self._lock:
            self.threads = 0
            self._pool = None
        self._finalizer()


def _stop_owned(owned: list) -> None:
    for obj in owned:
        if isinstance(obj, ThreadPoolExecutor):
            obj.shutdown(wait=False)
        else:
            obj.stop()
    owned.clear()


class ColdPages:
    """Faults in the pages one kind of read (a sampler's CSR rows, a gather's feature rows) will
    touch, over the ColdStart's threads, when a probe finds them not cached.

    The probe: `mincore` on the pages of up to PROBE_ROWS of the rows (one 4 KiB page each, ~1 us
    a call); PROBE_COLD_MIN or more of them missing means the batch is cold enough for a touch.
    A timer cannot tell: on 2 busy cores a cached touch's wall time is mostly waiting for a core.
    Where mincore is missing (not Linux or macOS, not a file mapping) every batch is touched.
    Thread-safe. Counters: `probes`, `touches`.
    """

    def __init__(self, cold_start: ColdStart | None) -> None:
        self.cold_start = cold_start
        self._lock = threading.Lock()
        self.probes = self.touches = 0

    def _slices(self, n: int) -> int:
        threads = 0 if self.cold_start is None else self.cold_start.threads
        if threads == 0 or n < 2 * ROWS_PER_THREAD_MIN:
            return 0
        return min(threads, n // ROWS_PER_THREAD_MIN)

    def _count(self, touched: bool) -> None:
        with self._lock:
            self.probes += 1
            self.touches += int(touched)

    def _run(self, n: int, slices: int, body) -> None:
        pool = self.cold_start.pool()
        bounds = np.linspace(0, n, slices + 1).astype(np.int64)
        futures = []
        try:
            for k in range(slices):
                futures.append(pool.submit(body, np.int64(bounds[k]), np.int64(bounds[k + 1])))
        except RuntimeError:        # closed meanwhile (ColdStart.close): the touches are advice
            pass
        for f in futures:
            f.result()

    def rows(self, rows: np.ndarray, ids: np.ndarray) -> None:
        """Fault in rows[ids] (rows: (N, F) unsigned bit view, F >= 1; ids int64 (n,), checked)."""
        slices = self._slices(len(ids)) if rows.ndim == 2 and rows.shape[1] else 0
        if not slices:
            return
        pick = _probe_picks(len(ids))
        cold = missing_pages(rows, ids[pick] * rows.strides[0]) >= PROBE_COLD_MIN
        self._count(cold)
        if cold:
            self._run(len(ids), slices, lambda lo, hi: touch_rows(rows, ids, lo, hi))

    def csr_rows(self, indptr: np.ndarray, indices: np.ndarray, nodes: np.ndarray) -> None:
        """Fault in indptr and the `indices` rows of `nodes` (int64 (n,), checked)."""
        slices = self._slices(len(nodes))
        if not slices:
            return
        probe = nodes[_probe_picks(len(nodes))]
        lost = missing_pages(indptr, probe * indptr.itemsize)
        if lost < PROBE_COLD_MIN:   # indptr cached: read the offsets and probe the rows' first pages
            lost += missing_pages(indices, indptr[probe] * indices.itemsize)
        cold = lost >= PROBE_COLD_MIN
        self._count(cold)
        if cold:
            page_items = np.int64(max(1, PAGE_BYTES // indices.itemsize))
            self._run(len(nodes), slices, lambda lo, hi: touch_csr_rows(
                indptr, indices, nodes, lo, hi, page_items, np.int64(CSR_PAGES_MAX)))


def _probe_picks(n: int) -> np.ndarray:
    """Up to PROBE_ROWS positions spread evenly over range(n)."""
    return np.linspace(0, n - 1, min(n, PROBE_ROWS)).astype(np.int64)


def _libc_mincore():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.mincore
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    fn.restype = ctypes.c_int
    return fn


_MINCORE = _libc_mincore()


def missing_pages(arr: np.ndarray, byte_offsets: np.ndarray) -> int:
    """How many of the pages at `byte_offsets` (int64, into arr's buffer) are not in memory.

    `arr`: a file mapping (np.memmap, or a view of one). Without mincore, or for memory that is not
    a mapping, every page counts as missing (callers then touch: correct, only slower)."""
    if _MINCORE is None or not len(byte_offsets):
        return len(byte_offsets)
    base = arr.ctypes.data
    pages = np.unique((base + byte_offsets.astype(np.int64)) & ~np.int64(PAGE_BYTES - 1))
    vec = ctypes.c_ubyte(0)
    lost = 0
    for page in pages.tolist():
        if _MINCORE(page, PAGE_BYTES, ctypes.byref(vec)) != 0 or not (vec.value & 1):
            lost += 1
    return lost


def read_ahead(paths, stop: threading.Event | None = None, chunk: int = READ_AHEAD_CHUNK,
               depth=READ_AHEAD_DEPTH) -> int:
    """Read each file of `paths` into the page cache, chunk by chunk, in order; returns the bytes
    advised. `stop` ends it early. No-op (0) without posix_fadvise. Missing files are skipped.

    posix_fadvise(WILLNEED) per chunk (the kernel's readahead: nothing copied, nothing pinned), with
    at most `depth` chunks in flight (an int, or a callable read before every chunk): a 1-byte read
    of the last page of the chunk `depth` back waits for it. An unthrottled WILLNEED queues
    gigabytes at once, and every page fault behind it waits: on the 10^9 chain, 13 GB advised at
    once held a loader's second batch for 14 s; 8 chunks in flight during the first batch made it
    13.0 s instead of 7.7 s with one (and the next 40 batches 10.5/s instead of 3.2/s after it).
    """
    if not hasattr(os, "posix_fadvise"):
        return 0
    done = 0
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            size = os.fstat(fd).st_size
            for off in range(0, size, chunk):
                if stop is not None and stop.is_set():
                    return done
                n = min(chunk, size - off)
                os.posix_fadvise(fd, off, n, os.POSIX_FADV_WILLNEED)
                behind = off - (max(1, int(depth() if callable(depth) else depth)) - 1) * chunk
                if behind > 0:
                    os.pread(fd, 1, behind - 1)    # the chunk DEPTH back has arrived
                done += n
            if size:
                os.pread(fd, 1, size - 1)          # the file's last chunk too
        finally:
            os.close(fd)
    return done


def file_bytes(paths) -> int:
    """Total size of the files that exist among `paths`."""
    total = 0
    for p in paths:
        try:
            total += Path(p).stat().st_size
        except FileNotFoundError:
            pass
    return total


class ReadAhead:
    """`read_ahead` of `paths` in a daemon thread, started once; `stop()` ends it early."""

    def __init__(self, paths, depth: int = READ_AHEAD_DEPTH) -> None:
        self.paths = [str(p) for p in paths]
        self.depth = int(depth)          # chunks in flight; may change while it runs
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.advised = 0

    def start(self) -> None:
        if self._thread is None and self.paths:
            self._thread = threading.Thread(target=self._body, name="gstore-read-ahead", daemon=True)
            self._thread.start()

    def _body(self) -> None:
        try:
            self.advised = read_ahead(self.paths, self._stop, depth=lambda: self.depth)
        except OSError as exc:       # advice only: a failure costs speed, never data
            log.debug("read-ahead stopped: %s", exc)

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
