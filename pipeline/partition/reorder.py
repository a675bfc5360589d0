"""`gstore partition --reorder`: renumber dense node ids so every part is a contiguous id range.

New id of old node v = its rank in `perm` (nodes sorted by part, ascending old id within a part).
A complete new store is built next to the old one (StoreBuilder, `STORE.tmp`, marked as this
process's scratch: see gstore/scratch.py) and swapped in by rename, so a kill or a full disk at any
point leaves the old store intact; a user's own `STORE.tmp` is refused, never deleted.

Out of core, and every array read a constant number of times whatever the budget: memory is O(N)
for the permutation plus O(budget). New rows are cut into buckets whose output fits a quarter of
the budget. Ragged arrays (indices + weights, string id bytes: `_permute_ragged`) and node-aligned
arrays (features: `_permute_row_array`) go through one distribution pass: the old array is read
once, sequentially, in bounded chunks (preadv, no memory maps); each chunk's rows are grouped by the
bucket of their new ids (a counting pass in numba) and appended, with those ids, to the bucket's
spill file in the builder's scratch (`STORE.tmp/_spill`); then each bucket is read back once, its
rows placed (and, for indices, mapped and sorted), written in order, and its spill files removed.
So 2 reads + 2 writes of each array (one read + one write when it fits one bucket), where the
former bucket-by-bucket fill read the whole old indices once per bucket (16 passes over 8 GiB at
10^9 edges and a 4 GiB budget). Features, labels, node ids, splits and all recorded partitions
follow their nodes. Derived arrays keyed by node
(embeddings, predictions: `manifest.derived`) are dropped with a warning, others copied.
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from gstore.builder import StoreBuilder
from gstore.errors import StoreError
from gstore.memory import DEFAULT_MEMORY_BUDGET, parse_bytes
from gstore.set_kernels import counting_groups, sorted_unique_ids
from gstore.partition_info import DEFAULT_KEY
from gstore.progress import NULL_PROGRESS, Progress
from gstore.shard_array import ArrayRecord
from gstore.pipeline.partition.csr_stream import ArrayFile, row_ranges, store_array_file
from gstore.pipeline.partition.partition import inverse_perm, partition_arrays
from gstore.faults import fault_point
from gstore.store_update import store_lock
from gstore.pipeline.ingest.spill_files import BucketFiles
from gstore.pipeline.partition.reorder_kernels import concat_rows, map_sort_rows, scatter_rows

log = logging.getLogger(__name__)

CSR_ARRAYS = {"indptr", "indices", "weights", "node_ids/offsets", "node_ids/utf8"}
MAX_OPEN_SPILLS = 64    # append descriptors kept open per spilled array (thousands of buckets at tiny budgets)


def reorder_permutation(parts: np.ndarray, num_parts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(perm int64 new->old, inv int64 old->new, partptr int64 (K+1,)) grouping nodes by part."""
    partptr, perm = partition_arrays(parts, num_parts)
    return perm, inverse_perm(perm, np.int64), partptr


def reorder_store(path: str | Path, key: str, *, memory_budget: str | int = DEFAULT_MEMORY_BUDGET,
                  progress: Progress = NULL_PROGRESS) -> Path:
    """Rewrite the store at `path` with the parts of partition `key` laid out contiguously."""
    import gstore

    path = Path(path)
    gstore.open(path)           # a missing or broken store is refused before a lock dir is made in it
    # the new store is built from a snapshot of the manifest and the old directory is deleted, so the
    # store's writer lock is held from before the manifest is read until the swap: a `gstore
    # partition` (or `ingest --force`) of this store in another process is refused (its record would
    # be lost, its scratch deleted under it), and one already running makes this reorder refused
    with store_lock(path, "partition scratch"):
        return _reorder_store(path, key, memory_budget, progress)


