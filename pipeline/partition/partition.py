"""`gstore partition`: k-way partition of a store's nodes, recorded in the store (and optional reorder).

    result = partition_store("store/", 128, method="auto", memory_budget="2GiB")

`metis` runs pymetis in memory on the symmetrised graph when its estimate fits the budget;
`multilevel` coarsens out of core first (multilevel.py); `auto` picks by the estimate. The partition
goes to `partition/k<K>/` as new arrays through the store update transaction (gstore/store_update.py),
the manifest rewritten atomically last: a crash at any point leaves the previous manifest, which only
names complete arrays. See docs/partition.md.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from gstore.errors import BudgetError, OptionError, StoreExistsError
from gstore.memory import DEFAULT_MEMORY_BUDGET, parse_bytes, peak_rss_bytes, reset_peak_rss
from gstore.partition_info import DEFAULT_KEY
from gstore.progress import NULL_PROGRESS, Progress
from gstore.shard_array import ArrayRecord
from gstore.store_update import StoreLock, StoreUpdate, clean_stale_dirs, store_lock
from gstore.pipeline.partition.metis import metis_bytes_estimate, run_metis
from gstore.pipeline.partition.multilevel import multilevel_partition
from gstore.pipeline.partition.refine import edge_cut, max_part_weight, rebalance
from gstore.pipeline.partition.symmetrize import load_in_memory, store_csr, symmetric_graph
from gstore.pipeline.sampling.cluster_kernels import cluster_index, inverse_permutation

log = logging.getLogger(__name__)

METHODS = ("auto", "metis", "multilevel")
BALANCE_ON = ("nodes", "edges")
def chunk_entries_for(budget: int) -> int:
    """Edge entries per streamed chunk: a few buffers of ~12 bytes per entry stay within the budget."""
    return max(1 << 12, budget // 64)


@dataclass
class PartitionResult:
    """What `partition_store` did; `levels` lists (nodes, entries) from the input to METIS's graph."""

    num_parts: int
    method: str
    edge_cut: float
    balance: float
    seconds: float
    peak_rss: int
    metis_estimate: int
    levels: list[tuple[int, int]] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    reordered: bool = False
    reorder_seconds: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


def compute_partition(store, num_parts: int, *, method: str = "auto", seed: int = 0,
                      imbalance: float = 0.05, memory_budget: str | int = DEFAULT_MEMORY_BUDGET,
                      balance_on: str = "nodes", scratch: Path,
                      progress: Progress = NULL_PROGRESS) -> tuple[np.ndarray, PartitionResult]:
    """Partition an opened store without writing anything to it; returns (int32 (N,) parts, result)."""
    t0 = time.perf_counter()
    _validate(store, num_parts, method, imbalance, balance_on)
    budget = parse_bytes(memory_budget)
    chunk = chunk_entries_for(budget)
    sym = symmetric_graph(store, scratch, chunk, progress)
    if balance_on == "edges":
        sym.vweights = np.diff(store.indptr).astype(np.int64) + 1
    estimate = metis_bytes_estimate(sym.num_nodes, sym.num_entries)
    chosen = method
    if method == "auto":
        chosen = "metis" if estimate <= budget else "multilevel"
    elif method == "metis" and estimate > budget:
        raise BudgetError(f"pymetis would need about {estimate / 2**30:.2f} GiB, over the "
                          f"{budget / 2**30:.2f} GiB --memory-budget",
                          hint="use --method multilevel (or auto), or raise --memory-budget")
    vw = sym.node_weights()
    lmax = max_part_weight(int(vw.sum()), num_parts, imbalance, int(vw.max(initial=1)))
    levels = [(sym.num_nodes, sym.num_entries)]
    if chosen == "metis":
        with progress.phase("metis", total=None):
            mem = load_in_memory(sym, chunk)
            parts = run_metis(mem, num_parts, imbalance, seed)
            del mem
        rebalance(sym, parts, num_parts, lmax, chunk)
    else:
        parts, stats = multilevel_partition(sym, num_parts, imbalance=imbalance, seed=seed,
                                            metis_budget=budget, scratch=scratch, chunk_entries=chunk,
                                            progress=progress)
        levels = stats.levels
    with progress.phase("edge cut", total=None):
        cut = edge_cut(store_csr(store), parts, chunk)
    pweight = np.bincount(parts, weights=vw, minlength=num_parts)
    balance = float(pweight.max() / (vw.sum() / num_parts)) if len(parts) else 1.0
    params = {"seed": int(seed), "imbalance": float(imbalance), "memory_budget": int(budget),
              "balance_on": balance_on, "requested_method": method}
    result = PartitionResult(num_parts=num_parts, method=chosen, edge_cut=cut.fraction, balance=balance,
                             seconds=time.perf_counter() - t0, peak_rss=peak_rss_bytes(),
                             metis_estimate=estimate, levels=levels, params=params)
    return parts, result


