"""NeighborLoader and ClusterLoader: seeds -> sample -> gather -> pin -> to device, in threads.

Wiring of one run (one pass over the remaining batches of an epoch):

    WorkFeed --(W sample threads)--> q_sampled --(W gather threads)--> q_gathered
        --(1 deliver thread: reorder, tensors, CUDA copy)--> q_out --> consumer (the for loop)

Queues hold at most `prefetch` batches and at most `prefetch + 2 * num_workers` batches are in flight,
which bounds memory. Batch order and content do not depend on `num_workers`: batches are emitted in
sequence order and each batch's sampler seed comes from (seed, epoch, batch index) (seeds.batch_seed).
Threads, not processes: the numba kernels release the GIL, and forking after numba ran would abort.
Shutdown: leaving the loop (`break`, an exception, garbage collection of the iterator) sets the stop
Event, which every blocking call checks within queues.POLL_S, and joins every thread.
"""
from __future__ import annotations

import logging
import queue
import threading

import numpy as np
import torch

from gstore.cold_pages import FAULT_THREADS, ColdPages, ColdStart
from gstore.errors import LoaderError, OptionError
from gstore.pipeline.features.gather import FeatureSource
from gstore.pipeline.loader.batch import Batch
from gstore.pipeline.loader.gather_stage import Gatherer, gather_worker
from gstore.pipeline.loader.pin import HostBufferPool
from gstore.pipeline.loader.staging import PINNED_BYTES_DEFAULT, PinnedBudget
from gstore.pipeline.loader.queues import (InFlightLimit, PipelineControl, StageFailure, StageQueue,
                                           StageThread)
from gstore.pipeline.loader.sample_stage import WorkFeed, sample_worker
from gstore.pipeline.loader.seeds import ClusterPlan, EpochItems, SeedPlan, check_int, epoch_items
from gstore.pipeline.loader.state import (LoaderConfig, LoaderState, array_fingerprint, sampler_name,
                                          store_fingerprint)
from gstore.pipeline.loader.to_device import END, DeviceCopier, deliver_worker, resolve_device
from gstore.set_kernels import first_duplicate

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 30.0
# two threads per worker; beyond a few per core they only contend (and 10^5 threads exhaust the OS)
MAX_WORKERS = 256


class PipelineRun:
    """The threads and queues producing one sequence of batches (`items`, in order)."""

    def __init__(self, items: EpochItems, sampler, gatherer: Gatherer, copier: DeviceCopier,
                 prefetch: int, num_workers: int, first_alone: bool = False) -> None:
        self.control = c = PipelineControl()
        self.total = len(items)
        self._items = items
        # first_alone: the first batch of a cold loader is made alone (its page faults would share
        # the disk with the next batches'), the rest once it is out
        self.limit = InFlightLimit(prefetch + 2 * num_workers, c, start=1 if first_alone else None)
        feed = WorkFeed(items, self.limit)
        self.q_sampled = StageQueue(prefetch, c)
        self.q_gathered = StageQueue(prefetch, c)
        self.q_out = StageQueue(prefetch, c)
        self.threads: list[StageThread] = []
        for w in range(num_workers):
            self.threads.append(StageThread(
                f"sample-{w}", lambda: sample_worker(feed, sampler, self.q_sampled), c))
            self.threads.append(StageThread(
                f"gather-{w}", lambda: gather_worker(gatherer, self.q_sampled, self.q_gathered, c), c))
        self.threads.append(StageThread(
            "deliver", lambda: deliver_worker(copier, self.q_gathered, self.q_out, self.total), c))
        self._done = False

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def next(self) -> Batch | None:
        """The next batch in order, None at the end; raises LoaderError for a failed stage."""
        if self._done:
            return None
        while True:
            failure = self.control.failure
            if failure is not None:
                raise LoaderError(f"loader stage {failure.stage!r} failed: {failure.exc!r}") \
                    from failure.exc
            try:
                got = self.q_out.poll()
                break
            except queue.Empty:
                continue
        if got is END:
            self._done = True
            return None
        self.limit.release()
        self.limit.widen()
        if isinstance(got, StageFailure):
            epoch, index = self._items.where(got.seq)
            raise LoaderError(f"loader stage {got.stage!r} failed on batch {index} of epoch {epoch}: "
                              f"{got.exc!r}") from got.exc
        got.wait()
        return got

    def close(self) -> None:
        """Stop every stage and join its thread (idempotent). Called from one of the run's own
        threads (the garbage collector can finalise an abandoned loop in whichever thread it runs),
        it only sets the stop flag: joining there could wait on a lock that thread holds, and every
        thread sees the flag within queues.POLL_S and exits by itself."""
        self.control.stop.set()
        if threading.current_thread() in self.threads:
            return
        for t in self.threads:
            t.join(JOIN_TIMEOUT_S)
            if t.is_alive():
                log.warning("loader thread %s did not stop within %.0f s", t.name, JOIN_TIMEOUT_S)
        for q in (self.q_sampled, self.q_gathered, self.q_out):
            q.drain()


