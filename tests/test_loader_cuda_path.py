"""The loader's CUDA path on a CPU-only torch: only what needs a GPU is faked.

Real here: torch.device parsing, gstore's device resolution, torch.cuda.set_device's argument check
(only the runtime call `torch._C._cuda_setDevice` is replaced, so an unindexed device fails as it
does on a GPU), the loader, its threads and its pinned budget. Faked: the CUDA runtime (streams,
events, the host->device copy) and torch's caching host allocator, modelled by its documented rule:
a `non_blocking` copy out of pinned memory records an event for the allocation iff the source's
storage starts a block of that allocator or the copied pointer does (CachingHostAllocator
record_event: ctx lookup, then ptr lookup), and freed blocks are reused only after their events
(the fake never reuses a block at all, which is stricter). A "device" tensor is a CPU clone taken at
copy time, so comparing it later with the host memory it was copied from shows whether that memory
was rewritten while the copy was (notionally) in flight.

What a GPU run checks for real: bench/cuda_check.py.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import gstore
from gstore.pipeline.loader import ClusterLoader, NeighborLoader
from gstore.pipeline.loader.staging import PinnedBudget, Staging, block_bytes
from store_factory import build_store, random_graph

N = 300


class FakeEvent:
    def __init__(self, gpu: "FakeGPU") -> None:
        self.gpu = gpu
        self.recorded_on = None

    def record(self, stream=None) -> None:
        self.recorded_on = stream

    def query(self) -> bool:
        return self.gpu.done

    def synchronize(self) -> None:
        assert self.gpu.done, "a host thread would block forever on a copy that never completes"


class FakeStream:
    def __init__(self, device=None) -> None:
        self.device = device
        self.waited_on: list[FakeEvent] = []

    def wait_event(self, event) -> None:
        self.waited_on.append(event)


@dataclass
class Copy:
    stream: object
    non_blocking: bool
    recorded: bool      # the caching host allocator would know this copy (event on its block)
    pinned: bool        # the source is memory of that allocator at all
    ptr: int
    nbytes: int
    device_copy: torch.Tensor


class FakeGPU:
    """State of the fake device: pinned blocks, copies issued, whether queued work has completed."""

    def __init__(self) -> None:
        self.done = True
        self.blocks: dict[int, torch.Tensor] = {}   # block start -> tensor (kept: never reused)
        self.copies: list[Copy] = []
        self.set_device_calls: list[int] = []
        self.consumer = FakeStream()
        self.active: FakeStream | None = None
        self.recorded_streams: list[tuple[torch.Tensor, FakeStream]] = []

    def owns(self, t: torch.Tensor) -> bool:
        base = t.untyped_storage().data_ptr()
        return any(start <= base < start + b.nbytes for start, b in self.blocks.items())

    def records(self, t: torch.Tensor) -> bool:
        return t.untyped_storage().data_ptr() in self.blocks or t.data_ptr() in self.blocks


@pytest.fixture()
def gpu(monkeypatch):
    g = FakeGPU()
    real_empty, real_to = torch.empty, torch.Tensor.to

    def empty(*args, pin_memory=False, **kwargs):
        t = real_empty(*args, **kwargs)
        if pin_memory:
            g.blocks[t.untyped_storage().data_ptr()] = t
        return t

    def to(t, *args, **kwargs):
        target = args[0] if args else kwargs.get("device")
        if isinstance(target, (str, torch.device)) and torch.device(target).type == "cuda":
            assert torch.device(target).index is not None, "copies go to an indexed device"
            nb = bool(kwargs.get("non_blocking", False))
            g.copies.append(Copy(g.active or g.consumer, nb, nb and g.records(t), g.owns(t),
                                 t.data_ptr(), t.nbytes, t.clone()))
            return g.copies[-1].device_copy
        return real_to(t, *args, **kwargs)

    @contextlib.contextmanager
    def stream_ctx(s):
        before, g.active = g.active, s
        try:
            yield
        finally:
            g.active = before

    monkeypatch.setattr(torch, "empty", empty)
    monkeypatch.setattr(torch.Tensor, "to", to)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch._C, "_cuda_setDevice", g.set_device_calls.append, raising=False)
    monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
    monkeypatch.setattr(torch.cuda, "Event", lambda *a, **k: FakeEvent(g))
    monkeypatch.setattr(torch.cuda, "stream", stream_ctx)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: g.consumer)
    monkeypatch.setattr(torch.Tensor, "record_stream",
                        lambda t, s: g.recorded_streams.append((t, s)))
    return g


@pytest.fixture(scope="module", params=["float32", "float16"])
def store(request, tmp_path_factory):
    rng = np.random.default_rng(5)
    src, dst = random_graph(N, 2400, seed=9)
    path = build_store(tmp_path_factory.mktemp("cuda") / "s", src, dst, N,
                       features=rng.standard_normal((N, 5)).astype(request.param),
                       labels=rng.integers(0, 3, N), splits={"train": np.arange(0, N, 2)})
    return gstore.open(path)


def neighbor(store, **kw):
    return NeighborLoader(store, [3, 2], 16, seed=1, **kw)


def cluster(store, **kw):
    parts = (np.arange(N) % 12).astype(np.int32)
    return ClusterLoader(store, parts, 12, 3, seed=1, **kw)


def cluster_seeds_first(store, **kw):
    return cluster(store, seeds_first=True, **kw)


def fields(b) -> dict[str, torch.Tensor]:
    out = {k: getattr(b, k) for k in ("nodes", "x", "y", "edge_index", "edge_weight", "mask", "degree")}
    out.update({f"block{i}": blk.edge_index for i, blk in enumerate(b.blocks)})
    return {k: v for k, v in out.items() if v is not None}


@pytest.mark.parametrize("make", [neighbor, cluster, cluster_seeds_first])
@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda")])
def test_cuda_batches_equal_cpu_batches(gpu, store, make, device):
    """device="cuda" used to fail at its first batch: set_device(torch.device("cuda")) raises."""
    ref = [fields(b) for b in make(store)]
    got = []
    for b in make(store, device=device, num_workers=2, prefetch=2):
        assert b.ready is None  # the loader made the consumer wait on the copy's event
        got.append(fields(b))
    assert gpu.set_device_calls and set(gpu.set_device_calls) == {0}
    assert len(ref) == len(got)
    for r, g in zip(ref, got):
        assert r.keys() == g.keys()
        for k in r:
            assert torch.equal(r[k], g[k]), k
            assert g[k].dtype == r[k].dtype


@pytest.mark.parametrize("make", [neighbor, cluster])
def test_every_copy_is_async_from_pinned_memory_on_the_side_stream(gpu, store, make):
    loader = make(store, device="cuda")
    batches = list(loader)
    fields_per_batch = len(fields(batches[0]))
    assert len(gpu.copies) == sum(len(fields(b)) for b in batches) >= fields_per_batch * len(batches)
    side = {c.stream for c in gpu.copies}
    assert len(side) == 1 and gpu.consumer not in side
    assert all(c.non_blocking and c.pinned and c.recorded for c in gpu.copies), \
        [(c.pinned, c.recorded) for c in gpu.copies if not c.recorded]
    assert all(b.stats.pinned for b in batches)
    # the consumer's stream waited on each batch's event, and every tensor is marked as used there
    assert len(gpu.consumer.waited_on) == len(batches)
    assert all(e.recorded_on in side for e in gpu.consumer.waited_on)
    marked = {id(t) for t, s in gpu.recorded_streams if s is gpu.consumer}
    assert all(id(t) in marked for b in batches for t in b.tensors())


def test_cpu_pinned_batches_survive_the_users_async_copies(gpu, store):
    """pin_memory=True on the CPU: the user copies each batch with non_blocking=True and drops it
    while the copy is still queued (the fake GPU never completes anything). Every field must be
    pinned memory the allocator tracks (float16 features too: upcast into the staging buffer), and
    the loader must not write that memory again: a reused pooled buffer would show up as a device copy that no longer
    matches the host memory it was read from."""
    gpu.done = False
    loader = neighbor(store, pin_memory=True, num_workers=2, prefetch=2, pinned_bytes=1 << 30)
    for b in loader:
        for name, t in fields(b).items():
            t.to("cuda:0", non_blocking=True)  # as a trainer would
        del b, t
    user = [c for c in gpu.copies if c.stream is gpu.consumer]
    assert len(user) > 3 * len(loader) and all(c.pinned and c.recorded for c in user)
    for c in user:
        host_now = ctypes.string_at(c.ptr, c.nbytes)  # blocks of the fake allocator stay mapped
        assert host_now == c.device_copy.numpy().tobytes(), "pinned memory rewritten under a copy"


def test_budget_caps_pinned_bytes_and_falls_back_to_pageable(gpu, store, caplog):
    needs = []
    one = neighbor(store, device="cuda")
    real_acquire = one.budget.acquire
    one.budget.acquire = lambda nbytes, seq, control=None: needs.append(block_bytes(nbytes)) or \
        real_acquire(nbytes, seq, control)
    list(one)
    # room for the first batch, never for it and any other (sizes differ by batch: the last one
    # is smaller, and the per-node degree field moves some across a power of two)
    cap = needs[0] + min(needs[1:]) - 1
    gpu.done = False               # copies never complete: the budget cannot free anything
    loader = neighbor(store, device="cuda", pinned_bytes=cap)
    loader.budget.wait_s = 0.05
    with caplog.at_level(logging.WARNING):
        batches = list(loader)
    assert loader.budget.peak <= cap
    assert batches[0].stats.pinned and not any(b.stats.pinned for b in batches[1:])
    assert loader.budget.pageable == len(batches) - 1
    assert sum("pinned memory budget" in r.message for r in caplog.records) == 1  # logged once
    ref = [fields(b) for b in neighbor(store)]
    for r, b in zip(ref, batches):  # pageable batches are just as correct
        assert all(torch.equal(r[k], v) for k, v in fields(b).items())


def test_budget_frees_once_copies_complete(gpu, store):
    loader = neighbor(store, device="cuda", pinned_bytes=1 << 30)
    for b in loader:
        pass
    del b
    loader.budget.poll()  # the fake GPU completes at once: every held lease is dropped
    assert loader.budget.used == 0 and loader.budget.peak > 0


def test_cpu_pinned_lease_lives_as_long_as_any_tensor_of_the_batch(gpu, store):
    loader = neighbor(store, pin_memory=True)
    it = iter(loader)
    b = next(it)
    it.close()
    y = b.y
    del b
    assert loader.budget.used > 0  # y still uses the staging memory
    del y
    assert loader.budget.used == 0


def test_budget_waits_then_times_out_and_never_blocks_the_due_batch():
    budget = PinnedBudget(max_bytes=1000, wait_s=0.05)
    assert not budget.acquire(600, seq=1)          # 1024 > 1000 alone: larger than the cap
    assert budget.pageable == 1 and budget.used == 0
    assert budget.acquire(400, seq=1) and budget.used == 512
    budget.next_seq = 0
    assert not budget.acquire(400, seq=0)          # the due batch: pageable at once, no wait
    assert not budget.acquire(400, seq=5)          # a later one: waited 50 ms, then pageable
    assert budget.pageable == 3 and block_bytes(400) == 512 and block_bytes(1) == 1


def test_staging_fields_are_aligned_views_of_one_buffer():
    st = Staging([("a", np.int64, (3,)), ("b", np.dtype(bool), (5,)), ("c", np.float16, (2, 3))],
                 None, 0)
    st.array("a")[:] = [1, 2, 3]
    st.array("c")[:] = 1.5
    base = st.buffer.untyped_storage().data_ptr()
    for name in ("a", "b", "c"):
        t = st.tensor(name)
        assert t.untyped_storage().data_ptr() == base and (t.data_ptr() - base) % 64 == 0
    assert st.tensor("a").tolist() == [1, 2, 3] and st.tensor("c").dtype == torch.float16
    assert not st.pinned and st.lease is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the check really runs")
def test_cuda_check_says_not_run_without_a_gpu(capsys):
    """bench/cuda_check.py used to exit 0 without a GPU, which reads as a pass."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "cuda_check.py"
    spec = importlib.util.spec_from_file_location("cuda_check", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick"]) == 2
    assert capsys.readouterr().out.strip() == "cuda_check: NOT RUN (no CUDA device)"


def test_pinned_allocation_failure_falls_back_to_pageable(gpu, monkeypatch, caplog):
    real_empty = torch.empty

    def refuse(*args, pin_memory=False, **kwargs):
        if pin_memory:
            raise RuntimeError("CUDA error: out of memory\nmore text")
        return real_empty(*args, **kwargs)

    monkeypatch.setattr(torch, "empty", refuse)
    budget = PinnedBudget(1 << 20)
    with caplog.at_level(logging.WARNING):
        st = Staging([("a", np.int64, (4,))], budget, 0)
    assert not st.pinned and st.lease is None and budget.used == 0
    assert "cannot allocate" in caplog.text and "out of memory" in caplog.text