def _reorder_store(path: Path, key: str, memory_budget: str | int, progress: Progress) -> Path:
    import gstore

    t0 = time.perf_counter()
    store = gstore.open(path)
    store.check_structure()     # kernels below trust indptr, indices and the partition arrays
    meta = store.manifest.partitions.get(str(key))
    if meta is None:
        raise StoreError(f"store has no {key}-way partition to reorder by", path=path,
                         hint=f"run `gstore partition {path} --parts {key}` first")
    parts = np.array(store.array(meta["arrays"]["parts"]))
    perm, inv, partptr = reorder_permutation(parts, int(meta["num_parts"]))
    cap_bytes = max(1 << 12, parse_bytes(memory_budget) // 4)
    n = store.num_nodes
    arrays = store.manifest.arrays
    derived_kept, derived_names = _split_derived(store.manifest)
    with StoreBuilder(path, force=True) as b:
        old_indptr = np.array(store.indptr, dtype=np.int64)
        new_indptr = _new_indptr(old_indptr, perm)
        b.write_array("indptr", new_indptr)
        _reorder_csr(store, b, old_indptr, new_indptr, inv, cap_bytes, progress)
        fault_point("reorder:after-indices")
        if "node_ids/offsets" in arrays:
            off = np.array(store.array("node_ids/offsets"), dtype=np.int64)
            new_off = _new_indptr(off, perm)
            b.write_array("node_ids/offsets", new_off)
            _permute_ragged([store_array_file(store, "node_ids/utf8")], off, new_off, inv,
                            [b.array_writer("node_ids/utf8", (int(new_off[-1]),), np.uint8)], b,
                            cap_bytes, "node-ids", progress)
        for name, rec in arrays.items():
            if name in CSR_ARRAYS or name.startswith("partition/") or name in derived_names:
                continue
            if name.startswith("splits/"):
                # split ids are distinct: a bitmap pass sorts them in O(N / 64), not N log N
                b.write_array(name, sorted_unique_ids(inv[np.asarray(store.array(name))], n))
            elif rec.shape and rec.shape[0] == n:
                with progress.phase(f"reorder {name}", total=None):
                    _permute_row_array(store, rec, inv, b, cap_bytes)
            elif rec.shape and rec.shape[0] == store.num_edges:
                raise StoreError(f"cannot reorder edge-aligned array {name!r}", path=path,
                                 hint="drop it or partition without --reorder")
            else:
                log.warning("copying array %s unchanged (not node-aligned)", name)
                b.write_array(name, np.asarray(store.array(name)))
        fault_point("reorder:after-node-data")
        for rec in derived_kept.values():
            for name in rec.arrays.values():     # not keyed by node: the order does not touch them
                b.write_array(name, np.asarray(store.array(name)), arrays[name].chunk_rows)
        manifest = replace(store.manifest, partitions={}, arrays={}, derived=derived_kept)
        _write_partitions(store, b, manifest, perm, str(key), partptr)
        manifest.build = dict(manifest.build)
        manifest.build["reordered_by"] = {"partition": str(key), "seconds": time.perf_counter() - t0,
                                          "time": time.time()}
        fault_point("reorder:before-commit")
        del store
        b.commit(manifest)
    return path


def _split_derived(manifest) -> tuple[dict, set[str]]:
    """(derived groups the reorder keeps, names of every derived array). Node-keyed groups
    (embeddings, predictions: row i is node i) are dropped, logged: their rows follow the old
    numbering, and they are recomputed from the reordered store rather than permuted."""
    kept = {}
    for key, rec in manifest.derived.items():
        if rec.node_keyed:
            log.warning("reorder drops the derived arrays %r (%s): they are indexed by the old node "
                        "order; compute them again on the reordered store", key, rec.kind)
        else:
            kept[key] = rec
    return kept, {name for rec in manifest.derived.values() for name in rec.arrays.values()}


def _new_indptr(old_indptr: np.ndarray, perm: np.ndarray) -> np.ndarray:
    deg = np.diff(old_indptr)[perm]
    out = np.zeros(len(perm) + 1, dtype=np.int64)
    np.cumsum(deg, out=out[1:])
    return out


def _reorder_csr(store, b: StoreBuilder, old_indptr: np.ndarray, new_indptr: np.ndarray,
                 inv: np.ndarray, cap_bytes: int, progress: Progress) -> None:
    """indices (and weights) in new row order, neighbours mapped through inv and re-sorted."""
    sources = [store_array_file(store, "indices")]
    if store.has_array("weights"):
        sources.append(store_array_file(store, "weights"))
    e = int(new_indptr[-1])
    writers = [b.array_writer(name, (e,), f.dtype) for name, f in zip(("indices", "weights"), sources)]
    _reorder_csr_sources(sources, old_indptr, new_indptr, inv, writers, b, cap_bytes, progress)


def _reorder_csr_sources(sources: list[ArrayFile], old_indptr: np.ndarray, new_indptr: np.ndarray,
                         inv: np.ndarray, writers: list, b: StoreBuilder, cap_bytes: int,
                         progress: Progress = NULL_PROGRESS) -> None:
    """sources = [indices] or [indices, weights] of the old CSR, written in new order through
    `writers`, each row's neighbours mapped through inv and sorted (weights follow)."""
    weighted = len(sources) > 1
    no_w = np.zeros(0, np.float32)

    def map_sort(bucket_ptr: np.ndarray, outs: list[np.ndarray]) -> None:
        map_sort_rows(bucket_ptr, outs[0], inv, outs[1] if weighted else no_w, weighted)

    _permute_ragged(sources, old_indptr, new_indptr, inv, writers, b, cap_bytes, "edges", progress,
                    map_sort)


def _permute_ragged(sources: list[ArrayFile], old_ptr: np.ndarray, new_ptr: np.ndarray,
                    inv: np.ndarray, writers: list, b: StoreBuilder, cap_bytes: int, name: str,
                    progress: Progress = NULL_PROGRESS,
                    finish: Callable[[np.ndarray, list[np.ndarray]], None] | None = None) -> None:
    """Variable-length rows (CSR indices + weights, string id bytes) in new order.

    sources: the old arrays, all with row offsets old_ptr int64 (N+1,); new_ptr int64 (N+1,) the new
    offsets; inv int64 (N,) old id -> new id; writers[i] receives sources[i] in new order.
    finish(bucket_ptr, outs) may rework a bucket of new rows in place before it is written (the
    CSR maps and sorts its neighbours).

    New rows are cut into buckets whose entries of all sources fit half of cap_bytes. One bucket:
    each old chunk is scattered straight into it (one read). More: a distribution pass. Each old
    chunk (same size) is read once, its rows grouped by bucket (a counting pass) and appended, with
    their new ids, to the bucket's spill files in b.spill_dir; then each bucket is read back once,
    its rows placed, finished and written, and its spill files removed. Reads and writes each
    source twice whatever the budget; memory O(cap_bytes) beside the O(N) offsets.
    """
    entry_bytes = sum(f.dtype.itemsize for f in sources)
    cap = max(1, min(cap_bytes // (2 * entry_bytes), int(old_ptr[-1])))
    buckets = list(row_ranges(new_ptr, cap))
    chunks = list(row_ranges(old_ptr, cap))
    n = len(inv)
    nb = len(buckets)
    bufs = _Buffers(cap, [f.dtype for f in sources])
    log.info("reorder %s: %d entries, %d bucket(s) of new rows, %d chunk(s) of old rows",
             name, int(new_ptr[-1]), nb, len(chunks))
    with progress.phase(f"reorder {name}", total=len(chunks) + (nb if nb > 1 else 0), unit="block") as bar:
        if nb <= 1:
            size = int(new_ptr[-1])
            outs = [bufs.out(i, size) for i in range(len(sources))]
            for r0, r1 in chunks:
                lo, hi = int(old_ptr[r0]), int(old_ptr[r1])
                local = old_ptr[r0:r1 + 1] - lo
                for i, src in enumerate(sources):
                    scatter_rows(local, src.read(lo, hi, bufs.read[i]), r0, inv, 0, n, new_ptr[:-1], outs[i])
                bar.advance(1)
            if finish is not None:
                finish(new_ptr, outs)
            for w, out in zip(writers, outs):
                w.append(out)
        else:
            _distribute(sources, old_ptr, new_ptr, inv, writers, b.spill_dir, name, buckets, chunks,
                        bufs, finish, bar)
    for w in writers:
        b.add(w.finish())


class _Buffers:
    """Read and output buffers of `cap` entries per source, reused by every chunk and bucket (first
    touch of fresh pages is slow); a row longer than cap comes alone, into a buffer of its own."""

    def __init__(self, cap: int, dtypes: list[np.dtype]) -> None:
        self.cap, self.dtypes = cap, dtypes
        self.read = [np.empty(cap, d) for d in dtypes]
        self._out = [np.empty(cap, d) for d in dtypes]

    def _take(self, pool: list[np.ndarray], i: int, size: int) -> np.ndarray:
        return pool[i][:size] if size <= self.cap else np.empty(size, self.dtypes[i])

    def reading(self, i: int, size: int) -> np.ndarray:
        return self._take(self.read, i, size)

    def out(self, i: int, size: int) -> np.ndarray:
        return self._take(self._out, i, size)


def _distribute(sources: list[ArrayFile], old_ptr: np.ndarray, new_ptr: np.ndarray,
                inv: np.ndarray, writers: list, spill: Path, name: str,
                buckets: list[tuple[int, int]], chunks: list[tuple[int, int]], bufs: _Buffers,
                finish: Callable[[np.ndarray, list[np.ndarray]], None] | None, bar) -> None:
    """The spill path of `_permute_ragged` (more than one bucket of new rows)."""
    nb = len(buckets)
    bounds = np.array([a for a, _ in buckets] + [len(inv)], dtype=np.int64)
    id_files = BucketFiles(spill, f"reorder-{name}-rows-", nb, np.int64, max_open=MAX_OPEN_SPILLS)
    val_files = [BucketFiles(spill, f"reorder-{name}-{i}-", nb, f.dtype, max_open=MAX_OPEN_SPILLS)
                 for i, f in enumerate(sources)]
    row_starts = np.empty(nb + 1, dtype=np.int64)
    try:
        for r0, r1 in chunks:
            lo, hi = int(old_ptr[r0]), int(old_ptr[r1])
            local = old_ptr[r0:r1 + 1] - lo
            new_ids = inv[r0:r1]
            keys = np.searchsorted(bounds, new_ids, side="right") - 1
            order = np.empty(r1 - r0, dtype=np.int64)
            counting_groups(keys, np.int64(nb), row_starts, order)
            id_files.append_grouped(new_ids[order], row_starts)
            ent_cum = np.zeros(r1 - r0 + 1, dtype=np.int64)
            np.cumsum(np.diff(local)[order], out=ent_cum[1:])
            ent_starts = ent_cum[row_starts]
            for i, src in enumerate(sources):
                grouped = bufs.out(i, hi - lo)
                concat_rows(local, order, src.read(lo, hi, bufs.read[i]), grouped)
                val_files[i].append_grouped(grouped, ent_starts)
            bar.advance(1)
        id_files.close_writers()
        for f in val_files:
            f.close_writers()
        fault_point(f"reorder:{name}-spilled")
        for k, (a, bb) in enumerate(buckets):
            blo = int(new_ptr[a])
            size = int(new_ptr[bb]) - blo
            ids = id_files.read(k, np.empty(int(id_files.counts[k]), np.int64))
            if len(ids) != bb - a or any(int(f.counts[k]) != size for f in val_files):
                raise StoreError(f"reorder of {name}: spilled bucket {k} holds {len(ids)} rows, "
                                 f"expected {bb - a}", path=spill,
                                 hint="the scratch was changed under the reorder; run it again")
            spill_ptr = np.zeros(len(ids) + 1, dtype=np.int64)
            np.cumsum(new_ptr[ids + 1] - new_ptr[ids], out=spill_ptr[1:])
            start = new_ptr[a:bb] - blo
            outs = []
            for i, f in enumerate(val_files):
                vals = f.read(k, bufs.reading(i, size))
                out = bufs.out(i, size)
                scatter_rows(spill_ptr, vals, 0, ids, a, bb, start, out)
                outs.append(out)
            if finish is not None:
                finish(new_ptr[a:bb + 1] - blo, outs)
            for w, out in zip(writers, outs):
                w.append(out)
            id_files.remove(k)
            for f in val_files:
                f.remove(k)
            bar.advance(1)
    finally:
        id_files.remove_all()
        for f in val_files:
            f.remove_all()


def _permute_row_array(store, rec: ArrayRecord, inv: np.ndarray, b: StoreBuilder,
                       cap_bytes: int) -> None:
    """A node-aligned array (N, ...) in new row order.

    Fits in half the cap: one read, one scatter. Otherwise a distribution pass: stream the old rows
    once, appending each row (and its new id) to the spill file of its bucket of new ids, then fill
    every bucket from its file and write it out: 2 reads + 2 writes of the array, O(cap) memory.
    """
    n = rec.shape[0]
    tail = tuple(rec.shape[1:])
    row_items = int(np.prod(tail, dtype=np.int64)) if tail else 1
    src = store_array_file(store, rec.name)
    src = ArrayFile(src.path, src.dtype, n * row_items)
    row_bytes = max(1, row_items * src.dtype.itemsize)
    rows_per_bucket = max(1, cap_bytes // (2 * (row_bytes + 8)))
    w = b.array_writer(rec.name, rec.shape, rec.dtype, rec.chunk_rows)

    def read_rows(r0: int, r1: int) -> np.ndarray:
        return src.read(r0 * row_items, r1 * row_items).reshape((r1 - r0,) + tail)

    if n <= rows_per_bucket:
        out = np.empty((n,) + tail, dtype=src.dtype)
        out[inv] = read_rows(0, n)
        w.append(out)
        b.add(w.finish())
        return
    n_buckets = -(-n // rows_per_bucket)
    spill = b.spill_dir / f"rows-{rec.name.replace('/', '_')}"
    spill.mkdir()
    for r0 in range(0, n, rows_per_bucket):
        r1 = min(n, r0 + rows_per_bucket)
        block = read_rows(r0, r1)
        ids = inv[r0:r1]
        order = np.empty(r1 - r0, dtype=np.int64)
        bounds = np.empty(n_buckets + 1, dtype=np.int64)
        counting_groups(ids // rows_per_bucket, np.int64(n_buckets), bounds, order)
        for k in range(n_buckets):
            sel = order[bounds[k]:bounds[k + 1]]
            if len(sel):
                with open(spill / f"{k}.rows", "ab") as fh:
                    fh.write(np.ascontiguousarray(block[sel]).tobytes())
                with open(spill / f"{k}.ids", "ab") as fh:
                    fh.write(ids[sel].tobytes())
        del block
    for k in range(n_buckets):
        a = k * rows_per_bucket
        rows = min(n, a + rows_per_bucket) - a
        ids = np.fromfile(spill / f"{k}.ids", dtype=np.int64)
        data = np.fromfile(spill / f"{k}.rows", dtype=src.dtype).reshape((len(ids),) + tail)
        if len(ids) != rows:
            raise StoreError(f"reorder of {rec.name}: bucket {k} holds {len(ids)} rows, expected {rows}")
        out = np.empty((rows,) + tail, dtype=src.dtype)
        out[ids - a] = data
        w.append(out)
        (spill / f"{k}.ids").unlink()
        (spill / f"{k}.rows").unlink()
    spill.rmdir()
    b.add(w.finish())


def _write_partitions(store, b: StoreBuilder, manifest, perm: np.ndarray, key: str,
                      partptr: np.ndarray) -> None:
    """Every recorded partition, renumbered; partition `key` becomes contiguous (perm = identity)."""
    for k, meta in store.manifest.partitions.items():
        if k == DEFAULT_KEY:
            continue
        old_parts = np.asarray(store.array(meta["arrays"]["parts"]))
        new_parts = old_parts[perm].astype(np.int32)
        base = f"partition/k{k}"
        recs = [b.write_array(f"{base}/parts", new_parts)]
        if k == key:
            recs.append(b.write_array(f"{base}/partptr", partptr))
        else:
            pp, pm = partition_arrays(new_parts, int(meta["num_parts"]))
            recs += [b.write_array(f"{base}/partptr", pp), b.write_array(f"{base}/perm", pm),
                     b.write_array(f"{base}/pos", inverse_perm(pm))]
        new_meta = dict(meta)
        new_meta["arrays"] = {Path(r.name).name: r.name for r in recs}
        new_meta["contiguous"] = k == key
        new_meta["reordered"] = k == key
        manifest.partitions[k] = new_meta
    manifest.partitions[DEFAULT_KEY] = {"key": key}
