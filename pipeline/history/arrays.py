"""History arrays of a `--method history` run: per hidden layer an (N, width) memory-mapped file.

    RUN_DIR/history/emb_<l>     float16|float32 (N, layer_dim(l)) layer l's last known rows (l = 0..L-2)
    RUN_DIR/history/grad_<l>    float32 (N, layer_dim(l)) scalable-gcn's gradient store of layer l

Files are raw little-endian rows (no header), allocated when created. Rows are read and written
with the kernels of history_kernels.py (rows visited in ascending order, in slices on a pool of
IO_THREADS threads, so several faults wait on the disk at once), through a MAP_SHARED mapping advised
MADV_RANDOM: a row's fault then reads its own page from disk, not the read-around window a
sequential reader wants (the device's read_ahead_kb: 8 MiB on the bench machine), which on a
history larger than the page cache evicts what the pass needs. Files that fit in the page cache
are read ahead sequentially instead, once per pass (`prefetch`).
Once RELEASE_BYTES of rows were touched since the last release (gstore.memory.ReleaseCounter), the
mappings are released with madvise(MADV_DONTNEED) (layer-wise inference does the same), so the
pages go back to the page cache and RSS stays bounded however large the arrays are (the kernel
writes dirty pages back by itself). Releasing after every batch cost more than the rows themselves
(every later touch faulted its page in again; each madvise walks the whole mapping).
Why a mapping and not pread/pwrite per row: a history row is 0.5-1 KiB at a random offset, so
every row is its own run (5,000 halo rows among 2.4M nodes are 470 rows apart on average) and the
cost is per row, not per byte. A warm row costs about the same either way, a cold one is a page
read either way, but a Python call per row holds the GIL where a kernel call does a slice of rows
without it (bench/history_rowio.py, docs/training.md).
Reads and writes may run at once from two threads on DISJOINT rows (stage.py guarantees it); a
release meanwhile only makes the other thread fault its pages in again.
"""
from __future__ import annotations

import mmap
import os
import resource
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gstore.errors import OptionError
from gstore.memory import ReleaseCounter, release_pages
from gstore.pipeline.features.cache import bit_view
from gstore.pipeline.history.history_kernels import (add_rows, gather_rows_range, has_repeats, scatter_rows,
                                                     zero_rows)

HISTORY_DTYPES = ("float16", "float32")
GRAD_DTYPE = np.float32
RELEASE_BYTES = 256 << 20     # mapped history pages kept between releases (at most about this much)
IO_THREADS = 8                # row slices in flight at once (page faults that wait on the disk)
PREFETCH_SHARE = 0.8          # read the files ahead when they fit in this share of MemAvailable
PREFETCH_CHUNK = 8 << 20      # one WILLNEED per chunk (the kernel reads at most ra_pages per call)
FAULT_AROUND_BYTES = 64 << 10  # what a read fault maps (the kernel's default fault_around_bytes)
MIN_ROWS_PER_THREAD = 64      # below this a slice is not worth a thread hand-off (~30 us)


@dataclass(frozen=True)
class HistoryLayout:
    """What a run's history files are: node count, per-layer widths, dtype, gradient stores."""

    num_nodes: int
    widths: tuple[int, ...]          # one per hidden layer (model.layer_dim(l), l = 0..L-2)
    dtype: str                       # "float16" | "float32" of the embedding stores
    gradients: bool                  # scalable-gcn: a float32 gradient store per layer too

    def files(self) -> list[tuple[str, np.dtype, int]]:
        """(file name, dtype, width) of every file, embedding stores first."""
        out = [(f"emb_{l}", np.dtype(self.dtype), w) for l, w in enumerate(self.widths)]
        if self.gradients:
            out += [(f"grad_{l}", np.dtype(GRAD_DTYPE), w) for l, w in enumerate(self.widths)]
        return out

    @property
    def nbytes(self) -> int:
        return sum(self.num_nodes * w * dt.itemsize for _, dt, w in self.files())

    def to_json(self) -> dict:
        return {"num_nodes": self.num_nodes, "widths": list(self.widths), "dtype": self.dtype,
                "gradients": self.gradients}

    @staticmethod
    def from_json(d: dict) -> "HistoryLayout":
        return HistoryLayout(int(d["num_nodes"]), tuple(int(w) for w in d["widths"]), str(d["dtype"]),
                             bool(d["gradients"]))


