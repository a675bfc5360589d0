"""The CUDA bookkeeping of the loader, on a CPU-only torch with a fake torch.cuda.

What a GPU run checks for real (bench/cuda_check.py, on the device machine) is that copies are
correct; what can go wrong without a GPU to notice is the order of the bookkeeping: the copy must be
recorded as an event on the side stream, the event must travel with the batch (the consumer's stream
waits on it, every tensor is record_stream'ed) and with the pinned buffer (the pool waits for it
before handing the buffer out again). These tests pin that order down with recording fakes.
"""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from gstore.pipeline.loader.gather_stage import GatheredItem
from gstore.pipeline.loader.pin import HostBufferPool
from gstore.pipeline.loader.seeds import WorkItem
from gstore.pipeline.loader.to_device import DeviceCopier
from gstore.pipeline.sampling.subgraph import ClusterSubgraph


class FakeEvent:
    def __init__(self) -> None:
        self.recorded_on = None
        self.synchronized = 0

    def record(self, stream) -> None:
        self.recorded_on = stream

    def synchronize(self) -> None:
        self.synchronized += 1


class FakeStream:
    def __init__(self, device=None) -> None:
        self.waited_on: list[FakeEvent] = []

    def wait_event(self, event) -> None:
        self.waited_on.append(event)


@pytest.fixture()
def fake_cuda(monkeypatch):
    """torch.cuda stand-ins that record calls; tensors stay on the CPU ("cpu" as the device)."""
    consumer = FakeStream()
    recorded: list[tuple[torch.Tensor, FakeStream]] = []
    active: list[FakeStream | None] = [None]

    @contextlib.contextmanager
    def stream_ctx(s):
        active[0] = s
        try:
            yield
        finally:
            active[0] = None

    real_empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *a, pin_memory=False, **k: real_empty(*a, **k))
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "stream", stream_ctx)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: consumer)
    monkeypatch.setattr(torch.Tensor, "record_stream", lambda t, s: recorded.append((t, s)))
    return consumer, recorded, active


def cluster_item(buffer: np.ndarray, n: int) -> GatheredItem:
    sub = ClusterSubgraph(nodes=np.arange(n, dtype=np.int64), indptr=np.arange(n + 1, dtype=np.int64),
                          indices=np.arange(n, dtype=np.int64), edge_ids=np.zeros(0, np.int64),
                          edge_weight=np.ones(n, np.float32), clusters=np.zeros(1, np.int64))
    return GatheredItem(item=WorkItem(seq=0, epoch=0, index=0, payload=np.zeros(1, np.int64), seed=0),
                        subgraph=sub, x=buffer[:n], buffer=buffer, y=np.zeros(n, np.int64),
                        mask=np.ones(n, bool), cache_hits=0, sample_s=0.0, gather_s=0.0)


def test_copy_event_travels_with_batch_and_buffer(fake_cuda):
    consumer, recorded, _ = fake_cuda
    pool = HostBufferPool(3, np.float32, pinned=True, max_buffers=2)
    buf = pool.acquire(5)
    buf[:5] = np.arange(15, dtype=np.float32).reshape(5, 3)
    copier = DeviceCopier("cpu", pool)
    copier.cuda = True  # take the CUDA branch; .to("cpu") keeps the tensors where they are
    copier.start_thread()
    batch = copier.to_batch(cluster_item(buf, 5))
    event = batch.ready
    assert isinstance(event, FakeEvent) and event.recorded_on is copier.stream
    assert torch.equal(batch.x, torch.arange(15, dtype=torch.float32).reshape(5, 3))
    # the pool holds the event for that buffer: handing it out again waits for the copy first
    del buf
    again = pool.acquire(5)
    assert event.synchronized == 1 and pool.allocations == 1
    del again
    pool.acquire(5)
    assert event.synchronized == 1  # waited once, then forgotten
    # the consumer's stream waits for the copy and every tensor is marked as used there
    batch.wait()
    assert consumer.waited_on == [event] and batch.ready is None
    marked = {id(t) for t, s in recorded if s is consumer}
    assert all(id(t) in marked for t in batch.tensors())
    batch.wait()  # idempotent
    assert consumer.waited_on == [event]


def test_copies_run_on_the_side_stream(fake_cuda, monkeypatch):
    _, _, active = fake_cuda
    pool = HostBufferPool(3, np.float32, pinned=True)
    buf = pool.acquire(4)
    buf[:4] = 1.0
    copier = DeviceCopier("cpu", pool)
    copier.cuda = True
    copier.start_thread()
    seen: list[tuple[object, bool]] = []
    real_to = torch.Tensor.to

    def spy_to(t, *args, **kwargs):
        seen.append((active[0], bool(kwargs.get("non_blocking"))))
        return real_to(t, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", spy_to)
    copier.to_batch(cluster_item(buf, 4))
    # x, nodes, y, edge_index, edge_weight, mask: all on the side stream, all asynchronous
    assert len(seen) == 6 and all(s is copier.stream and nb for s, nb in seen)


def test_unpooled_buffer_copies_synchronously(fake_cuda, monkeypatch):
    """A buffer the pool does not own (all pooled ones in use) has no pinned tensor: its copy is a
    plain synchronous one and no event is attached to any pool entry."""
    pool = HostBufferPool(3, np.float32, pinned=True, max_buffers=1)
    held = pool.acquire(4)
    extra = pool.acquire(4)  # pool full: an unpooled buffer
    assert pool.tensor_of(extra) is None
    copier = DeviceCopier("cpu", pool)
    copier.cuda = True
    copier.start_thread()
    batch = copier.to_batch(cluster_item(extra, 4))
    assert isinstance(batch.ready, FakeEvent)
    assert all(e.event is None for e in pool._entries)
    del held
