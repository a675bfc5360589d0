"""Pass 1 spill of edge records into dst-range buckets, and pass 3: one bucket at a time -> CSR.

Records are [dst_key, src_key] int64 pairs (+ float32 weight). Bucket b holds the records with
bounds[b-1] <= (dst, src) < bounds[b] in lexicographic order; the first-level bounds only split on
dst (src part = INT64_MIN), re-splitting an oversized bucket also splits on src so even one huge row
can be cut. Since dense order is key order, buckets are consecutive runs of the final `indices`.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gstore.errors import BudgetError
from gstore.pipeline.ingest import csr_kernels as C
from gstore.pipeline.ingest import id_remap_kernels as K
from gstore.pipeline.ingest.id_remap import INT64_MIN, BucketPlan, IdTable
from gstore.pipeline.ingest.spill_files import BucketFiles, RawArrayFile, read_into

log = logging.getLogger(__name__)

# pass-3 bytes per record: record pair 16 + sort key 8 + column out 8 (+ weight 4, radix scratch 12)
BYTES_PER_RECORD = 32
BYTES_PER_RECORD_WEIGHTED = 48
_SAMPLE_SECTIONS = 256
_SAMPLE_RUN = 512
_MAX_RESPLIT_DEPTH = 6
_PARALLEL_MIN_RECORDS = 1 << 20
_NO_GRID = BucketPlan(np.zeros(0, dtype=np.int64))


@dataclass
class CsrStats:
    num_edges: int = 0                 # stored entries (len(indices))
    duplicates_dropped: int = 0        # entries removed by dedup
    self_loops_dropped: int = 0        # entries removed by --self-loops drop
    buckets: int = 0                   # buckets processed (after re-splits)
    resplits: int = 0


class EdgeSpill:
    """The pass-1 bucket files of edge records (and weights)."""

    def __init__(self, directory: Path, bnd_d: np.ndarray, bnd_s: np.ndarray, weighted: bool,
                 prefix: str = "e", outer_lo: tuple[int, int] | None = None,
                 outer_hi: tuple[int, int] | None = None, plan: BucketPlan | None = None) -> None:
        self.plan = plan              # first level: bounds on a grid (fast bucket lookup)
        self.outer_lo = outer_lo      # a re-split bucket's range: its sub-buckets lie inside it
        self.outer_hi = outer_hi
        self.bnd_d = np.asarray(bnd_d, dtype=np.int64)
        self.bnd_s = np.asarray(bnd_s, dtype=np.int64)
        self.weighted = weighted
        nb = len(self.bnd_d) + 1
        self.records = BucketFiles(directory, prefix + "rec", nb, np.int64, (2,))
        self.weights = BucketFiles(directory, prefix + "w", nb, np.float32) if weighted else None
        self._out = np.empty((0, 2), dtype=np.int64)
        self._out_w = np.empty(0, dtype=np.float32)
        self._starts = np.empty(nb + 1, dtype=np.int64)

    @property
    def n_buckets(self) -> int:
        return len(self.bnd_d) + 1

    def bucket_bounds(self, b: int) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        lo = self.outer_lo if b == 0 else (int(self.bnd_d[b - 1]), int(self.bnd_s[b - 1]))
        hi = self.outer_hi if b == self.n_buckets - 1 else (int(self.bnd_d[b]), int(self.bnd_s[b]))
        return lo, hi

    def add(self, dst: np.ndarray, src: np.ndarray, weight: np.ndarray | None, both: bool) -> None:
        """Spill records (dst, src[, w]); both=True also spills (src, dst)."""
        m = len(dst) * (2 if both else 1)
        if len(self._out) < m:
            self._out = np.empty((m, 2), dtype=np.int64)
            self._out_w = np.empty(m if self.weighted else 1, dtype=np.float32)
        w = weight if weight is not None else self._out_w[:1]
        p = self.plan if self.plan is not None else _NO_GRID
        K.scatter_edges(dst, src, w, self.weighted, both, self.bnd_d, self.bnd_s, np.int64(p.grid_lo),
                        p.grid_shift, p.cell_bucket, self._out, self._out_w, self._starts)
        self.records.append_grouped(self._out[:m], self._starts)
        if self.weighted:
            self.weights.append_grouped(self._out_w[:m], self._starts)

    def close_writers(self) -> None:
        self.records.close_writers()
        if self.weights is not None:
            self.weights.close_writers()

    def remove(self, b: int) -> None:
        self.records.remove(b)
        if self.weights is not None:
            self.weights.remove(b)

    def release_buffers(self) -> None:
        self._out = np.empty((0, 2), dtype=np.int64)
        self._out_w = np.empty(0, dtype=np.float32)


def first_level_spill(directory: Path, plan: BucketPlan, weighted: bool) -> EdgeSpill:
    """The pass-1 spill bucketed by dst key only (src part of every bound = INT64_MIN)."""
    return EdgeSpill(directory, plan.bounds, np.full(len(plan.bounds), INT64_MIN, dtype=np.int64),
                     weighted, plan=plan)


class CsrBuilder:
    """Pass 3: turns the bucket spills into `indptr`, `indices` and `weights` (sequential writes)."""

    def __init__(self, table: IdTable, spill_dir: Path, *, dedup: bool, drop_self_loops: bool,
                 sum_weights: bool, weighted: bool, max_records: int) -> None:
        self.table = table
        self.n = table.num_nodes
        self.spill_dir = Path(spill_dir)
        self.dedup = dedup
        self.drop_self_loops = drop_self_loops
        self.sum_weights = sum_weights
        self.weighted = weighted
        self.max_records = max(1024, max_records)
        self.src_bits = max(1, (self.n - 1).bit_length())
        self.index_dtype = np.int32 if self.n < 2**31 else np.int64
        self.indices = RawArrayFile(self.spill_dir / "indices.raw", self.index_dtype)
        self.weights_out = RawArrayFile(self.spill_dir / "weights.raw", np.float32) if weighted else None
        self.indptr = RawArrayFile(self.spill_dir / "indptr.raw", np.int64)
        self.next_row = 0              # first v whose indptr[v] is not yet written
        self.stats = CsrStats()
        self._bufs: dict[str, np.ndarray] = {}
        self._subdir_count = 0
        self._executor = None
        self._lock = threading.Lock()

    def _buf(self, name: str, n: int, dtype, shape: tuple[int, ...] = ()) -> np.ndarray:
        a = self._bufs.get(name)
        if a is None or len(a) < n:
            a = np.empty((max(n, 1), *shape), dtype=dtype)
            self._bufs[name] = a
        return a[:n]

    def run(self, spill: EdgeSpill, bar=None) -> None:
        spill.close_writers()
        self._run_spill(spill, depth=0, bar=bar)
        self._emit_rows(np.zeros(0, dtype=np.int64), 0, 0, self.n)  # rows up to N (the last bound)
        if self._executor is not None:
            self._executor.shutdown()

    def _run_spill(self, spill: EdgeSpill, depth: int, bar) -> None:
        for b in range(spill.n_buckets):
            count = int(spill.records.counts[b])
            lo, hi = spill.bucket_bounds(b)
            if count > self.max_records and depth < _MAX_RESPLIT_DEPTH:
                sub = self._resplit(spill, b, count)
                if sub is not None:
                    spill.remove(b)
                    self._run_spill(sub, depth + 1, None)
                    if bar is not None:
                        bar.advance(1)
                    continue
            self._process_bucket(spill, b, count, lo, hi)
            spill.remove(b)
            if bar is not None:
                bar.advance(1)

    # ---- one bucket --------------------------------------------------------------------------
    def _process_bucket(self, spill: EdgeSpill, b: int, count: int, lo, hi) -> None:
        self.stats.buckets += 1
        if count > self.max_records:
            log.warning("bucket of %d records exceeds the memory plan (%d); processing anyway",
                        count, self.max_records)
        row_lo = self.table.rank_of_bound(None if lo is None else lo[0])
        row_hi = self.table.rank_of_bound(None if hi is None else hi[0], upper=True)
        if count == 0:
            self._emit_rows(np.zeros(0, dtype=np.int64), 0, row_lo, row_hi)
            return
        if ((row_hi - row_lo + 1) << self.src_bits) >= 2**63:
            raise BudgetError(f"a bucket spans {row_hi - row_lo + 1} rows of a {self.n}-node graph; "
                              "its packed sort keys overflow 64 bits",
                              hint="use a larger --memory-budget")
        rec = self._buf("rec", count, np.int64, (2,))
        fd = spill.records.open_read(b)
        try:
            read_into(fd, rec, 0)
        finally:
            os.close(fd)
        w = None
        if self.weighted:
            w = self._buf("w", count, np.float32)
            fd = spill.weights.open_read(b)
            try:
                read_into(fd, w, 0)
            finally:
                os.close(fd)
        dst = rec[:, 0]
        src = rec[:, 1]
        if not self.table.identity:
            # remap in place (strided column views): the raw keys are not needed afterwards
            self.table.lookup(dst, dst)
            self.table.lookup(src, src)
            # every spilled key was collected in pass 1, so a miss (-1) is a bug in gstore: stop
            # rather than pack -1 into a wrong edge (a lost edge once went unnoticed this way)
            if min(int(dst.min()), int(src.min())) < 0:
                raise RuntimeError(f"internal error: a node id of bucket {b} is missing from the "
                                   "remap table")
        keys = self._buf("keys", count, np.int64)
        w_arr = w if w is not None else self._buf("w_dummy", 1, np.float32)
        mid = self._mid_row(dst, row_lo, row_hi) if count >= _PARALLEL_MIN_RECORDS else None
        if mid is None:
            C.remap_and_pack(dst, src, np.int64(row_lo), self.src_bits, keys)
            m = self._finish_part(keys, w_arr, 0, count, row_lo, row_hi)
            self._write_part(keys, w_arr, 0, m, row_lo, row_hi)
            return
        # two independent halves by row, finished in two threads (numba kernels are nogil and
        # numpy's sort releases the GIL), written in order
        w_part = self._buf("w_part", count, np.float32) if self.weighted else w_arr
        n_lo = C.partition_pack(dst, src, w_arr, self.weighted, np.int64(row_lo), self.src_bits,
                                np.int64(mid), keys, w_part)
        if self.weighted:  # scratch allocated here, not racily inside the two threads
            self._buf("tk", count, np.int64)
            self._buf("tw", count, np.float32)
        fut = self._pool().submit(self._finish_part, keys, w_part, n_lo, count, row_lo, row_hi)
        m_lo = self._finish_part(keys, w_part, 0, n_lo, row_lo, row_hi)
        m_hi = fut.result()
        self._write_part(keys, w_part, 0, m_lo, row_lo, mid - 1)
        self._write_part(keys, w_part, n_lo, n_lo + m_hi, row_lo, row_hi)

    def _pool(self):
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(1, thread_name_prefix="gstore-csr")
        return self._executor

    @staticmethod
    def _mid_row(dst: np.ndarray, row_lo: int, row_hi: int) -> int | None:
        """A dense row splitting the bucket's records about in half (None when it cannot)."""
        sample = np.sort(dst[:: max(1, len(dst) // 4096)])
        mid = int(sample[len(sample) // 2])
        if mid <= row_lo:
            mid = row_lo + 1
        if mid > row_hi:
            return None
        return mid

    def _finish_part(self, keys: np.ndarray, w: np.ndarray, start: int, end: int, row_lo: int,
                     row_hi: int) -> int:
        """Self loops, sort, dedup on keys[start:end] in place; returns the new length."""
        k = keys[start:end]
        ww = w[start:end] if self.weighted else w
        n = end - start
        if self.drop_self_loops:
            m = C.drop_self_loops(k, ww, self.weighted, n, np.int64(row_lo), self.src_bits)
            self._count("self_loops_dropped", n - m)
            n = m
        if self.weighted:
            key_bits = max(1, (row_hi - row_lo + 1).bit_length() + self.src_bits)
            C.radix_sort_with_payload(k, ww, n, key_bits, self._buf("tk", len(keys), np.int64)[start:end],
                                      self._buf("tw", len(keys), np.float32)[start:end])
        else:
            k[:n].sort()
        if self.dedup:
            m = C.dedup_sorted(k, ww, self.weighted, n, self.sum_weights)
            self._count("duplicates_dropped", n - m)
            n = m
        return n

    def _count(self, name: str, n: int) -> None:
        with self._lock:
            setattr(self.stats, name, getattr(self.stats, name) + n)

    def _write_part(self, keys: np.ndarray, w: np.ndarray, start: int, end: int, row_lo: int,
                    last_row: int) -> None:
        """Append columns (and weights) of keys[start:end]; emit indptr rows up to last_row."""
        n = end - start
        cols = self._buf("cols", n, self.index_dtype)
        C.unpack_columns(keys[start:end], n, self.src_bits, cols)
        self.indices.append(cols)
        if self.weighted:
            self.weights_out.append(w[start:end])
        self._emit_rows(keys[start:end], n, row_lo, last_row)

    def _emit_rows(self, keys: np.ndarray, n: int, row_lo: int, last: int) -> None:
        """Write indptr[v] for next_row <= v <= last (all edges with dst < last are written once
        keys[:n] are), then count keys[:n] as written."""
        block = 1 << 22
        v = self.next_row
        while v <= last:
            k = min(block, last - v + 1)
            out = self._buf("indptr", k, np.int64)
            C.indptr_segment(keys, n, self.src_bits, np.int64(row_lo), np.int64(v),
                             np.int64(self.stats.num_edges), out)
            self.indptr.append(out)
            v += k
        self.next_row = max(self.next_row, last + 1)
        self.stats.num_edges += n

    # ---- re-split ----------------------------------------------------------------------------
    def _resplit(self, spill: EdgeSpill, b: int, count: int) -> EdgeSpill | None:
        """Cut bucket b into sub-buckets at (dst, src) quantiles of a sample; None if it cannot."""
        fd = spill.records.open_read(b)
        try:
            sections = min(_SAMPLE_SECTIONS, max(1, count // _SAMPLE_RUN))
            run = min(_SAMPLE_RUN, count)
            sample = np.empty((sections * run, 2), dtype=np.int64)
            for i in range(sections):
                start = (count - run) * i // max(1, sections - 1) if sections > 1 else 0
                read_into(fd, sample[i * run:(i + 1) * run], start * 16)
        finally:
            os.close(fd)
        order = np.lexsort((sample[:, 1], sample[:, 0]))
        sample = sample[order]
        parts = min(512, -(-count * 5 // (4 * self.max_records)))
        idx = (np.arange(1, parts) * len(sample)) // parts
        cuts = sample[idx]
        lo, hi = spill.bucket_bounds(b)
        keep = np.ones(len(cuts), dtype=bool)
        keep[1:] = (cuts[1:, 0] != cuts[:-1, 0]) | (cuts[1:, 1] != cuts[:-1, 1])
        cuts = cuts[keep]
        if lo is not None:  # a cut at the bucket's own lower bound makes an empty first part
            cuts = cuts[(cuts[:, 0] > lo[0]) | ((cuts[:, 0] == lo[0]) & (cuts[:, 1] > lo[1]))]
        if len(cuts) == 0:
            return None
        self.stats.resplits += 1
        self._subdir_count += 1
        sub = EdgeSpill(self.spill_dir / f"split{self._subdir_count}", cuts[:, 0].copy(),
                        cuts[:, 1].copy(), self.weighted, outer_lo=lo, outer_hi=hi)
        rec = self._buf("rec", min(count, self.max_records), np.int64, (2,))
        wbuf = self._buf("w", min(count, self.max_records), np.float32) if self.weighted else None
        fd = spill.records.open_read(b)
        wfd = spill.weights.open_read(b) if self.weighted else None
        try:
            for start in range(0, count, self.max_records):
                k = min(self.max_records, count - start)
                read_into(fd, rec[:k], start * 16)
                if wfd is not None:
                    read_into(wfd, wbuf[:k], start * 4)
                sub.add(np.ascontiguousarray(rec[:k, 0]), np.ascontiguousarray(rec[:k, 1]),
                        None if wbuf is None else wbuf[:k], both=False)
        finally:
            os.close(fd)
            if wfd is not None:
                os.close(wfd)
        sub.close_writers()
        sub.release_buffers()
        return sub
