"""The gather stage: features (into recycled host buffers) and labels for each sampled batch."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from gstore.pipeline.features.gather import FeatureSource, gather_labels
from gstore.pipeline.loader.pin import HostBufferPool
from gstore.pipeline.loader.queues import StageFailure, StageQueue
from gstore.pipeline.loader.sample_stage import DONE, SampledItem
from gstore.pipeline.loader.seeds import WorkItem


@dataclass
class GatheredItem:
    """A sampled batch with its rows gathered.

    x: (n, F) store dtype, a prefix of `buffer` (None without features); y: int64 (n,) or None;
    mask: bool (n,) nodes in the loader's target split (cluster batches), or None.
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
    """What the gather threads share: the feature source, the buffer pool, the split for masks."""

    def __init__(self, source: FeatureSource, pool: HostBufferPool | None, with_labels: bool,
                 mask_ids: np.ndarray | None) -> None:
        self.source = source
        self.pool = pool
        self.with_labels = with_labels and source.labels is not None
        self.mask_ids = mask_ids

    def gather(self, s: SampledItem) -> GatheredItem:
        t0 = time.perf_counter()
        nodes = s.subgraph.nodes
        x = buffer = None
        hits = 0
        if self.pool is not None:
            buffer = self.pool.acquire(len(nodes))
            res = self.source.gather(nodes, buffer)
            x, hits = res.rows, res.cache_hits
        y = gather_labels(self.source.labels, nodes) if self.with_labels else None
        mask = split_mask(nodes, self.mask_ids) if self.mask_ids is not None else None
        return GatheredItem(s.item, s.subgraph, x, buffer, y, mask, hits, s.sample_s,
                            time.perf_counter() - t0)


def gather_worker(gatherer: Gatherer, inq: StageQueue, out: StageQueue) -> None:
    """Body of one gather thread; exits after one DONE marker (see sample_stage.DONE)."""
    while True:
        got = inq.get()
        if got is DONE:
            return
        if isinstance(got, StageFailure):
            out.put(got)
            continue
        try:
            result = gatherer.gather(got)
        except Exception as exc:  # noqa: BLE001 - re-raised by the consumer
            result = StageFailure(got.item.seq, "gather", exc)
        del got
        out.put(result)
