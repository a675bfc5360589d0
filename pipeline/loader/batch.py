"""The typed mini-batch handed to the trainer (torch tensors, on the loader's device)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gstore.errors import OptionError


@dataclass(frozen=True)
class BlockCSR:
    """A block's edges as a CSR over destinations (what the models' segment sums run on).

    crow: int64 (num_dst + 1,) row offsets; col: int64 (E,) source ids in destination order;
    perm: int64 (E,) edge positions in that order, or None when the edges already came grouped by
    ascending destination (the samplers' order); count: float32 (num_dst,) edges per destination.
    """

    crow: torch.Tensor
    col: torch.Tensor
    perm: torch.Tensor | None
    count: torch.Tensor


@dataclass
class LayerBlock:
    """One sampled layer (message flow src -> dst), PyG-style bipartite edge index.

    edge_index: int64 (2, E) local ids, row 0 sources (< num_src), row 1 destinations (< num_dst).
    Destinations are the first num_dst of the batch's nodes, sources the first num_src.
    edge_weight: float32 (E,) per-edge weights (cluster batches' gcn_norm, self-loops included), or
        None (neighbor blocks: models normalise with Batch.degree).
    """

    edge_index: torch.Tensor
    num_src: int
    num_dst: int
    edge_weight: torch.Tensor | None = None
    # csr() cache, keyed by the edge_index object it was built from (to_device replaces edge_index)
    _csr: tuple[torch.Tensor, BlockCSR] | None = field(default=None, init=False, repr=False,
                                                       compare=False)

    @property
    def size(self) -> tuple[int, int]:
        """(num_src, num_dst), the `size` argument of PyG's bipartite message passing."""
        return (self.num_src, self.num_dst)

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    def csr(self) -> BlockCSR:
        """The edges grouped by destination (computed once per edge_index, on its device).

        The samplers emit edges grouped by ascending destination, so this is a bincount and a
        cumsum; other orders are stably sorted first (same sums, in edge order within a row)."""
        ei = self.edge_index
        if self._csr is not None and self._csr[0] is ei:
            return self._csr[1]
        src, dst = ei[0], ei[1]
        perm = None
        if dst.numel() > 1 and not bool((dst[1:] >= dst[:-1]).all()):
            perm = torch.argsort(dst, stable=True)
            src = src[perm]
        # out-of-range ids would make the unchecked sparse products read out of bounds
        if dst.numel() and (int(dst.min()) < 0 or int(src.min()) < 0 or int(src.max()) >= self.num_src):
            raise OptionError(f"block edge ids outside [0, num_src={self.num_src}) x "
                              f"[0, num_dst={self.num_dst})")
        counts = torch.bincount(dst, minlength=self.num_dst)
        if counts.numel() > self.num_dst:
            raise OptionError(f"block has destination ids >= num_dst={self.num_dst}")
        crow = torch.zeros(self.num_dst + 1, dtype=torch.int64, device=ei.device)
        torch.cumsum(counts, 0, out=crow[1:])
        out = BlockCSR(crow=crow, col=src.contiguous(), perm=perm, count=counts.to(torch.float32))
        self._csr = (ei, out)
        return out


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

    kind: "neighbor", "cluster" or "rows". epoch / index: where it sits in the loader's schedule.
    nodes: int64 (n,) dense store ids; neighbor batches put the `num_seeds` seeds first; row
        batches (pipeline/loader/rows.py) are seeds only (num_seeds = n) and carry no graph.
    x: float32 (n, F) features (float16 stores are upcast on the device), or None; row batches:
        float32 (n, width), the rows of several (N, F_i) arrays side by side.
    y: int64 (n,) labels of all nodes (-1 unknown), or None; the loss uses y[:num_seeds] (neighbor)
        or y[mask] (cluster).
    blocks: neighbor batches: one LayerBlock per layer, input layer first (blocks[-1] ends at seeds).
    edge_index: cluster batches: int64 (2, m) local [src; dst] of the induced subgraph.
    edge_weight: cluster batches: float32 (m,) GCN-normalised weights, or None.
    mask: cluster batches: bool (n,) nodes of the loader's split (the loss nodes), or None.
    degree: float32 (n,) in-degree of every batch node in the full store graph (indptr difference),
        or None (a batch built without the store); GCN's normalisation on neighbor blocks uses it.
    seeds_first: cluster batches: the mask nodes are the first num_seeds nodes (the loader was
        built with seeds_first=True), so a model's last layer runs only on those rows.
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
    degree: torch.Tensor | None = None
    stats: BatchStats = field(default_factory=BatchStats)
    ready: Any = field(default=None, repr=False)   # CUDA event of the async copy, or None
    seeds_first: bool = False
    _cluster_block: LayerBlock | None = field(default=None, init=False, repr=False, compare=False)
    _seeds_block: LayerBlock | None = field(default=None, init=False, repr=False, compare=False)

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
        out = [self.nodes, self.x, self.y, self.edge_index, self.edge_weight, self.mask, self.degree]
        for b in self.blocks:
            out += [b.edge_index, b.edge_weight]
        return [t for t in out if t is not None]

    def layer_blocks(self, num_layers: int, seeds_only: bool = True) -> list[LayerBlock]:
        """The `num_layers` blocks a model runs on, input layer first.

        Neighbor batches: `blocks` (there must be exactly num_layers: one fanout per layer).
        Cluster batches: the same LayerBlock(edge_index, n, n, edge_weight) for every layer (one
        object, so its csr() is built once per batch); with seeds_first, the last layer's block
        keeps only the edges into the num_seeds loss nodes (their prefix: edges are grouped by
        destination), so the model's output is those rows' logits and the rows no loss reads are
        not computed; seeds_only=False keeps every row (a model whose last layer normalises over
        its rows, GNN.row_local_output). Row batches: [] for num_layers 0 (a model
        on precomputed rows, train/row_models.py, has no graph layers)."""
        if self.kind == "rows":
            if num_layers != 0 or isinstance(num_layers, bool):
                raise OptionError(f"row batches carry no graph, but the model has {num_layers!r} graph "
                                  "layers", hint="train a row model (sgc, sign) on row batches")
            return []
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise OptionError(f"num_layers must be an integer >= 1, got {num_layers!r}")
        if self.kind == "cluster":
            if self.edge_index is None:
                raise OptionError("cluster batch has no edge_index")
            blk = self._cluster_block
            if blk is None or blk.edge_index is not self.edge_index \
                    or blk.edge_weight is not self.edge_weight:
                n = self.num_nodes
                blk = LayerBlock(self.edge_index, n, n, edge_weight=self.edge_weight)
                self._cluster_block = blk
                self._seeds_block = None
            if not (seeds_only and self.seeds_first) or self.num_seeds >= self.num_nodes:
                return [blk] * num_layers
            last = self._seeds_block
            if last is None:
                k = self.num_seeds
                e = int(blk.csr().crow[k])
                w = None if self.edge_weight is None else self.edge_weight[:e]
                last = self._seeds_block = LayerBlock(self.edge_index[:, :e], self.num_nodes, k, edge_weight=w)
            return [blk] * (num_layers - 1) + [last]
        if len(self.blocks) != num_layers:
            raise OptionError(f"batch has {len(self.blocks)} sampled layers but the model has "
                              f"{num_layers}", hint="give the loader one fanout per model layer")
        return list(self.blocks)

    def to_pyg(self):
        """This batch as a `torch_geometric.data.Data` (PyG conventions, tensors on this device).

        Neighbor batches: edge_index int64 (2, E) src -> dst in local ids, the union of the blocks'
        edges without duplicates (as SampledSubgraph.edge_index); x, y, n_id (dense store ids),
        batch_size (the seeds: the first batch_size rows). Cluster batches: edge_index,
        edge_weight, x, y, n_id, train_mask (the loader's split: the loss nodes)."""
        try:
            from torch_geometric.data import Data
        except ImportError:
            raise OptionError("Batch.to_pyg needs torch_geometric, which is not importable",
                              hint="pip install torch_geometric") from None
        common = dict(x=self.x, y=self.y, n_id=self.nodes, num_nodes=self.num_nodes)
        if self.kind == "cluster":
            return Data(edge_index=self.edge_index, edge_weight=self.edge_weight,
                        train_mask=self.mask, **common)
        return Data(edge_index=self._union_edge_index(), batch_size=int(self.num_seeds), **common)

    def _union_edge_index(self) -> torch.Tensor:
        """int64 (2, E): every block's edges once, first occurrence order (blocks input first)."""
        if not self.blocks:
            return torch.zeros((2, 0), dtype=torch.int64, device=self.nodes.device)
        ei = torch.cat([b.edge_index for b in self.blocks], dim=1)
        if ei.shape[1] == 0:
            return ei
        from gstore.set_kernels import first_pair_positions

        host = ei.cpu().numpy()
        first = first_pair_positions(host[0], host[1], self.num_nodes)
        return ei[:, torch.from_numpy(first).to(ei.device)]

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
