"""Original node ids -> dense ids 0..N-1, out of core.

Every id becomes an int64 key (ints: the id; strings: a 64-bit hash, see string_ids.py) and dense
order is sorted key order. `IdCollector` sees every key once during the edge pass (plus --nodes ids):

  * bitmap mode (key range <= the budget): one bit per key of [min, max]; no spill, no sort. The
    bitmap grows as new keys appear and switches to spill mode once its range outgrows the budget.
  * spill mode (sparse huge ints, strings): keys are appended to range buckets on disk; `finish`
    sorts and dedups each bucket in blocks, writes `node_ids` in order and keeps the sorted unique
    keys (8 bytes per node) in memory as the remap table.

`finish()` returns an `IdTable`: `lookup(keys) -> dense or -1`, `rank_of_bound(key)`.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gstore.builder import StoreBuilder
from gstore.errors import BudgetError
from gstore.memory import format_bytes
from gstore.pipeline.ingest import id_remap_kernels as K
from gstore.pipeline.ingest.spill_files import BucketFiles, RawArrayFile, read_into

log = logging.getLogger(__name__)

INT64_MIN = int(np.iinfo(np.int64).min)
INT64_MAX = int(np.iinfo(np.int64).max)
_NODE_ID_BLOCK = 1 << 22
_LOOKUP_BLOCK = 1 << 18     # keys per block of an in-place lookup (a 2 MiB copy)


@dataclass
class BucketPlan:
    """First-level key-range buckets: bucket b holds keys in [bounds[b-1], bounds[b]).

    The bounds lie on the cell edges of a uniform grid over the sampled key range (cell c starts at
    grid_lo + c << grid_shift), so kernels find a key's bucket as cell_bucket[cell] (int32 (G,))
    instead of a binary search. An empty cell_bucket means 'search the bounds'.
    """

    bounds: np.ndarray
    grid_lo: int = 0
    grid_shift: int = 0
    cell_bucket: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))

    @property
    def n_buckets(self) -> int:
        return len(self.bounds) + 1

    @staticmethod
    def from_sample(sample: np.ndarray, n_buckets: int, full_range: bool = False,
                    grid_bits: int = 16) -> "BucketPlan":
        """About n_buckets equal-count buckets for keys distributed like `sample` (int64);
        full_range: a grid over all of int64 (uniform hash keys; the sample may be empty)."""
        if full_range:
            lo, hi = INT64_MIN, INT64_MAX
        elif len(sample) == 0:
            return BucketPlan(np.zeros(0, dtype=np.int64))
        else:
            lo, hi = int(sample.min()), int(sample.max())
        span = hi - lo
        shift = max(0, span.bit_length() - grid_bits)
        n_cells = (span >> shift) + 1
        if full_range:
            before = np.arange(n_cells, dtype=np.float64) / n_cells
        else:
            cells = ((sample.astype(np.int64) - np.int64(lo)).astype(np.uint64) >> np.uint64(shift)).astype(np.int64)
            counts = np.bincount(cells, minlength=n_cells)
            before = (np.cumsum(counts) - counts) / max(1, len(sample))
        raw = np.minimum(n_buckets - 1, np.floor(before * n_buckets)).astype(np.int64)
        change = np.zeros(n_cells, dtype=np.int32)
        change[1:] = raw[1:] != raw[:-1]
        cell_bucket = np.cumsum(change, dtype=np.int32)
        cut_cells = np.flatnonzero(change)
        bounds = np.array([lo + (int(c) << shift) for c in cut_cells], dtype=np.int64)
        return BucketPlan(bounds, lo, shift, cell_bucket)


@dataclass
class IdTable:
    """The remap table. Exactly one of (bits, prefix) / (uniq, directory) is set.

    bitmap: bits uint64 (W,), prefix int64 (W+1,), base int64 (key of bit 0).
    sorted: uniq int64 (N,) sorted unique keys, directory int64 (D+1,), base, shift.
    """

    num_nodes: int
    identity: bool = False          # keys are exactly 0..N-1: lookup is the identity
    bits: np.ndarray | None = None
    prefix: np.ndarray | None = None
    uniq: np.ndarray | None = None
    directory: np.ndarray | None = None
    base: int = 0
    shift: int = 0

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.bits, self.prefix, self.uniq, self.directory) if a is not None)

    def lookup(self, keys: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """int64 dense id of each key, -1 where the key is not a node. `out` may alias `keys`
        (the CSR build remaps its record columns in place)."""
        out = np.empty(len(keys), dtype=np.int64) if out is None else out
        if self.identity:
            np.copyto(out, keys)
            out[(keys < 0) | (keys >= self.num_nodes)] = -1
        elif not np.may_share_memory(keys, out):
            self._lookup_kernel(keys, out)
        else:
            # the kernels are prange loops, whose array arguments numba declares noalias: handed
            # the same memory twice they may read a key after writing its answer (numba_config.py).
            # So an in-place lookup goes through a bounded copy of its keys, block by block.
            scratch = np.empty(min(len(keys), _LOOKUP_BLOCK), dtype=np.int64)
            for s in range(0, len(keys), _LOOKUP_BLOCK):
                e = min(s + _LOOKUP_BLOCK, len(keys))
                block = scratch[:e - s]
                np.copyto(block, keys[s:e])
                self._lookup_kernel(block, out[s:e])
        return out

    def _lookup_kernel(self, keys: np.ndarray, out: np.ndarray) -> None:
        """keys and out must not overlap (see lookup)."""
        if self.bits is not None:
            K.bitmap_lookup(self.bits, self.prefix, np.int64(self.base), keys, out)
        else:
            K.sorted_lookup(self.uniq, self.directory, np.int64(self.base), self.shift, keys, out)

    def rank_of_bound(self, key: int | None, upper: bool = False) -> int:
        """Number of nodes with key < `key` (None: -inf, or +inf when upper)."""
        if key is None:
            return self.num_nodes if upper else 0
        if self.identity:
            return int(min(max(key, 0), self.num_nodes))
        if self.bits is not None:
            return int(K.bitmap_rank_of_bound(self.bits, self.prefix, np.int64(self.base), np.int64(key)))
        return int(np.searchsorted(self.uniq, np.int64(key), side="left"))


class IdCollector:
    """Collects the set of node keys (see module doc); `plan` gives the spill mode's range buckets."""

    def __init__(self, spill_dir: Path, plan: BucketPlan, budget: int, *, force_spill: bool) -> None:
        self.spill_dir = Path(spill_dir)
        self.plan = plan
        self.bounds = plan.bounds
        self.budget = budget
        # bits + prefix cost range/4 bytes: allow it a quarter of the budget
        self.max_range = max(1 << 16, budget)
        self.mode = "spill" if force_spill else "bitmap"
        self.bits: np.ndarray | None = None
        self.base = 0                    # key of bit 0 (multiple of 64)
        self.spill: BucketFiles | None = None
        self._scratch = np.empty(0, dtype=np.int64)
        if self.mode == "spill":
            self._open_spill()

    def _open_spill(self) -> None:
        self.spill = BucketFiles(self.spill_dir, "ids", len(self.bounds) + 1, np.int64)

    def add(self, keys: np.ndarray) -> None:
        """Record int64 keys (any order, repeats fine)."""
        if len(keys) == 0:
            return
        if self.mode == "bitmap":
            lo, hi = K.minmax(keys)
            if self._ensure_bitmap(int(lo), int(hi)):
                K.bitmap_set(self.bits, np.int64(self.base), keys)
                return
        self._spill_keys(keys)

    def _spill_keys(self, keys: np.ndarray) -> None:
        if len(self._scratch) < len(keys):
            self._scratch = np.empty(len(keys), dtype=np.int64)
        out = self._scratch[:len(keys)]
        starts = np.empty(len(self.bounds) + 2, dtype=np.int64)
        p = self.plan
        K.scatter_keys(keys, self.bounds, np.int64(p.grid_lo), p.grid_shift, p.cell_bucket, out, starts)
        self.spill.append_grouped(out, starts)

    def _ensure_bitmap(self, lo: int, hi: int) -> bool:
        """Grow the bitmap to cover [lo, hi]; switch to spill mode (returns False) when too wide."""
        if self.bits is not None and lo >= self.base and hi < self.base + 64 * len(self.bits):
            return True
        cur_lo = lo if self.bits is None else min(lo, self.base)
        cur_hi = hi if self.bits is None else max(hi, self.base + 64 * len(self.bits) - 1)
        span = cur_hi - cur_lo + 1
        if span > self.max_range:
            self._switch_to_spill()
            return False
        # grow with slack (within max_range) so slowly rising ids do not reallocate every chunk
        extra = min(span // 4, self.max_range - span) if self.bits is not None else 0
        new_lo = cur_lo - (extra if self.bits is not None and lo < self.base else 0)
        new_hi = cur_hi + (extra if self.bits is not None and lo >= self.base else 0)
        new_lo = (max(new_lo, INT64_MIN) // 64) * 64
        new_hi = min(new_hi, INT64_MAX)
        n_words = (new_hi - new_lo) // 64 + 1
        bits = np.zeros(n_words, dtype=np.uint64)
        if self.bits is not None:
            K.bitmap_or_into(bits, np.int64((self.base - new_lo) // 64), self.bits)
        self.bits, self.base = bits, new_lo
        return True

    def _switch_to_spill(self) -> None:
        log.info("node id range too wide for a bitmap; spilling ids to buckets")
        self.mode = "spill"
        self._open_spill()
        if self.bits is not None:
            prefix = K.bitmap_prefix(self.bits)
            step = _NODE_ID_BLOCK // 64
            for w in range(0, len(self.bits), step):
                self._spill_keys(K.bitmap_keys(self.bits, prefix, np.int64(self.base), w,
                                               min(w + step, len(self.bits))))
            self.bits = None

    # ---- pass 2 ---------------------------------------------------------------------------------
    def finish(self, builder: StoreBuilder, write_node_ids: bool, block_keys: int,
               progress_bar=None) -> IdTable:
        """Build the remap table; write the int64 `node_ids` array when write_node_ids."""
        if self.mode == "bitmap":
            return self._finish_bitmap(builder, write_node_ids)
        return self._finish_spill(builder, write_node_ids, block_keys, progress_bar)

    def _finish_bitmap(self, builder: StoreBuilder, write_node_ids: bool) -> IdTable:
        if self.bits is None:
            return IdTable(num_nodes=0, identity=True)
        prefix = K.bitmap_prefix(self.bits)
        n = int(prefix[-1])
        identity = bool(K.bitmap_rank_of_bound(self.bits, prefix, np.int64(self.base),
                                                                   np.int64(0)) == 0
                        and K.bitmap_rank_of_bound(self.bits, prefix, np.int64(self.base),
                                                   np.int64(n)) == n)
        table = IdTable(num_nodes=n, identity=identity, bits=self.bits, prefix=prefix, base=self.base)
        if write_node_ids:
            w = builder.array_writer("node_ids", (n,), np.int64)
            if identity:
                for s in range(0, n, _NODE_ID_BLOCK):
                    w.append(np.arange(s, min(n, s + _NODE_ID_BLOCK), dtype=np.int64))
            else:
                step = _NODE_ID_BLOCK // 64
                for wd in range(0, len(self.bits), step):
                    w.append(K.bitmap_keys(self.bits, prefix, np.int64(self.base), wd,
                                           min(wd + step, len(self.bits))))
            builder.add(w.finish())
        return table

    def _finish_spill(self, builder: StoreBuilder, write_node_ids: bool, block_keys: int,
                      bar) -> IdTable:
        spill = self.spill
        spill.close_writers()
        raw = RawArrayFile(self.spill_dir / "node_keys.raw", np.int64)
        buf = np.empty(block_keys, dtype=np.int64)
        for b in range(spill.n_buckets):
            fd = spill.open_read(b)
            if fd is not None:
                acc = np.zeros(0, dtype=np.int64)
                try:
                    for start in range(0, int(spill.counts[b]), block_keys):
                        n = min(block_keys, int(spill.counts[b]) - start)
                        block = buf[:n]
                        read_into(fd, block, start * 8)
                        block.sort()
                        m = K.unique_sorted_inplace(block)
                        merged = np.concatenate([acc, block[:m]])
                        merged.sort()
                        acc = merged[:K.unique_sorted_inplace(merged)]
                finally:
                    os.close(fd)
                raw.append(acc)
                spill.remove(b)
            if bar is not None:
                bar.advance(1)
        n = raw.rows
        need = n * 9
        if need > self.budget:
            raw.close()
            raise BudgetError(f"{n} distinct sparse node ids need a {format_bytes(need)} remap table",
                              hint=f"raise --memory-budget to at least {format_bytes(need * 2)}")
        uniq = raw.read_all()
        if write_node_ids:
            raw.copy_into_store(builder, "node_ids")
        raw.close()
        return _sorted_table(uniq)


def _sorted_table(uniq: np.ndarray) -> IdTable:
    n = len(uniq)
    if n == 0:
        return IdTable(num_nodes=0, identity=True)
    base = int(uniq[0])
    span = (int(uniq[-1]) - base) & ((1 << 64) - 1)
    dir_bits = max(1, min(40, (n // 2).bit_length()))   # ~2 keys per directory slot
    shift = max(0, span.bit_length() - dir_bits)
    n_dir = (span >> shift) + 1
    directory = K.build_directory(uniq, np.int64(base), shift, int(n_dir))
    identity = bool(uniq[0] == 0 and uniq[-1] == n - 1)
    return IdTable(num_nodes=n, identity=identity, uniq=uniq, directory=directory, base=base, shift=shift)
