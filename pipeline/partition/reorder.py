"""`gstore partition --reorder`: renumber dense node ids so every part is a contiguous id range.

New id of old node v = its rank in `perm` (nodes sorted by part, ascending old id within a part).
A complete new store is built next to the old one (StoreBuilder, `STORE.tmp`, marked as this
process's scratch: see gstore/scratch.py) and swapped in by rename, so a kill or a full disk at any
point leaves the old store intact; a user's own `STORE.tmp` is refused, never deleted.

Out of core: every array is produced in buckets of new rows whose output fits a quarter of the budget;
each bucket is filled by one sequential pass over the old array (read with preadv, no memory maps), so
memory is O(N) for the permutation plus O(budget), at the price of size / (budget / 4) passes over
the edge arrays. Node-aligned arrays (features) go through one distribution pass into per-bucket spill
files instead (2 reads + 2 writes, whatever their size). Neighbour ids are mapped through the permutation and rows re-sorted; features, labels,
node ids, splits and all recorded partitions follow their nodes. Derived arrays keyed by node
(embeddings, predictions: `manifest.derived`) are dropped with a warning, others copied.
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from gstore.builder import StoreBuilder
from gstore.errors import StoreError
from gstore.memory import DEFAULT_MEMORY_BUDGET, parse_bytes
from gstore.set_kernels import sorted_unique_ids
from gstore.partition_info import DEFAULT_KEY
from gstore.progress import NULL_PROGRESS, Progress
from gstore.shard_array import ArrayRecord
from gstore.pipeline.partition.csr_stream import ArrayFile, row_ranges, store_array_file
from gstore.pipeline.partition.partition import inverse_perm, partition_arrays
from gstore.faults import fault_point
from gstore.store_update import store_lock
from gstore.pipeline.partition.reorder_kernels import map_sort_rows, scatter_rows

log = logging.getLogger(__name__)

CSR_ARRAYS = {"indptr", "indices", "weights", "node_ids/offsets", "node_ids/utf8"}


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
            _permute_ragged(store_array_file(store, "node_ids/utf8"), off, new_off, inv,
                            b.array_writer("node_ids/utf8", (int(new_off[-1]),), np.uint8), b, cap_bytes)
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
    idx_file = store_array_file(store, "indices")
    w_file = store_array_file(store, "weights") if store.has_array("weights") else None
    entry_bytes = idx_file.dtype.itemsize + (w_file.dtype.itemsize if w_file else 0)
    cap = max(1, cap_bytes // (2 * entry_bytes))
    e = int(new_indptr[-1])
    iw = b.array_writer("indices", (e,), idx_file.dtype)
    ww = b.array_writer("weights", (e,), w_file.dtype) if w_file else None
    buckets = list(row_ranges(new_indptr, cap))
    read_chunk = max(1, cap)
    with progress.phase("reorder edges", total=len(buckets), unit="pass") as bar:
        for a, bb in buckets:
            lo = int(new_indptr[a])
            size = int(new_indptr[bb]) - lo
            start = new_indptr[a:bb] - lo
            nbr = np.empty(size, dtype=idx_file.dtype)
            wv = np.empty(size, dtype=w_file.dtype) if w_file else np.zeros(0, np.float32)
            for r0, r1 in row_ranges(old_indptr, read_chunk):
                sel = inv[r0:r1]
                if not np.any((sel >= a) & (sel < bb)):
                    continue
                olo, ohi = int(old_indptr[r0]), int(old_indptr[r1])
                local = old_indptr[r0:r1 + 1] - olo
                scatter_rows(local, idx_file.read(olo, ohi), r0, inv, a, bb, start, nbr)
                if w_file:
                    scatter_rows(local, w_file.read(olo, ohi), r0, inv, a, bb, start, wv)
            map_sort_rows(new_indptr[a:bb + 1] - lo, nbr, inv, wv, w_file is not None)
            iw.append(nbr)
            if ww:
                ww.append(wv)
            bar.advance(1)
    b.add(iw.finish())
    if ww:
        b.add(ww.finish())


def _permute_ragged(src: ArrayFile, old_off: np.ndarray, new_off: np.ndarray, inv: np.ndarray,
                    writer, b: StoreBuilder, cap_bytes: int) -> None:
    """Variable-length rows (string id bytes) in new order."""
    cap = max(1, cap_bytes // 2)
    for a, bb in row_ranges(new_off, cap):
        lo = int(new_off[a])
        out = np.empty(int(new_off[bb]) - lo, dtype=src.dtype)
        start = new_off[a:bb] - lo
        for r0, r1 in row_ranges(old_off, cap):
            olo, ohi = int(old_off[r0]), int(old_off[r1])
            scatter_rows(old_off[r0:r1 + 1] - olo, src.read(olo, ohi), r0, inv, a, bb, start, out)
        writer.append(out)
    b.add(writer.finish())


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
        bucket = ids // rows_per_bucket
        order = np.argsort(bucket, kind="stable")
        bounds = np.searchsorted(bucket[order], np.arange(n_buckets + 1))
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
