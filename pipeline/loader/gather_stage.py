"""The gather stage: features and labels for each sampled batch.

Pageable mode (pin_memory=False): features go into recycled host buffers (pin.HostBufferPool), the
other arrays stay as the sampler made them. Pinned mode: every array of the batch is written into one
pinned `Staging` buffer (staging.py), so all of its host->device copies are asynchronous.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from gstore.pipeline.features.gather import FeatureSource, gather_labels
from gstore.pipeline.features.gather_kernels import in_degrees as degree_kernel
from gstore.pipeline.loader.pin import HostBufferPool
from gstore.pipeline.loader.queues import PipelineControl, StageFailure, StageQueue, Stopped
from gstore.pipeline.loader.sample_stage import DONE, SampledItem
from gstore.pipeline.loader.seeds import WorkItem
from gstore.pipeline.loader.staging import PinnedBudget, Staging


@dataclass
class GatheredItem:
    """A sampled batch with its rows gathered.

    x: (n, F) store dtype, a prefix of `buffer` (None without features); y: int64 (n,) or None;
    mask: bool (n,) nodes in the loader's target split (cluster batches), or None.
    degree: float32 (n,) full-graph in-degree of every node (indptr difference), or None.
    staging: pinned mode: the batch's Staging holding all of these and the subgraph's arrays
    (fields nodes, x, x32, y, mask, degree, edge_index, edge_weight, block<i>); x / y / mask /
    degree view into it.
    """

    item: WorkItem
    subgraph: Any
    x: np.ndarray | None
    buffer: np.ndarray | None
    y: np.ndarray | None
    mask: np.ndarray | None
    cache_hits: int
    sample_s: float
    gather_s: float
    staging: Staging | None = None
    degree: np.ndarray | None = None
    seeds_first: bool = False    # cluster batch relabelled so its mask nodes come first


def in_degrees(indptr: np.ndarray, nodes: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """float32 (n,) in-degree indptr[v+1] - indptr[v] of each of `nodes` (int64 (n,), validated
    by the sampler), written into `out` when given. Two reads per node of the memmapped indptr."""
    if out is None:
        out = np.empty(len(nodes), dtype=np.float32)
    # float32 is exact up to 2^24 in-edges, and a relative 6e-8 beyond: far below what a degree
    # normalisation can notice; the kernel (shared with layer-wise inference) makes no temporaries
    degree_kernel(indptr, nodes, out)
    return out


def split_mask(nodes: np.ndarray, split_ids: np.ndarray) -> np.ndarray:
    """bool (n,): which of `nodes` are in `split_ids` (int64, sorted ascending)."""
    if not len(split_ids) or not len(nodes):
        return np.zeros(len(nodes), dtype=bool)
    breaks = np.flatnonzero(np.diff(nodes) != 1)
    if len(breaks) * RUN_MASK_MIN_RUN_LEN <= len(nodes):
        return _runs_mask(nodes, breaks, split_ids)
    pos = np.minimum(np.searchsorted(split_ids, nodes), len(split_ids) - 1)
    return split_ids[pos] == nodes


# nodes made of runs of consecutive ids at least this long on average (the clusters of a reordered
# store) take the per-run mask: O(runs * log split + hits) instead of O(n log split)
RUN_MASK_MIN_RUN_LEN = 16


def _runs_mask(nodes: np.ndarray, breaks: np.ndarray, split_ids: np.ndarray) -> np.ndarray:
    """split_mask for nodes that are runs of consecutive ids; breaks: positions i with
    nodes[i + 1] != nodes[i] + 1."""
    first = np.concatenate([[0], breaks + 1])                  # run k is nodes[first[k]:last[k]+1]
    last = np.concatenate([breaks, [len(nodes) - 1]])
    lo = np.searchsorted(split_ids, nodes[first], side="left")
    hi = np.searchsorted(split_ids, nodes[last], side="right")
    counts = hi - lo
    mask = np.zeros(len(nodes), dtype=bool)
    total = int(counts.sum())
    if total:
        run = np.repeat(np.arange(len(first)), counts)
        start_of = np.cumsum(counts) - counts
        hit = split_ids[lo[run] + np.arange(total) - start_of[run]]
        mask[first[run] + hit - nodes[first[run]]] = True
    return mask


class Gatherer:
    """What the gather threads share: the feature source, the buffer pool or the pinned budget,
    the split for masks.

    budget: pinned mode (every batch staged, see the module docstring); pool: pageable feature
    buffers otherwise. upcast: also stage a float32 copy of float16 features ("x32"), for batches
    that stay on the CPU (a GPU upcasts after the copy). degree: fill GatheredItem.degree from the
    store's indptr (source.store.indptr). seeds_first: relabel each cluster batch so its mask
    nodes come first (ClusterSubgraph.rows_first), before anything is gathered.
    """

    def __init__(self, source: FeatureSource, pool: HostBufferPool | None, with_labels: bool,
                 mask_ids: np.ndarray | None, *, features: bool = True,
                 budget: PinnedBudget | None = None, upcast: bool = False,
                 degree: bool = True, seeds_first: bool = False) -> None:
        self.source = source
        self.indptr = source.store.indptr if degree else None
        self.pool = pool
        self.with_features = features and source.features is not None
        self.with_labels = with_labels and source.labels is not None
        self.mask_ids = mask_ids
        self.budget = budget
        self.upcast = upcast
        self.seeds_first = bool(seeds_first) and mask_ids is not None

    def _mask(self, sub):
        """(subgraph, mask): the batch's split mask, the subgraph relabelled mask-first if asked."""
        if self.mask_ids is None:
            return sub, None
        mask = split_mask(sub.nodes, self.mask_ids)
        if not self.seeds_first:      # only ClusterLoader sets it: its batches are ClusterSubgraphs
            return sub, mask
        sub, k = sub.rows_first(mask)
        mask[:k] = True
        mask[k:] = False
        return sub, mask

    def gather(self, s: SampledItem, control: PipelineControl | None = None) -> GatheredItem:
        if self.budget is not None:
            return self._gather_staged(s, control)
        t0 = time.perf_counter()
        sub, mask = self._mask(s.subgraph)
        nodes = sub.nodes
        x = buffer = None
        hits = 0
        if self.pool is not None:
            buffer = self.pool.acquire(len(nodes))
            res = self.source.gather(nodes, buffer)
            x, hits = res.rows, res.cache_hits
        y = gather_labels(self.source.labels, nodes) if self.with_labels else None
        degree = in_degrees(self.indptr, nodes) if self.indptr is not None else None
        return GatheredItem(s.item, sub, x, buffer, y, mask, hits, s.sample_s,
                            time.perf_counter() - t0, degree=degree, seeds_first=self.seeds_first)

    def staging_specs(self, sub) -> list[tuple[str, np.dtype, tuple[int, ...]]]:
        """(name, dtype, shape) of every array of batch `sub` (SampledSubgraph or ClusterSubgraph)."""
        n = len(sub.nodes)
        specs = [("nodes", np.dtype(np.int64), (n,))]
        if self.with_features:
            specs.append(("x", self.source.dtype, (n, self.source.dim)))
            if self.upcast and self.source.dtype != np.float32:
                specs.append(("x32", np.dtype(np.float32), (n, self.source.dim)))
        if self.with_labels:
            specs.append(("y", self.source.labels.dtype, (n,)))
        if self.mask_ids is not None:
            specs.append(("mask", np.dtype(bool), (n,)))
        if self.indptr is not None:
            specs.append(("degree", np.dtype(np.float32), (n,)))
        blocks = getattr(sub, "blocks", None)
        if blocks is not None:
            specs += [(f"block{i}", np.dtype(np.int64), (2, b.num_edges)) for i, b in enumerate(blocks)]
        else:
            specs.append(("edge_index", np.dtype(np.int64), (2, sub.num_edges)))
            if sub.edge_weight is not None:
                specs.append(("edge_weight", sub.edge_weight.dtype, (len(sub.edge_weight),)))
        return specs

    def _gather_staged(self, s: SampledItem, control: PipelineControl | None) -> GatheredItem:
        t0 = time.perf_counter()
        sub, split = self._mask(s.subgraph)
        nodes = sub.nodes
        st = Staging(self.staging_specs(sub), self.budget, s.item.seq, control)
        np.copyto(st.array("nodes"), nodes)
        x = y = mask = None
        hits = 0
        if self.with_features:
            res = self.source.gather(nodes, st.array("x"))
            x, hits = res.rows, res.cache_hits
        if self.with_labels:
            y = gather_labels(self.source.labels, nodes, st.array("y"))
        if self.mask_ids is not None:
            mask = st.array("mask")
            mask[:] = split
        degree = in_degrees(self.indptr, nodes, st.array("degree")) if self.indptr is not None else None
        blocks = getattr(sub, "blocks", None)
        if blocks is not None:
            for i, b in enumerate(blocks):
                ei = st.array(f"block{i}")
                ei[0], ei[1] = b.src, b.dst  # written in place: no (2, E) temporary per layer
        else:
            np.copyto(st.array("edge_index"), sub.edge_index())
            if sub.edge_weight is not None:
                np.copyto(st.array("edge_weight"), sub.edge_weight)
        return GatheredItem(s.item, sub, x, None, y, mask, hits, s.sample_s,
                            time.perf_counter() - t0, staging=st, degree=degree,
                            seeds_first=self.seeds_first)


def gather_worker(gatherer: Gatherer, inq: StageQueue, out: StageQueue,
                  control: PipelineControl | None = None) -> None:
    """Body of one gather thread; exits after one DONE marker (see sample_stage.DONE)."""
    while True:
        got = inq.get()
        if got is DONE:
            return
        if isinstance(got, StageFailure):
            out.put(got)
            continue
        try:
            result = gatherer.gather(got, control)
        except Stopped:
            raise
        except Exception as exc:  # noqa: BLE001 - re-raised by the consumer
            result = StageFailure(got.item.seq, "gather", exc)
        del got
        out.put(result)