def _resolve_device(device, pin_memory: bool | None) -> tuple[torch.device, bool]:
    dev = resolve_device(device)
    pin = dev.type == "cuda" if pin_memory is None else bool(pin_memory)
    if pin and not torch.cuda.is_available():
        raise OptionError("pin_memory=True needs a CUDA build of torch and a GPU (page-locked memory "
                          "is a CUDA driver allocation)", hint="leave pin_memory=None")
    return dev, pin


class StagedLoader:
    """Shared machinery of NeighborLoader and ClusterLoader (see the module docstring).

    Iterating yields the remaining batches of the current epoch, then advances the epoch; a loop left
    early resumes where it stopped on the next iteration (use `set_epoch` to restart an epoch).
    """

    def __init__(self, store, sampler, plan, *, seed: int, prefetch: int, device, pin_memory,
                 cache_bytes: int, num_workers: int, features: bool, labels: bool,
                 mask_ids: np.ndarray | None, sort_ids: bool | None = None,
                 pinned_bytes: int = PINNED_BYTES_DEFAULT, seeds_first: bool = False,
                 cold_start: ColdStart | None = None) -> None:
        check_int("pinned_bytes", pinned_bytes, 1)
        check_int("prefetch", prefetch, 1)
        check_int("num_workers", num_workers, 1, MAX_WORKERS)
        check_int("seed", seed, 0)
        self.store = store
        self.sampler = sampler
        self.plan = plan
        self.seed = int(seed)
        self.prefetch = int(prefetch)
        self.num_workers = int(num_workers)
        self.device, self.pin_memory = _resolve_device(device, pin_memory)
        self.cold_start = cold_start
        self._first_alone = cold_start is not None   # the loader's first batch is made alone
        self.source = FeatureSource(store, cache_bytes=cache_bytes if features else 0, sort_ids=sort_ids,
                                    cold_pages=ColdPages(cold_start) if cold_start else None)
        # pinned: one staging buffer per batch from torch's caching host allocator, at most
        # pinned_bytes of it (staging.py); pageable: recycled feature buffers (pin.py)
        self.pool = self.budget = None
        if self.pin_memory:
            self.budget = PinnedBudget(pinned_bytes)
        elif features and self.source.features is not None:
            self.pool = HostBufferPool(self.source.dim, self.source.dtype,
                                       max_buffers=self.prefetch + 2 * self.num_workers + 2)
        self.gatherer = Gatherer(self.source, self.pool, labels, mask_ids, features=features,
                                 budget=self.budget, upcast=self.device.type == "cpu",
                                 seeds_first=seeds_first)
        self._epoch = 0
        self._consumed = 0
        self._config: LoaderConfig | None = None

    @property
    def cache(self):
        """The FeatureCache (hit counters), or None."""
        return self.source.cache

    @property
    def epoch(self) -> int:
        return self._epoch

    def __len__(self) -> int:
        return int(self.plan.num_batches)

    def set_epoch(self, epoch: int) -> None:
        """Start epoch `epoch` from its first batch on the next iteration."""
        self._epoch, self._consumed = int(epoch), 0

    def config(self) -> LoaderConfig:
        """The options that decide this loader's batches (computed once: it fingerprints arrays)."""
        if self._config is None:
            self._config = self._make_config()
        return self._config

    def _make_config(self) -> LoaderConfig:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Where the loader stands (JSON-able): epoch, batches of it already handed out, and the
        config that `load_state_dict` checks (LoaderState.to_json)."""
        return LoaderState(self._epoch, self._consumed, self.config()).to_json()

    def load_state_dict(self, state: dict) -> None:
        """Resume: the next iteration yields exactly the batches not yet consumed at `state_dict()`.

        Raises OptionError naming every option (batch size, fanouts, seed nodes, shuffle, seed,
        clusters, store, ...) whose saved value differs from this loader's, with both values."""
        saved = LoaderState.from_json(state)
        diffs = self.config().differences(saved.config)
        if diffs:
            raise OptionError("loader state was saved by a loader with other options: " + "; ".join(diffs),
                              hint="build the loader with the saved options to resume")
        if saved.batches_consumed > len(self):
            raise OptionError(f"loader state has {saved.batches_consumed} batches consumed of an epoch "
                              f"of {len(self)}")
        self._epoch, self._consumed = saved.epoch, saved.batches_consumed

    def __iter__(self):
        if self._consumed >= len(self):
            self._epoch, self._consumed = self._epoch + 1, 0
        items = epoch_items(self.plan, self._epoch, self._consumed, self.seed)
        return self._run(items)

    def close(self) -> None:
        """Stop the loader's background work (fault threads, read-ahead); iterating after it runs
        without them. Garbage collection does the same."""
        if self.cold_start is not None:
            self.cold_start.close()

    def _start_cold(self) -> None:
        """As the first run begins: read the store's per-node arrays, features and CSR indices
        ahead, those that fit in the page cache (gstore/cold_pages.py)."""
        s = self.store       # its own mappings (cached): their file names, no new mapping
        paths = [getattr(a, "filename", None) for a in (s.indptr, s.labels, s.features, s.indices)]
        self.cold_start.start([p for p in paths if p is not None])

    def _run(self, items: EpochItems):
        if self.cold_start is not None and not self.cold_start.started:
            # after the epoch's permutation: beside it, the page-cache fill (reclaim, completions
            # on 2 cores) made the 2.3 s permutation take 5.5 s
            self._start_cold()
        run = PipelineRun(items, self.sampler, self.gatherer, DeviceCopier(self.device, self.budget),
                          self.prefetch, self.num_workers, first_alone=self._first_alone)
        self._first_alone = False
        del items
        if self.budget is not None:
            self.budget.advance(0)  # sequence numbers restart with each run
        run.start()
        try:
            while True:
                batch = run.next()
                if batch is None:
                    break
                self._consumed += 1        # batch.index is its place in the whole epoch (ShardedPlan)
                if self.cold_start is not None:
                    self.cold_start.first_batch_out()
                yield batch
                del batch
            self._epoch, self._consumed = self._epoch + 1, 0
        finally:
            run.close()


