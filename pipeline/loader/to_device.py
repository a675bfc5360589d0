"""The to-device stage: restore batch order, wrap arrays as torch tensors, copy to the GPU.

One thread runs `deliver_worker`: it takes gathered batches (or failures) in completion order, holds
them in a reorder buffer keyed by sequence number, and emits them strictly in order. On CUDA the
features are copied from their pinned buffer with `non_blocking=True` on a side stream; an event
recorded after the copies goes with the batch (the consumer's stream waits on it, `Batch.wait`) and
with the pinned buffer (the pool does not reuse it before the copy finished).
"""
from __future__ import annotations

import time

import numpy as np
import torch

from gstore.errors import OptionError
from gstore.pipeline.loader.batch import Batch, BatchStats, LayerBlock
from gstore.pipeline.loader.gather_stage import GatheredItem
from gstore.pipeline.loader.pin import HostBufferPool
from gstore.pipeline.loader.queues import StageFailure, StageQueue

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
    """Turns a GatheredItem into a Batch on `device` ("cpu", "cuda", "cuda:1")."""

    def __init__(self, device: str | torch.device, pool: HostBufferPool | None) -> None:
        self.device = resolve_device(device)
        self.pool = pool
        self.cuda = self.device.type == "cuda"
        self.stream = None

    def start_thread(self) -> None:
        """Called in the delivering thread: CUDA streams belong to the device current there."""
        if self.cuda:
            torch.cuda.set_device(self.device)
            self.stream = torch.cuda.Stream(self.device)

    def to_batch(self, g: GatheredItem) -> Batch:
        t0 = time.perf_counter()
        sub = g.subgraph
        kind = "neighbor" if hasattr(sub, "blocks") else "cluster"
        nodes = _tensor(sub.nodes)
        x = _tensor(g.x)
        y, mask = _tensor(g.y), _tensor(g.mask)
        blocks = [LayerBlock(_tensor(b.edge_index()), int(b.num_src), int(b.num_dst))
                  for b in getattr(sub, "blocks", [])]
        edge_index = edge_weight = None
        if kind == "cluster":
            edge_index = _tensor(sub.edge_index())
            edge_weight = _tensor(sub.edge_weight)
        num_seeds = int(sub.num_seeds) if kind == "neighbor" else \
            (int(g.mask.sum()) if g.mask is not None else int(sub.num_nodes))
        stats = BatchStats(num_nodes=int(sub.num_nodes), num_edges=int(sub.num_edges),
                           feature_bytes=0 if g.x is None else int(g.x.nbytes),
                           cache_hits=g.cache_hits, sample_s=g.sample_s, gather_s=g.gather_s)
        batch = Batch(kind=kind, epoch=g.item.epoch, index=g.item.index, nodes=nodes,
                      num_seeds=num_seeds, x=x, y=y, blocks=blocks, edge_index=edge_index,
                      edge_weight=edge_weight, mask=mask, stats=stats)
        if self.cuda:
            self._copy_to_cuda(batch, g)
        elif x is not None and x.dtype != torch.float32:
            batch.x = x.float()  # upcast float16 (this also frees the host buffer right away)
        stats.copy_s = time.perf_counter() - t0
        return batch

    def _copy_to_cuda(self, batch: Batch, g: GatheredItem) -> None:
        pinned = self.pool.tensor_of(g.buffer) if (self.pool is not None and g.buffer is not None) else None
        with torch.cuda.stream(self.stream):
            if batch.x is not None:
                if pinned is not None:
                    # copy from the pinned tensor itself (not a from_numpy alias) so it is async
                    xd = pinned[:batch.x.shape[0]].to(self.device, non_blocking=True)
                else:  # unpooled buffer: a synchronous copy keeps its lifetime simple
                    xd = batch.x.to(self.device)
                batch.x = xd.float() if xd.dtype != torch.float32 else xd
            for name in ("nodes", "y", "edge_index", "edge_weight", "mask"):
                t = getattr(batch, name)
                if t is not None:
                    setattr(batch, name, t.to(self.device, non_blocking=True))
            for b in batch.blocks:
                b.edge_index = b.edge_index.to(self.device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self.stream)
        batch.ready = event
        if pinned is not None:
            self.pool.mark_pending(g.buffer, event)


def deliver_worker(copier: DeviceCopier, inq: StageQueue, out: StageQueue, total: int) -> None:
    """Body of the delivering thread: reorder by sequence number, build batches, emit `total`."""
    copier.start_thread()
    pending: dict[int, object] = {}
    next_seq = 0
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
            out.put(item)
            del item
            next_seq += 1
    out.put(END)
