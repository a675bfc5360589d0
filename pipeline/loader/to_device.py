"""The to-device stage: restore batch order, wrap arrays as torch tensors, copy to the GPU.

One thread runs `deliver_worker`: it takes gathered batches (or failures) in completion order, holds
them in a reorder buffer keyed by sequence number, and emits them strictly in order. On CUDA every
array is copied with `non_blocking=True` on a side stream; with pin_memory (the default there) they
are views of the batch's pinned staging buffer, so the copies are truly asynchronous. An event
recorded after the copies goes with the batch (the consumer's stream waits on it, `Batch.wait`) and
to the pinned budget (which counts the staging memory until the copy completed). Reuse of the
staging memory is guarded by torch's caching host allocator, not by this code (staging.py).
"""
from __future__ import annotations

import time

import numpy as np
import torch

from gstore.errors import OptionError
from gstore.pipeline.loader.batch import Batch, BatchStats, LayerBlock
from gstore.pipeline.loader.gather_stage import GatheredItem
from gstore.pipeline.loader.queues import StageFailure, StageQueue
from gstore.pipeline.loader.staging import PinnedBudget, Staging

# end-of-run marker put after the last batch
END = object()

DEVICE_HINT = "use 'cpu', 'cuda' (the current CUDA device) or 'cuda:N'"


def resolve_device(device, option: str = "device") -> torch.device:
    """`device` ("cpu", "cuda", "cuda:1", an int or a torch.device) as a torch.device with an index
    when it is a GPU: "cuda" becomes cuda:<torch.cuda.current_device()>, since torch.cuda.set_device
    and friends refuse an unindexed device (ValueError). Raises OptionError (naming `option`) for an
    unparsable or unsupported device, CUDA without a GPU, or an index past the device count."""
    try:
        if isinstance(device, (int, np.integer)) and not isinstance(device, bool):
            dev = torch.device("cuda", int(device))  # torch's own rule for a bare index
        else:
            dev = device if isinstance(device, torch.device) else torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise OptionError(f"{option} {device!r} is not a device", hint=DEVICE_HINT) from None
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type != "cuda":
        raise OptionError(f"{option} {device!r}: the loader delivers to the CPU or a CUDA GPU only",
                          hint=DEVICE_HINT)
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise OptionError(f"{option} {device!r}: no CUDA device is available (torch {torch.__version__}, "
                          f"{build})", hint="use 'cpu', or install a CUDA build of torch on a GPU machine")
    count = torch.cuda.device_count()
    index = torch.cuda.current_device() if dev.index is None else int(dev.index)
    if not 0 <= index < count:
        raise OptionError(f"{option} {device!r}: this machine has {count} CUDA device(s), "
                          f"cuda:0..cuda:{count - 1}",
                          hint="pick one of them (CUDA_VISIBLE_DEVICES renumbers them from 0)")
    return torch.device("cuda", index)


def _tensor(a: np.ndarray | None) -> torch.Tensor | None:
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a))