def _cold_start(fault_threads: int) -> ColdStart | None:
    """The loader's cold-page machinery (gstore/cold_pages.py); 0 fault threads turn it off."""
    check_int("fault_threads", fault_threads, 0, MAX_WORKERS)
    return ColdStart(fault_threads) if fault_threads else None


def _seed_ids(store, split) -> np.ndarray:
    if isinstance(split, str):
        ids = store.split(split)
        if not len(ids):
            raise OptionError(f"store has no {split!r} split (or it is empty)", path=store.path,
                              hint="pass seed node ids instead, e.g. split=np.arange(store.num_nodes)")
        return np.asarray(ids, dtype=np.int64)
    ids = np.asarray(split)
    if ids.ndim != 1 or (len(ids) and not np.issubdtype(ids.dtype, np.integer)):
        raise OptionError("seed ids must be a 1-D integer array")
    ids = ids.astype(np.int64)
    if len(ids) and (ids.min() < 0 or ids.max() >= store.num_nodes):
        raise OptionError(f"seed ids outside [0, {store.num_nodes})")
    dup = first_duplicate(ids, store.num_nodes)     # a bitmap pass: np.unique of 33M ids took 82 s
    if dup >= 0:
        raise OptionError(f"seed ids contain duplicates (id {int(ids[dup])} at position {dup})",
                          hint="pass np.unique(ids)")
    return ids


class NeighborLoader(StagedLoader):
    """GraphSAGE mini-batches: `batch_size` seeds of `split` (a split name or int64 seed ids) with
    their sampled `fanouts`-hop neighborhoods, features `x`, labels `y` and per-layer `blocks`.

    `sampler`: any object with `.sample(seeds int64, seed int) -> SampledSubgraph` (default:
    NeighborSampler over the store's memmapped CSR). Shuffling: epoch e uses gstore.seeding.rng(seed, e).
    """

    kind = "neighbor"

    def __init__(self, store, fanouts, batch_size: int, split="train", *, shuffle: bool = True,
                 drop_last: bool = False, seed: int = 0, prefetch: int = 4, device="cpu",
                 pin_memory: bool | None = None, cache_bytes: int = 0, num_workers: int = 1,
                 replace: bool = False, sampler=None, features: bool = True, labels: bool = True,
                 sort_ids: bool | None = None, pinned_bytes: int = PINNED_BYTES_DEFAULT,
                 fault_threads: int = FAULT_THREADS) -> None:
        from gstore.pipeline.sampling.neighbor import NeighborSampler, check_fanouts

        self.fanouts = check_fanouts(fanouts)
        self.replace = bool(replace)
        cold = _cold_start(fault_threads)
        if sampler is None:
            sampler = NeighborSampler.from_store(store, self.fanouts, replace=replace, seed=seed,
                                                 cold_start=cold)
        self.batch_size = int(batch_size)
        plan = SeedPlan(_seed_ids(store, split), batch_size, shuffle, drop_last, seed)
        super().__init__(store, sampler, plan, seed=seed, prefetch=prefetch, device=device,
                         pin_memory=pin_memory, cache_bytes=cache_bytes, num_workers=num_workers,
                         features=features, labels=labels, mask_ids=None, sort_ids=sort_ids,
                         pinned_bytes=pinned_bytes, cold_start=cold)

    def _make_config(self) -> LoaderConfig:
        return LoaderConfig(kind=self.kind, store=store_fingerprint(self.store), seed=self.seed,
                            num_batches=len(self), shuffle=bool(self.plan.shuffle),
                            drop_last=bool(self.plan.drop_last), seeds=array_fingerprint(self.plan.ids),
                            sampler=sampler_name(self.sampler), batch_size=self.batch_size,
                            fanouts=tuple(self.fanouts), replace=self.replace)


