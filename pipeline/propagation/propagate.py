"""Out-of-core feature propagation: A_hat^k X for k = 1..K into the store, hop by hop.

`propagate(store, PropagationParams(hops=K))` computes the hops the store lacks, block of rows by
block of rows (pipeline/propagation/propagate_kernels.py has the operator), reading hop k-1 from
disk and writing hop k through the store-update transaction (gstore/store_update.py):

- **Layout.** Hop k is the array `derived/<key>.hop<k>/x`, (N, F) float32 or float16; the derived
  group `<key>` (PropagationParams.key(), e.g. `propagate-sym-loops-float32`) records hops 1..m as
  roles `hop_1`..`hop_m`, kind "propagation", node-keyed (so `gstore partition --reorder` drops it),
  with params {norm, self_loops, dtype, hops: m, weighted, source}. `source` is the checksums of
  the arrays the hops were computed from (indptr, indices, weights, features): hops of an older
  graph or features are never served.
- **Commit per hop.** Each hop is its own transaction, committed before the next starts; hop k-1
  is then an ordinary committed store array, read from its file. A kill between hops leaves a
  valid store with hops 1..k-1 recorded; a kill inside hop k leaves marked scratch that the next
  update reclaims. Rerunning finishes the missing hops. The store's writer lock is held across
  all hops, so a second propagate (or partition) is refused in one line.
- **Reuse.** Hops already stored with the same (norm, self_loops, dtype) and sources are kept:
  asking K=3 after K=2 computes hop 3 only; K=2 after K=3 computes nothing. `force` recomputes
  hops 1..K (the first commit replaces the whole group).
- **Memory.** Hop k-1 is read with pread into panel buffers (pipeline/propagation/plan.py), never
  memory-mapped, so its random gathers hit anonymous memory of a bounded size instead of mapping
  page after page of a file larger than RAM. The CSR is memory-mapped and its pages are released
  (madvise) after every block. peak_anon_bytes is what the process owned; peak_rss_bytes also
  counts the mapped CSR pages of a block.
- **Overlap.** With more than one panel a reader thread fills the next panel buffer while the
  kernel (nogil) consumes the current one.
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np

from gstore.errors import OptionError, StoreError
from gstore.faults import fault_point
from gstore.manifest import DerivedRecord, StoreManifest
from gstore.memory import (DEFAULT_MEMORY_BUDGET, anon_rss_bytes, current_rss_bytes, format_bytes,
                           parse_bytes, peak_rss_bytes, release_pages)
from gstore.pipeline.inference.chunks import ChunkPlan, plan_chunks
from gstore.pipeline.propagation import propagate_kernels as K
from gstore.pipeline.propagation.panels import PanelSource, panel_stream
from gstore.pipeline.propagation.params import KIND, HopStats, PropagationParams, PropagationResult
from gstore.pipeline.propagation.plan import HopPlan, plan_hop
from gstore.progress import NULL_PROGRESS, Progress
from gstore.shard_array import ArrayRecord, default_chunk_rows
from gstore.store import GraphStore
from gstore.store_update import DERIVED_ROOT, StoreLock, StoreUpdate, store_lock

log = logging.getLogger(__name__)

ROLE = "x"
FAULT_PREFIX = "propagate"
# rows per call of the scale kernel: bounds the mapped indptr/weights pages between releases
_SCALE_ROWS = 1 << 22
# edge x feature steps below which a block runs the serial kernel (the pool's wake-up costs more)
_PARALLEL_WORK = 1 << 18


@dataclass
class PropagatedFeatures:
    """The stored hops of one PropagationParams. hops: [X (the store's features), A_hat X, ...,
    A_hat^K X], each (N, F) read-only memory map (float32 or float16); arrays: the store array
    names of hops 1..K."""

    params: PropagationParams
    hops: list[np.ndarray]
    arrays: list[str] = field(default_factory=list)


def hop_role(k: int) -> str:
    return f"hop_{k}"


def source_fingerprint(manifest: StoreManifest) -> dict:
    """Checksums of the arrays a propagation reads: a changed graph or features invalidates it."""
    def checksum(name: str) -> str | None:
        rec = manifest.arrays.get(name)
        return None if rec is None else f"{rec.checksum}:{list(rec.shape)}:{rec.dtype}"
    return {name: checksum(name) for name in ("indptr", "indices", "weights", "features")}


def stored_hops(manifest: StoreManifest, params: PropagationParams) -> int:
    """How many hops 1..m of `params`' group are stored and valid for the store as it is now."""
    rec = manifest.derived.get(params.key())
    if rec is None or rec.kind != KIND:
        return 0
    p = rec.params
    if (p.get("norm"), p.get("self_loops"), p.get("dtype")) != (params.norm, params.self_loops, params.dtype):
        return 0
    if p.get("source") != source_fingerprint(manifest):
        log.info("the stored %s hops were computed from other graph or feature arrays: ignored",
                 params.key())
        return 0
    feats = manifest.arrays.get("features")
    m = 0
    while True:
        arr = manifest.arrays.get(rec.arrays.get(hop_role(m + 1), ""))
        if arr is None or feats is None or arr.shape != feats.shape or arr.dtype != params.dtype:
            return m
        m += 1


def open_propagated(store: GraphStore | str | Path, params: PropagationParams) -> PropagatedFeatures | None:
    """Hops 0..params.hops of `store` as memory maps, or None unless every hop 1..params.hops is
    stored with these exact (norm, self_loops, dtype) and computed from the store's current
    arrays (a group with more hops serves a smaller K)."""
    if not isinstance(store, GraphStore):
        store = GraphStore(store)
    if not isinstance(params, PropagationParams):
        raise OptionError(f"params must be PropagationParams, got {type(params).__name__}")
    if stored_hops(store.manifest, params) < params.hops:
        return None
    rec = store.manifest.derived[params.key()]
    names = [rec.arrays[hop_role(k)] for k in range(1, params.hops + 1)]
    return PropagatedFeatures(params=params, hops=[store.features] + [store.array(n) for n in names],
                              arrays=names)


def propagate(store_path: str | Path, params: PropagationParams, *,
              memory_budget: str | int = DEFAULT_MEMORY_BUDGET, progress: Progress = NULL_PROGRESS,
              threads: int | None = None, force: bool = False) -> PropagationResult:
    """Compute the missing hops 1..params.hops of A_hat^k X into the store at `store_path`.

    memory_budget: bytes (or '512MiB') for the hop's buffers (plan.py); threads: numba threads of
    the kernels (default: numba's); force: recompute hops 1..K even when stored.
    Raises OptionError / StoreError / BudgetError (one line each) on bad input, before writing.
    """
    t0 = time.perf_counter()
    start_rss = current_rss_bytes()
    if not isinstance(params, PropagationParams):
        raise OptionError(f"params must be PropagationParams, got {type(params).__name__}")
    budget = parse_bytes(memory_budget)
    threads = _check_threads(threads)
    path = Path(store_path)
    with store_lock(path, f"propagate {params.key()}") as lock:
        store = GraphStore(path)          # opened under the lock: nobody changes it meanwhile
        feats = _check_features(store)
        csr = store.csr()
        other = store.manifest.derived.get(params.key())
        if other is not None and other.kind != KIND:
            raise OptionError(f"the store's derived group {params.key()!r} holds {other.kind!r} arrays, "
                              "not propagated features", path=path,
                              hint="remove or rename that group first")
        have = 0 if force else stored_hops(store.manifest, params)
        todo = list(range(have + 1, params.hops + 1))
        if todo:
            _check_disk(path, store, feats, params, len(todo))
            for k in todo:                # fail on the budget before anything is written
                _plan(budget, store, k, params, feats)
        run = _Run(store, csr, params, budget, threads, progress, lock)
        run.compute(todo)
        rec = run.manifest.derived.get(params.key())
    arrays = [rec.arrays[hop_role(k)] for k in range(1, params.hops + 1)]
    result = PropagationResult(
        store=str(path), key=params.key(), params=params, hops_computed=todo,
        hops_reused=list(range(1, have + 1)) if have < params.hops else list(range(1, params.hops + 1)),
        arrays=arrays, seconds=time.perf_counter() - t0, seconds_per_hop=[s.seconds for s in run.stats],
        bytes_written=sum(s.bytes_written for s in run.stats), memory_budget=budget,
        peak_rss_bytes=peak_rss_bytes(), peak_anon_bytes=run.peak_anon, start_rss_bytes=start_rss,
        num_nodes=store.num_nodes, num_edges=store.num_edges, feature_dim=int(feats.shape[1]),
        plan=run.plans[-1].to_json() if run.plans else {}, hop_stats=run.stats)
    log.info("propagate %s: computed hops %s, reused %s in %.1f s (peak RSS %s, anon %s)", result.key,
             result.hops_computed, result.hops_reused, result.seconds, format_bytes(result.peak_rss_bytes),
             format_bytes(result.peak_anon_bytes))
    return result


# ---- checks -----------------------------------------------------------------------------------
def _check_threads(threads) -> int | None:
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= numba.config.NUMBA_NUM_THREADS:
        raise OptionError(f"threads must be an integer in [1, {numba.config.NUMBA_NUM_THREADS}], got {threads!r}")
    return threads


def _check_features(store: GraphStore) -> np.ndarray:
    if not store.has_array("features"):
        raise OptionError("store has no features to propagate", path=store.path,
                          hint="ingest the store again with --features")
    store.check_structure(("features",))
    feats = store.features
    if feats.ndim != 2 or feats.dtype.name not in ("float32", "float16") or feats.shape[1] < 1:
        raise StoreError(f"features are {feats.dtype} {tuple(feats.shape)}, not float32/float16 (N, F >= 1)",
                         path=store.path, hint="rebuild the store with float features")
    return feats


def _check_disk(path: Path, store: GraphStore, feats: np.ndarray, params: PropagationParams, hops: int) -> None:
    need = hops * store.num_nodes * feats.shape[1] * np.dtype(params.dtype).itemsize
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return
    if need > free:
        raise OptionError(f"{hops} hop(s) of {store.num_nodes} x {feats.shape[1]} {params.dtype} need "
                          f"{format_bytes(need)} on disk, {path} has {format_bytes(free)} free",
                          hint="free space, lower --hops or use --dtype float16")


def _plan(budget: int, store: GraphStore, k: int, params: PropagationParams, feats: np.ndarray) -> HopPlan:
    in_itemsize = feats.dtype.itemsize if k == 1 else np.dtype(params.dtype).itemsize
    return plan_hop(budget, num_nodes=store.num_nodes, width=int(feats.shape[1]), in_itemsize=in_itemsize,
                    out_itemsize=np.dtype(params.dtype).itemsize, index_itemsize=store.indices.dtype.itemsize,
                    weighted=store.weights is not None)


# ---- the run ----------------------------------------------------------------------------------
class _Run:
    """The hops of one propagate call under one held writer lock."""

    def __init__(self, store: GraphStore, csr, params: PropagationParams, budget: int,
                 threads: int | None, progress: Progress, lock: StoreLock) -> None:
        self.store, self.params, self.budget = store, params, budget
        self.threads, self.progress, self.lock = threads, progress, lock
        self.manifest = store.manifest
        self.indptr, self.indices = csr.indptr, csr.indices
        self.weights = store.weights
        self.use_weights = self.weights is not None
        self._w = self.weights if self.use_weights else np.ones(1, dtype=np.float32)
        self._maps = [m for m in (store.indptr, store.indices, self.weights) if m is not None]
        self.num_nodes, self.width = store.num_nodes, int(store.features.shape[1])
        self.self_weight = 1.0 if params.self_loops else 0.0
        self.peak_anon = anon_rss_bytes()
        self.stats: list[HopStats] = []
        self.plans: list[HopPlan] = []
        self.scales: np.ndarray | None = None

    def compute(self, hops: list[int]) -> None:
        if not hops:
            return
        prev = numba.get_num_threads()
        if self.threads is not None:
            numba.set_num_threads(self.threads)
        try:
            self.scales = self._scales()
            for k in hops:
                self._hop(k)
                fault_point(f"{FAULT_PREFIX}:after-hop")
        finally:
            numba.set_num_threads(prev)

    def _release(self) -> None:
        for m in self._maps:
            release_pages(m)

    def _scales(self) -> np.ndarray:
        """float32 (N,): d^-1/2 (sym) or d^-1 (rw) of every node, computed once."""
        n = self.num_nodes
        out = np.empty(n, dtype=np.float32)
        mode = K.SYM if self.params.norm == "sym" else K.RW
        bad = 0
        for start in range(0, n, _SCALE_ROWS):
            stop = min(n, start + _SCALE_ROWS)
            bad += K.node_scales(self.indptr, self._w, self.use_weights, self.self_weight, mode, start,
                                 out[start:stop])
            self._release()
        if bad:
            raise StoreError(f"{bad} node(s) have a negative weighted degree: D^-1/2 does not exist",
                             path=self.store.path, hint="use --norm rw, or store non-negative edge weights")
        return out

    def _source(self, k: int) -> PanelSource:
        """Where hop k-1 lives: the store's features for k = 1, else the committed hop k-1."""
        name = "features" if k == 1 else self.manifest.derived[self.params.key()].arrays[hop_role(k - 1)]
        rec: ArrayRecord = self.manifest.arrays[name]
        return PanelSource.of(self.store.path, rec)

    def _hop(self, k: int) -> None:
        t0 = time.perf_counter()
        plan = _plan(self.budget, self.store, k, self.params, self.store.features)
        self.plans.append(plan)
        chunks = plan_chunks(self.indptr, plan.max_edges, plan.max_rows)
        key = self.params.key()
        n, f = self.num_nodes, self.width
        stats = HopStats(hop=k, seconds=0.0, blocks=len(chunks), panels=plan.panels,
                         hub_slices=chunks.num_hub_slices, edges=0, read_bytes=0, bytes_written=0,
                         wait_s=0.0, compute_s=0.0, write_s=0.0)
        src_scale = self.scales if self.params.norm == "sym" else None
        with StoreUpdate(self.store.path, f"{DERIVED_ROOT}/{key}.hop{k}", purpose=f"propagate {key} hop {k}",
                         lock=self.lock, fault_prefix=FAULT_PREFIX) as up:
            rows = max(1, min(n, default_chunk_rows((n, f), self.params.dtype)))
            writer = up.array_writer(ROLE, (n, f), self.params.dtype, chunk_rows=rows)
            with self.progress.phase(f"propagate hop {k}/{self.params.hops}", total=n, unit="node") as bar:
                self._blocks(chunks, plan, self._source(k), src_scale, writer, stats, bar)
            rec = up.add(writer.finish())
            stats.bytes_written = rec.data_bytes
            self.manifest = up.commit(self._edit(k))
        stats.seconds = time.perf_counter() - t0
        self.stats.append(stats)
        log.info("hop %d: %d blocks x %d panels, %d edges in %.2f s (waited %.2f s on reads)", k,
                 stats.blocks, stats.panels, stats.edges, stats.seconds, stats.wait_s)

    def _blocks(self, chunks: ChunkPlan, plan: HopPlan, source: PanelSource, src_scale, writer, stats, bar) -> None:
        """Every block of the chunk plan: sweep the panels, finish the rows, write them."""
        if self.num_nodes == 0:
            return                        # nothing to read: the array has no data file
        f = self.width
        acc = np.empty((plan.max_rows, f), dtype=np.float32)
        cursor = np.empty(plan.max_rows, dtype=np.int64)
        with panel_stream(source, plan, src_scale, len(chunks)) as panels:
            for i in range(len(chunks)):
                start, stop = int(chunks.starts[i]), int(chunks.stops[i])
                lo, hi = int(chunks.edge_lo[i]), int(chunks.edge_hi[i])
                rows = stop - start
                first = not chunks.hub[i] or i == 0 or chunks.starts[i - 1] != start
                last = chunks.last_slice(i)
                if first:
                    acc[:rows] = 0.0
                K.start_cursors(self.indptr, start, stop, lo, cursor)
                kernel = K.accumulate_panel if (hi - lo) * f >= _PARALLEL_WORK else K.accumulate_panel_serial
                bad = 0
                for _ in range(plan.panels):
                    t = time.perf_counter()
                    panel = panels.next()
                    stats.wait_s += time.perf_counter() - t
                    t = time.perf_counter()
                    bad += kernel(self.indptr, self.indices, self._w, self.use_weights, start, stop,
                                              lo, hi, panel.rows, panel.start, self.self_weight if last else 0.0,
                                              cursor, acc)
                    stats.compute_s += time.perf_counter() - t
                    panels.done(panel)
                if bad:
                    raise StoreError(f"rows of nodes [{start}, {stop}) list their in-neighbors out of "
                                     "ascending order", path=self.store.path,
                                     hint="the store is damaged; run `gstore verify`, then rebuild it")
                stats.edges += hi - lo
                if last:
                    t = time.perf_counter()
                    out = acc[:rows]
                    np.multiply(out, self.scales[start:stop, None], out=out)
                    writer.write_rows(start, out)
                    stats.write_s += time.perf_counter() - t
                    bar.advance(rows)
                self._release()
                self.peak_anon = max(self.peak_anon, anon_rss_bytes())
            stats.read_bytes = panels.read_bytes

    def _edit(self, k: int):
        """The manifest edit of hop k: the group keeps hops 1..k-1 (when k > 1) and gains hop k;
        any other array it had (stale hops, hops past k of a forced rerun) leaves the manifest."""
        key, params, store = self.params.key(), self.params, self.store

        def edit(manifest: StoreManifest, records: dict[str, ArrayRecord]) -> None:
            new = records[ROLE]
            old = manifest.derived.get(key)
            arrays = {hop_role(j): old.arrays[hop_role(j)] for j in range(1, k)} if old is not None else {}
            if old is not None:
                for role, name in old.arrays.items():
                    if role not in arrays:
                        manifest.arrays.pop(name, None)
            manifest.arrays[new.name] = new
            arrays[hop_role(k)] = new.name
            manifest.derived[key] = DerivedRecord(
                kind=KIND, arrays=arrays, node_keyed=True, created=time.time(),
                params={"norm": params.norm, "self_loops": params.self_loops, "dtype": params.dtype,
                        "hops": k, "weighted": store.weights is not None,
                        "source": source_fingerprint(manifest)})
        return edit
