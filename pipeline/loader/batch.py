"""The typed mini-batch handed to the trainer (torch tensors, on the loader's device)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class LayerBlock:
    """One sampled layer (message flow src -> dst), PyG-style bipartite edge index.

    edge_index: int64 (2, E) local ids, row 0 sources (< num_src), row 1 destinations (< num_dst).
    Destinations are the first num_dst of the batch's nodes, sources the first num_src.
    """

    edge_index: torch.Tensor
    num_src: int
    num_dst: int

    @property
    def size(self) -> tuple[int, int]:
        """(num_src, num_dst), the `size` argument of PyG's bipartite message passing."""
        return (self.num_src, self.num_dst)

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])


@dataclass
class BatchStats:
    """Sizes and stage timings of one batch (seconds in the worker threads, wall clock)."""

    num_nodes: int = 0
    num_edges: int = 0
    feature_bytes: int = 0
    cache_hits: int = 0
    sample_s: float = 0.0
    gather_s: float = 0.0
    copy_s: float = 0.0
    pinned: bool = False   # the host arrays were staged in page-locked memory (async copies)


@dataclass
class Batch:
    """A mini-batch.

    kind: "neighbor" or "cluster". epoch / index: where it sits in the loader's schedule.
    nodes: int64 (n,) dense store ids; neighbor batches put the `num_seeds` seeds first.
    x: float32 (n, F) features (float16 stores are upcast on the device), or None.
    y: int64 (n,) labels of all nodes (-1 unknown), or None; the loss uses y[:num_seeds] (neighbor)
        or y[mask] (cluster).
    blocks: neighbor batches: one LayerBlock per layer, input layer first (blocks[-1] ends at seeds).
    edge_index: cluster batches: int64 (2, m) local [src; dst] of the induced subgraph.
    edge_weight: cluster batches: float32 (m,) GCN-normalised weights, or None.
    mask: cluster batches: bool (n,) nodes of the loader's split (the loss nodes), or None.
    """

    kind: str
    epoch: int
    index: int
    nodes: torch.Tensor
    num_seeds: int
    x: torch.Tensor | None
    y: torch.Tensor | None
    blocks: list[LayerBlock] = field(default_factory=list)
    edge_index: torch.Tensor | None = None
    edge_weight: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    stats: BatchStats = field(default_factory=BatchStats)
    ready: Any = field(default=None, repr=False)   # CUDA event of the async copy, or None

    @property
    def num_nodes(self) -> int:
        return int(self.nodes.shape[0])

    @property
    def num_edges(self) -> int:
        if self.edge_index is not None:
            return int(self.edge_index.shape[1])
        return sum(b.num_edges for b in self.blocks)

    @property
    def seeds(self) -> torch.Tensor:
        """Dense ids of the loss nodes: the seed prefix (neighbor) or the masked nodes (cluster)."""
        if self.kind == "cluster":
            return self.nodes if self.mask is None else self.nodes[self.mask]
        return self.nodes[:self.num_seeds]

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor of the batch (for stream bookkeeping and device moves)."""
        out = [self.nodes, self.x, self.y, self.edge_index, self.edge_weight, self.mask]
        out += [b.edge_index for b in self.blocks]
        return [t for t in out if t is not None]

    def wait(self) -> None:
        """Make the current CUDA stream wait for this batch's async copy (no-op on CPU).

        The loader calls it before handing the batch out; record_stream tells the caching
        allocator the tensors (allocated on the copy stream) are used on the consumer's stream.
        """
        if self.ready is None:
            return
        current = torch.cuda.current_stream(self.nodes.device)
        current.wait_event(self.ready)
        for t in self.tensors():
            t.record_stream(current)
        self.ready = None