class ClusterLoader(StagedLoader):
    """Cluster-GCN batches: the subgraph induced by `clusters_per_batch` random clusters per batch.

    parts: int (N,) cluster of every node (default: the store's partition). `split` picks the loss
    nodes (`Batch.mask`); None for no mask. `sampler`: any object with `.sample(cluster_ids, seed)
    -> ClusterSubgraph`, `.num_batches`, `.epoch_batches(epoch)` (default: ClusterSampler).
    seeds_first: relabel each batch so its `split` nodes are its first `num_seeds` nodes; a
    model's last layer then computes only the rows the loss reads (Batch.layer_blocks).
    """

    kind = "cluster"

    def __init__(self, store, parts: np.ndarray | None = None, num_parts: int | None = None,
                 clusters_per_batch: int = 20, split: str | None = "train", *, shuffle: bool = True,
                 drop_last: bool = False, seed: int = 0, prefetch: int = 4, device="cpu",
                 pin_memory: bool | None = None, cache_bytes: int = 0, num_workers: int = 1,
                 normalize: bool = True, self_loops: bool = True, sampler=None,
                 features: bool = True, labels: bool = True, sort_ids: bool | None = None,
                 pinned_bytes: int = PINNED_BYTES_DEFAULT, seeds_first: bool = False,
                 fault_threads: int = FAULT_THREADS) -> None:
        if seeds_first and not split:
            raise OptionError("seeds_first needs a split (the loss nodes to put first)")
        if sampler is None:
            from gstore.pipeline.sampling.cluster import ClusterSampler

            # several workers: one kernel thread each beats competing thread teams (ClusterSampler)
            sampler = ClusterSampler.from_store(store, parts, num_parts, clusters_per_batch,
                                                normalize=normalize, self_loops=self_loops, seed=seed,
                                                kernel_threads=1 if num_workers > 1 else None,
                                                edge_ids=False)  # batches carry no edge ids
        plan = ClusterPlan(sampler, clusters_per_batch, drop_last, shuffle)
        mask_ids = np.asarray(store.split(split), dtype=np.int64) if split else None
        self.clusters_per_batch = int(clusters_per_batch)
        self.normalize, self.self_loops = bool(normalize), bool(self_loops)
        self.seeds_first = bool(seeds_first)
        super().__init__(store, sampler, plan, seed=seed, prefetch=prefetch, device=device,
                         pin_memory=pin_memory, cache_bytes=cache_bytes, num_workers=num_workers,
                         features=features, labels=labels, mask_ids=mask_ids, sort_ids=sort_ids,
                         pinned_bytes=pinned_bytes, seeds_first=seeds_first,
                         cold_start=_cold_start(fault_threads))

    def _make_config(self) -> LoaderConfig:
        s = self.sampler
        index = [a for a in (getattr(s, "partptr", None), getattr(s, "perm", None)) if a is not None]
        clusters = ";".join(array_fingerprint(a) for a in index) or "none"
        num_parts = getattr(s, "num_parts", None)
        return LoaderConfig(kind=self.kind, store=store_fingerprint(self.store), seed=self.seed,
                            num_batches=len(self), shuffle=bool(self.plan.shuffle),
                            drop_last=bool(self.plan.drop_last),
                            seeds=array_fingerprint(self.gatherer.mask_ids), sampler=sampler_name(s),
                            num_parts=None if num_parts is None else int(num_parts),
                            clusters_per_batch=self.clusters_per_batch, clusters=clusters,
                            normalize=bool(getattr(s, "normalize", self.normalize)),
                            self_loops=bool(getattr(s, "self_loops", self.self_loops)),
                            seeds_first=True if self.seeds_first else None)