def partition_store(path: str | Path, num_parts: int, *, method: str = "auto", seed: int = 0,
                    imbalance: float = 0.05, memory_budget: str | int = DEFAULT_MEMORY_BUDGET,
                    balance_on: str = "nodes", reorder: bool = False, force: bool = False,
                    progress: Progress = NULL_PROGRESS) -> PartitionResult:
    """Partition the store at `path` into `num_parts` parts and record it (see module docstring).

    An existing partition with the same K needs `force`; partitions with other K are kept.
    With `reorder`, the store is then rewritten so each part is a contiguous node-id range.
    """
    import gstore

    path = Path(path)
    reset_peak_rss()
    store = gstore.open(path)
    key = str(int(num_parts))
    if key in store.manifest.partitions and not force:
        if reorder:
            return _reorder_existing(path, store.manifest.partitions[key], memory_budget, progress)
        raise StoreExistsError(f"store already has a {key}-way partition", path=path,
                               hint="pass --force to replace it (or --reorder to lay it out)")
    # held until the partition is recorded: a second `gstore partition` of this store meanwhile is
    # refused ("another gstore process (pid N) ...") instead of racing on the manifest; the lock
    # dir doubles as the partitioner's scratch space
    with store_lock(path, "partition scratch") as lock:
        parts, result = compute_partition(store, num_parts, method=method, seed=seed,
                                          imbalance=imbalance, memory_budget=memory_budget,
                                          balance_on=balance_on, scratch=lock.dir, progress=progress)
        del store
        record_partition(path, key, parts, result, lock=lock)
    if reorder:
        from gstore.pipeline.partition.reorder import reorder_store

        t1 = time.perf_counter()
        del parts
        reorder_store(path, key, memory_budget=memory_budget, progress=progress)
        result.reordered = True
        result.reorder_seconds = time.perf_counter() - t1
        result.peak_rss = peak_rss_bytes()
    log.info("partition k=%s: %s", key, asdict(result))
    return result


def _reorder_existing(path: Path, meta: dict, memory_budget, progress: Progress) -> PartitionResult:
    """--reorder by an already recorded partition (no new partitioning)."""
    from gstore.pipeline.partition.reorder import reorder_store

    key = str(meta["num_parts"])
    result = PartitionResult(num_parts=int(meta["num_parts"]), method=meta["method"],
                             edge_cut=float(meta["edge_cut"]), balance=float(meta["balance"]),
                             seconds=0.0, peak_rss=0, metis_estimate=int(meta.get("metis_estimate", 0)),
                             levels=[tuple(lv) for lv in meta.get("levels", [])],
                             params=dict(meta.get("params", {})), reordered=True)
    t0 = time.perf_counter()
    if not meta.get("contiguous"):
        reorder_store(path, key, memory_budget=memory_budget, progress=progress)
    result.reorder_seconds = time.perf_counter() - t0
    result.peak_rss = peak_rss_bytes()
    return result


def partition_arrays(parts: np.ndarray, num_parts: int) -> tuple[np.ndarray, np.ndarray]:
    """(partptr int64 (K+1,), perm int64 (N,)): nodes grouped by part, ascending within a part.
    A counting sort: O(N + K) time, no sort scratch beyond perm itself."""
    return cluster_index(np.asarray(parts), np.int64(num_parts))


def inverse_perm(perm: np.ndarray, dtype=None) -> np.ndarray:
    """Position of every node in `perm` (int (N,), a permutation of 0..N-1). dtype None: int32
    below 2^31 nodes, int64 above (the store's rule for node ids, as in `indices`)."""
    if dtype is None:
        dtype = np.int32 if len(perm) < 2**31 else np.int64
    pos = np.empty(len(perm), dtype=dtype)
    inverse_permutation(perm, pos)
    return pos


def record_partition(path: Path, key: str, parts: np.ndarray, result: PartitionResult, *,
                     lock: StoreLock | None = None) -> None:
    """Record the partition as group `partition/k<key>` through the store update transaction
    (gstore/store_update.py): arrays in a fresh marked directory, the manifest rewritten atomically
    last, the replaced partition's directory removed after. `lock`: the store's writer lock when
    the caller already holds it (partition_store computes under it)."""
    with StoreUpdate(path, f"partition/k{key}", purpose=f"partition k={key}", lock=lock) as up:
        partptr, perm = partition_arrays(parts, result.num_parts)
        up.write_array("parts", parts.astype(np.int32, copy=False))
        up.write_array("partptr", partptr)
        up.write_array("perm", perm)
        up.write_array("pos", inverse_perm(perm))
        del perm
        meta = {"num_parts": result.num_parts, "method": result.method, "params": result.params,
                "edge_cut": result.edge_cut, "balance": result.balance, "seconds": result.seconds,
                "peak_rss": result.peak_rss, "metis_estimate": result.metis_estimate,
                "levels": [list(lv) for lv in result.levels], "contiguous": False, "reordered": False,
                "arrays": {role: rec.name for role, rec in up.records.items()},
                "created": time.time()}
        up.commit(lambda manifest, records: set_partition(manifest, key, meta, list(records.values())))


def set_partition(manifest, key: str, meta: dict, recs: list[ArrayRecord]) -> None:
    """Point the manifest at a partition's records (dropping those of the one it replaces)."""
    old = manifest.partitions.get(key)
    if old:
        for arr_name in old.get("arrays", {}).values():
            manifest.arrays.pop(arr_name, None)
    for rec in recs:
        manifest.arrays[rec.name] = rec
    manifest.partitions[key] = meta
    manifest.partitions[DEFAULT_KEY] = {"key": key}


def clean_stale_partition_dirs(path: Path, manifest) -> None:
    """Reclaim stale partition directories (the store update's rule, for `partition/` only)."""
    clean_stale_dirs(path, manifest, ("partition",))


def _validate(store, num_parts: int, method: str, imbalance: float, balance_on: str) -> None:
    if method not in METHODS:
        raise OptionError(f"unknown --method {method!r}", hint=f"use one of {', '.join(METHODS)}")
    if balance_on not in BALANCE_ON:
        raise OptionError(f"unknown --balance-on {balance_on!r}", hint="use nodes or edges")
    if num_parts < 1:
        raise OptionError(f"--parts must be >= 1, got {num_parts}")
    if num_parts > max(1, store.num_nodes):
        raise OptionError(f"cannot split {store.num_nodes} nodes into {num_parts} parts",
                          hint="use fewer --parts")
    if not 0 <= imbalance <= 10:
        raise OptionError(f"--imbalance must be in [0, 10], got {imbalance}", hint="e.g. 0.05")
