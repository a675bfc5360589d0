"""String node ids: keyed by a 64-bit hash; dense order is ascending hash (as signed int64).

Each chunk's distinct strings (equal hashes are compared byte by byte, so a collision inside a
chunk stops the build too) are spilled with their hash into range buckets of the hash space. At the
end every bucket is sorted by hash; two different strings with one hash stop the build with a clear
error (about 1 in 40 at 10^9 distinct ids, 1 in 4000 at 10^8). The buckets then give
`node_ids/offsets` + `node_ids/utf8` in dense order and the sorted hashes become the remap table.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from gstore.builder import StoreBuilder
from gstore.errors import BudgetError, InputError
from gstore.memory import format_bytes
from gstore.pipeline.ingest import id_remap_kernels as K
from gstore.pipeline.ingest.chunks import StringColumn
from gstore.pipeline.ingest.id_remap import BucketPlan, IdTable, _sorted_table
from gstore.pipeline.ingest.spill_files import BucketFiles, RawArrayFile


def hash_column(col: StringColumn) -> np.ndarray:
    """int64 (n,) hash keys of a string column."""
    out = np.empty(len(col), dtype=np.int64)
    K.hash_strings(np.ascontiguousarray(col.offsets, dtype=np.int64), col.utf8, out)
    return out


class StringIdCollector:
    """Spills distinct (hash, string) pairs per chunk into hash-range buckets."""

    def __init__(self, spill_dir: Path, plan: BucketPlan, budget: int) -> None:
        self.spill_dir = Path(spill_dir)
        self.bounds = plan.bounds
        self.budget = budget
        nb = len(self.bounds) + 1
        self.keys = BucketFiles(self.spill_dir, "skeys", nb, np.int64)
        self.lengths = BucketFiles(self.spill_dir, "slens", nb, np.int64)
        self.utf8 = BucketFiles(self.spill_dir, "sutf8", nb, np.uint8)
        self._table = np.empty(0, dtype=np.int64)

    def add(self, col: StringColumn, keys: np.ndarray) -> None:
        """Record the strings of `col` whose hash keys are `keys` (int64, len(col))."""
        if len(keys) == 0:
            return
        size = 1 << max(4, (2 * len(keys)).bit_length())
        if len(self._table) < size:
            self._table = np.empty(size, dtype=np.int64)
        clash = np.full(2, -1, dtype=np.int64)
        offsets = np.ascontiguousarray(col.offsets, dtype=np.int64)
        first = K.first_distinct_strings(keys, offsets, col.utf8, self._table[:size], clash)
        if clash[0] >= 0:
            raise hash_clash_error(_text(offsets, col.utf8, clash[0]), _text(offsets, col.utf8, clash[1]))
        ukeys = keys[first]
        bucket = np.searchsorted(self.bounds, ukeys, side="right")
        order = np.argsort(bucket, kind="stable")
        first, ukeys, bucket = first[order], ukeys[order], bucket[order]
        lengths, data = K.gather_strings(np.ascontiguousarray(col.offsets, dtype=np.int64), col.utf8, first)
        ends = np.cumsum(lengths)
        cuts = np.searchsorted(bucket, np.arange(len(self.bounds) + 2), side="left")
        for b in np.flatnonzero(np.diff(cuts)):
            s, e = int(cuts[b]), int(cuts[b + 1])
            self.keys.append(int(b), ukeys[s:e])
            self.lengths.append(int(b), lengths[s:e])
            self.utf8.append(int(b), data[(ends[s - 1] if s else 0):ends[e - 1]])

    def finish(self, builder: StoreBuilder, bar=None) -> IdTable:
        """Sort each bucket by hash, check collisions, write node_ids/{offsets,utf8}; the table."""
        for f in (self.keys, self.lengths, self.utf8):
            f.close_writers()
        keys_raw = RawArrayFile(self.spill_dir / "string_keys.raw", np.int64)
        offsets_raw = RawArrayFile(self.spill_dir / "string_offsets.raw", np.int64)
        utf8_raw = RawArrayFile(self.spill_dir / "string_utf8.raw", np.uint8)
        offsets_raw.append(np.zeros(1, dtype=np.int64))
        total_bytes = 0
        for b in range(self.keys.n_buckets):
            n = int(self.keys.counts[b])
            if n:
                if n * 40 + int(self.utf8.counts[b]) * 2 > self.budget:
                    raise BudgetError(f"string id bucket of {n} ids does not fit the memory budget",
                                      hint="raise --memory-budget")
                keys = _load(self.keys, b, np.int64, n)
                lengths = _load(self.lengths, b, np.int64, n)
                data = _load(self.utf8, b, np.uint8, int(self.utf8.counts[b]))
                offsets = np.zeros(n + 1, dtype=np.int64)
                np.cumsum(lengths, out=offsets[1:])
                order = np.argsort(keys, kind="stable")
                out_len = np.empty(n, dtype=np.int64)
                out_utf8 = np.empty(len(data), dtype=np.uint8)
                m, nbytes, clash = K.dedup_sorted_strings(keys, order, offsets, data, out_len, out_utf8)
                if clash >= 0:
                    other = keys[clash]
                    twin = int(order[np.searchsorted(keys[order], other)])
                    raise hash_clash_error(_text(offsets, data, clash), _text(offsets, data, twin))
                skeys = keys[order]
                skeys = skeys[:K.unique_sorted_inplace(skeys)]
                keys_raw.append(skeys)
                offsets_raw.append(total_bytes + np.cumsum(out_len[:m]))
                utf8_raw.append(out_utf8[:nbytes])
                total_bytes += nbytes
                for f in (self.keys, self.lengths, self.utf8):
                    f.remove(b)
            if bar is not None:
                bar.advance(1)
        n = keys_raw.rows
        if n * 9 > self.budget:
            raise BudgetError(f"{n} string node ids need a {format_bytes(n * 9)} remap table",
                              hint=f"raise --memory-budget to at least {format_bytes(n * 18)}")
        uniq = keys_raw.read_all()
        keys_raw.close()
        offsets_raw.copy_into_store(builder, "node_ids/offsets")
        utf8_raw.copy_into_store(builder, "node_ids/utf8")
        offsets_raw.close()
        utf8_raw.close()
        table = _sorted_table(uniq)
        table.identity = False
        return table


def hash_clash_error(a: str, b: str) -> InputError:
    """The build stops on two different ids with one 64-bit key (never merged into one node)."""
    return InputError(f"node ids {a!r} and {b!r} have the same 64-bit hash; the build stops "
                      "rather than merge them into one node",
                      hint="map string ids to integers before ingesting")


def _text(offsets: np.ndarray, utf8: np.ndarray, i: int) -> str:
    return bytes(utf8[offsets[i]:offsets[i + 1]]).decode("utf-8", "replace")


def _load(files: BucketFiles, b: int, dtype, n: int) -> np.ndarray:
    return files.read(b, np.empty(n, dtype=dtype))
