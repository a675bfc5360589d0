"""The sample stage: worker threads that take the next work item and call `sampler.sample`.

The sampler is any object with `.sample(payload, seed)` (NeighborSampler, ClusterSampler, or a test
double); its kernels release the GIL, so several workers sample concurrently. Items are dispatched in
sequence order under a lock, each after taking a slot of the run's in-flight limit.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any

from gstore.pipeline.loader.queues import InFlightLimit, StageFailure, StageQueue
from gstore.pipeline.loader.seeds import WorkItem

# end-of-work marker: one per sample worker, each consumed by exactly one gather worker
DONE = object()


@dataclass
class SampledItem:
    item: WorkItem
    subgraph: Any          # SampledSubgraph or ClusterSubgraph
    sample_s: float


class WorkFeed:
    """Hands out the run's work items in order, at most `limit` in flight."""

    def __init__(self, items: Sequence[WorkItem], limit: InFlightLimit) -> None:
        self._items = items
        self._next = 0
        self._lock = threading.Lock()
        self._limit = limit

    def next(self) -> WorkItem | None:
        self._limit.acquire()
        with self._lock:
            if self._next >= len(self._items):
                self._limit.release()
                return None
            item = self._items[self._next]      # made here (seeds.EpochItems), dropped once sampled
            self._next += 1
            return item


def sample_worker(feed: WorkFeed, sampler, out: StageQueue) -> None:
    """Body of one sample thread. A sampler exception travels downstream as a StageFailure in place
    of its batch, so the consumer raises it exactly when it reaches that batch."""
    while True:
        item = feed.next()
        if item is None:
            out.put(DONE)
            return
        t0 = time.perf_counter()
        try:
            sub = sampler.sample(item.payload, item.seed)
        except Exception as exc:  # noqa: BLE001 - re-raised by the consumer
            out.put(StageFailure(item.seq, "sample", exc))
            continue
        out.put(SampledItem(item, sub, time.perf_counter() - t0))