class DeviceCopier:
    """Turns a GatheredItem into a Batch on `device` ("cpu", "cuda", "cuda:1").

    budget: the loader's PinnedBudget in pinned mode (told which batch is due next and handed
    each copy's event), else None.
    """

    def __init__(self, device: str | torch.device, budget: PinnedBudget | None = None) -> None:
        self.device = resolve_device(device)
        self.budget = budget
        self.cuda = self.device.type == "cuda"
        self.stream = None

    def start_thread(self) -> None:
        """Called in the delivering thread: CUDA streams belong to the device current there."""
        if self.cuda:
            torch.cuda.set_device(self.device)  # an indexed device: set_device refuses bare "cuda"
            self.stream = torch.cuda.Stream(self.device)

    def advance(self, next_seq: int) -> None:
        if self.budget is not None:
            self.budget.advance(next_seq)

    def to_batch(self, g: GatheredItem) -> Batch:
        t0 = time.perf_counter()
        sub = g.subgraph
        kind = getattr(sub, "batch_kind", None) or ("neighbor" if hasattr(sub, "blocks") else "cluster")
        st = g.staging
        if st is not None:
            batch = self._staged_fields(g, st, kind)
        else:
            batch = self._plain_fields(g, kind)
        if self.cuda:
            self._copy_to_cuda(batch, st)
        elif batch.x is not None and batch.x.dtype != torch.float32:
            batch.x = batch.x.float()  # upcast float16 (this also frees the host buffer right away)
        batch.stats.copy_s = time.perf_counter() - t0
        return batch

    def _stats(self, g: GatheredItem, sub, pinned: bool) -> BatchStats:
        return BatchStats(num_nodes=int(sub.num_nodes), num_edges=int(sub.num_edges),
                          feature_bytes=0 if g.x is None else int(g.x.nbytes),
                          cache_hits=g.cache_hits, sample_s=g.sample_s, gather_s=g.gather_s,
                          pinned=pinned)

    def _num_seeds(self, g: GatheredItem, kind: str) -> int:
        sub = g.subgraph
        if kind != "cluster":
            return int(sub.num_seeds)
        return int(g.mask.sum()) if g.mask is not None else int(sub.num_nodes)

    def _plain_fields(self, g: GatheredItem, kind: str) -> Batch:
        """Pageable mode: tensors share the sampler's and the pool's arrays (no copies)."""
        sub = g.subgraph
        blocks = [LayerBlock(_tensor(b.edge_index()), int(b.num_src), int(b.num_dst))
                  for b in getattr(sub, "blocks", [])]
        edge_index = edge_weight = None
        if kind == "cluster":
            edge_index = _tensor(sub.edge_index())
            edge_weight = _tensor(sub.edge_weight)
        return Batch(kind=kind, epoch=g.item.epoch, index=g.item.index, nodes=_tensor(sub.nodes),
                     num_seeds=self._num_seeds(g, kind), x=_tensor(g.x), y=_tensor(g.y),
                     blocks=blocks, edge_index=edge_index, edge_weight=edge_weight,
                     mask=_tensor(g.mask), degree=_tensor(g.degree), stats=self._stats(g, sub, False),
                     seeds_first=g.seeds_first)

    def _staged_fields(self, g: GatheredItem, st: Staging, kind: str) -> Batch:
        """Pinned mode: every tensor is a view of the staging buffer (never a from_numpy alias,
        whose storage torch's host allocator would not know: its async copies would record no
        event and the memory could be reused under them)."""
        sub = g.subgraph

        def get(name: str) -> torch.Tensor | None:
            return st.tensor(name) if name in st else None

        x = get("x")
        if x is not None and "x32" in st and not self.cuda:
            x = get("x32").copy_(x)  # float16 upcast into pinned memory: the batch stays pinned
        blocks = [LayerBlock(st.tensor(f"block{i}"), int(b.num_src), int(b.num_dst))
                  for i, b in enumerate(getattr(sub, "blocks", []))]
        return Batch(kind=kind, epoch=g.item.epoch, index=g.item.index, nodes=st.tensor("nodes"),
                     num_seeds=self._num_seeds(g, kind), x=x, y=get("y"), blocks=blocks,
                     edge_index=get("edge_index"), edge_weight=get("edge_weight"), mask=get("mask"),
                     degree=get("degree"), stats=self._stats(g, sub, st.pinned),
                     seeds_first=g.seeds_first)

    def _copy_to_cuda(self, batch: Batch, st: Staging | None) -> None:
        with torch.cuda.stream(self.stream):
            for name in ("nodes", "x", "y", "edge_index", "edge_weight", "mask", "degree"):
                t = getattr(batch, name)
                if t is not None:
                    setattr(batch, name, t.to(self.device, non_blocking=True))
            for b in batch.blocks:
                b.edge_index = b.edge_index.to(self.device, non_blocking=True)
                if b.edge_weight is not None:
                    b.edge_weight = b.edge_weight.to(self.device, non_blocking=True)
            if batch.x is not None and batch.x.dtype != torch.float32:
                batch.x = batch.x.float()  # float16 travels as float16 and is upcast on the GPU
            event = torch.cuda.Event()
            event.record(self.stream)
        batch.ready = event
        if st is not None and st.lease is not None:
            self.budget.hold(event, st.lease)


def deliver_worker(copier: DeviceCopier, inq: StageQueue, out: StageQueue, total: int) -> None:
    """Body of the delivering thread: reorder by sequence number, build batches, emit `total`."""
    copier.start_thread()
    pending: dict[int, object] = {}
    next_seq = 0
    copier.advance(next_seq)
    while next_seq < total:
        got = inq.get()
        pending[got.seq if isinstance(got, StageFailure) else got.item.seq] = got
        del got
        while next_seq in pending:
            item = pending.pop(next_seq)
            if not isinstance(item, StageFailure):
                try:
                    item = copier.to_batch(item)
                except Exception as exc:  # noqa: BLE001 - re-raised by the consumer
                    item = StageFailure(next_seq, "to_device", exc)
            next_seq += 1
            copier.advance(next_seq)  # its copy is issued: the pinned budget now waits for the next
            out.put(item)
            del item
    out.put(END)