class HistoryArrays:
    """The open history files of one run (see the module docstring)."""

    def __init__(self, root: Path, layout: HistoryLayout, io_threads: int = IO_THREADS) -> None:
        if layout.dtype not in HISTORY_DTYPES:
            raise OptionError(f"unknown --history-dtype {layout.dtype!r}", hint="use float16 or float32")
        self.root = Path(root)
        self.layout = layout
        self.emb: list[np.ndarray] = []
        self.grad: list[np.ndarray] = []
        for name, dt, w in layout.files():
            arr = self._map(self.root / name, dt, w)
            (self.emb if name.startswith("emb_") else self.grad).append(arr)
        self.io_threads = max(1, int(io_threads))
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self.faults = [0, 0]       # minor, major page faults taken reading and writing rows
        self.released = ReleaseCounter(RELEASE_BYTES)     # bytes of rows touched since the last release
        self._due = threading.Event()      # the counter crossed: the next release() unmaps

    @staticmethod
    def create(root: Path, layout: HistoryLayout, io_threads: int = IO_THREADS) -> "HistoryArrays":
        """New zero-filled files under `root`, their blocks allocated now: a write through a map of
        a sparse file on a full disk is a SIGBUS, an allocation here is an OSError (ENOSPC) naming
        the file, before any training."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        for name, dt, w in layout.files():
            size = layout.num_nodes * w * dt.itemsize
            with open(root / name, "wb") as fh:
                fh.truncate(size)
                if size:
                    try:
                        os.posix_fallocate(fh.fileno(), 0, size)
                    except OSError as exc:
                        if exc.filename is None:
                            exc.filename = str(root / name)
                        raise
        return HistoryArrays(root, layout, io_threads)

    def _map(self, path: Path, dt: np.dtype, width: int) -> np.ndarray:
        n = self.layout.num_nodes
        want = n * width * dt.itemsize
        size = path.stat().st_size if path.exists() else -1
        if size != want:
            raise OptionError(f"history file {path} has {size} bytes, expected {want}",
                              hint="the run directory was damaged: start the run again with --force")
        if n == 0 or width == 0:
            return np.zeros((n, width), dtype=dt)
        arr = np.memmap(path, dtype=dt, mode="r+", shape=(n, width))
        try:
            arr._mmap.madvise(mmap.MADV_RANDOM)
        except (AttributeError, OSError, ValueError):     # no madvise here: read-around then
            pass
        return arr

    @property
    def emb_itemsize(self) -> int:
        return np.dtype(self.layout.dtype).itemsize

    @property
    def num_layers(self) -> int:
        return len(self.emb)

    # ---- rows ----------------------------------------------------------------------------------
    def _slices(self, n: int, call) -> None:
        """call(lo, hi) over [0, n) cut into up to io_threads slices run at once (the pool's
        threads; inline when n is small). Waits for every slice before raising a slice's error,
        so no kernel still touches the rows when the caller sees it."""
        k = min(self.io_threads, n // MIN_ROWS_PER_THREAD)
        call = self._counting_faults(call)
        if k <= 1:
            call(0, n)
            return
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.io_threads, thread_name_prefix="history-io")
            pool = self._pool
        cuts = np.linspace(0, n, k + 1).astype(np.int64).tolist()
        futures = [pool.submit(call, cuts[i], cuts[i + 1]) for i in range(k)]
        errors = [f.exception() for f in futures]
        for e in errors:
            if e is not None:
                raise e

    def _counting_faults(self, call):
        """call, adding the page faults its thread takes to self.faults ([minor, major])."""
        def counted(lo: int, hi: int) -> None:
            f0 = thread_faults()
            try:
                call(lo, hi)
            finally:
                f1 = thread_faults()
                with self._pool_lock:
                    self.faults[0] += f1[0] - f0[0]
                    self.faults[1] += f1[1] - f0[1]
        return counted

    def _gather(self, src: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """src[ids] (n, width) in src's dtype, rows faulted in ascending order by the pool."""
        self._touch(src, ids, read=True)
        out = np.empty((len(ids), src.shape[1]), dtype=src.dtype)
        if len(ids):
            order = np.argsort(ids, kind="stable")
            s_bits, o_bits = bit_view(src), bit_view(out)
            self._slices(len(ids), lambda lo, hi: gather_rows_range(s_bits, ids, order, lo, hi, o_bits))
        return out

    def read_emb(self, layer: int, ids: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """float32 (n, width) rows `ids` (int64, in [0, N)) of embedding store `layer`."""
        raw = self._gather(self.emb[layer], ids)
        if raw.dtype == np.float32:
            return raw
        if out is None:
            out = np.empty(raw.shape, dtype=np.float32)
        np.copyto(out, raw)
        return out

    def read_grad(self, layer: int, ids: np.ndarray) -> np.ndarray:
        """float32 (n, width) rows `ids` of gradient store `layer`."""
        return self._gather(self.grad[layer], ids)

    def write_emb(self, layer: int, ids: np.ndarray, rows: np.ndarray) -> None:
        """emb[layer][ids] = rows (already in the store's dtype: quantised by the caller once)."""
        if len(ids):
            dst = self.emb[layer]
            self._touch(dst, ids)
            order = np.argsort(ids, kind="stable")
            if has_repeats(ids, order):         # numpy's last-wins, serially
                dst[ids] = rows
                return
            d_bits, r_bits = bit_view(dst), bit_view(np.ascontiguousarray(rows, dst.dtype))
            self._slices(len(ids), lambda lo, hi: scatter_rows(d_bits, ids, order, lo, hi, r_bits))

    def reset_grad(self, layer: int, ids: np.ndarray) -> None:
        if len(ids):
            g = self.grad[layer]
            self._touch(g, ids)
            order = np.argsort(ids, kind="stable")
            self._slices(len(ids), lambda lo, hi: zero_rows(g, ids, order, lo, hi))

    def add_grad(self, layer: int, ids: np.ndarray, rows: np.ndarray) -> None:
        """grad[layer][ids] += rows (float32); ids unique (a block's sources are)."""
        if len(ids):
            g = self.grad[layer]
            self._touch(g, ids, read=True)
            order = np.argsort(ids, kind="stable")
            if has_repeats(ids, order):
                g[ids] = g[ids] + rows
                return
            r = np.ascontiguousarray(rows, np.float32)
            self._slices(len(ids), lambda lo, hi: add_rows(g, ids, order, lo, hi, r))

    def _touch(self, arr: np.ndarray, ids: np.ndarray, read: bool = False) -> None:
        # a row smaller than a page still maps the whole page, and a read fault maps the cached
        # pages around it too (fault-around, 64 KiB; MADV_RANDOM does not stop it): counting a
        # page per read row let 16x the budgeted pages stay mapped (4.9 GiB RSS at 256 MiB)
        per_row = max(arr.shape[1] * arr.dtype.itemsize, FAULT_AROUND_BYTES if read else mmap.PAGESIZE)
        if self.released.add(len(ids) * per_row):
            self._due.set()

    def release(self, force: bool = False) -> None:
        """Unmap the history pages once the counter's bytes were touched since the last release
        (or now, with force)."""
        if not (force or self._due.is_set()):
            return
        self._due.clear()
        if force:
            self.released.reset()
        for a in self.emb + self.grad:
            release_pages(a)

    def prefetch(self, stop=None) -> bool:
        """Read the files into the page cache in sequential chunks (posix_fadvise WILLNEED: the
        kernel's readahead, no RSS, nothing pinned) when they fit in PREFETCH_SHARE of the memory
        available now; returns whether it did. Why: a pass touches pages all over the files, and
        MADV_RANDOM makes each first touch one random 4 KiB read (100-300 us here) where a sequential
        read of all of them runs at the disk's bandwidth. Histories larger than that share are left
        to the random reads (reading them ahead would only evict what the pass needs).
        `stop`: a threading.Event that ends the prefetch early."""
        from gstore.cold_pages import read_ahead
        from gstore.memory import available_memory_bytes

        avail = available_memory_bytes()
        if avail is None or self.layout.nbytes > PREFETCH_SHARE * avail or not hasattr(os, "posix_fadvise"):
            return False
        read_ahead(self.paths(), stop, PREFETCH_CHUNK)
        return True

    def flush(self) -> None:
        """Write dirty pages to the files (before a snapshot copies them)."""
        for a in self.emb + self.grad:
            if isinstance(a, np.memmap):
                a.flush()

    def close(self) -> None:
        self.flush()
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
        self.emb, self.grad = [], []

    def paths(self) -> list[Path]:
        return [self.root / name for name, _, _ in self.layout.files()]


def thread_faults() -> tuple[int, int]:
    """(minor, major) page faults of the calling thread so far; (0, 0) where unknown."""
    try:
        r = resource.getrusage(resource.RUSAGE_THREAD)
    except (AttributeError, OSError, ValueError):
        return 0, 0
    return r.ru_minflt, r.ru_majflt


def history_bytes_hint(layout: HistoryLayout, root: Path) -> str:
    """'N bytes of history (K layers ...) under root' for log lines and errors."""
    from gstore.memory import format_bytes

    return (f"{format_bytes(layout.nbytes)} of history ({len(layout.widths)} layer(s), {layout.dtype}"
            f"{', + gradient stores' if layout.gradients else ''}) under {root}")

