"""Typed sampler outputs shared by the samplers, the feature gather and the loader.

Conventions (documented in docs/sampling.md):
- Node ids in `nodes` are dense store ids (int64); local ids index into `nodes`.
- Message flow is src -> dst. CSR rows of a store are destinations, so sampling node v draws from
  `indices[indptr[v]:indptr[v+1]]`, its in-neighbors.
- `SampledSubgraph.nodes` puts the seeds first, then each hop's new nodes in hop order, so the nodes
  reached within k hops are a prefix of `nodes`. `hop_sizes[k]` is the length of that prefix
  (hop_sizes[0] == num_seeds).
- `blocks` run from the input layer to the output layer (the order a model consumes them):
  blocks[-1] has the seeds as destinations. Block l's destinations are `nodes[:block.num_dst]` and its
  sources are `nodes[:block.num_src]`; `src`/`dst` are local ids into those prefixes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gstore.set_kernels import first_pair_positions


@dataclass
class Block:
    """One layer of sampled edges, message flow src -> dst.

    src: int64 (E_l,) local ids of message sources, < num_src.
    dst: int64 (E_l,) local ids of destinations, < num_dst.
    edge_ids: int64 (E_l,) positions of the sampled edges in the store's `indices` array.
    """

    src: np.ndarray
    dst: np.ndarray
    edge_ids: np.ndarray
    num_src: int
    num_dst: int

    @property
    def num_edges(self) -> int:
        return int(len(self.src))

    def edge_index(self) -> np.ndarray:
        """int64 (2, E_l): [src; dst] local ids (PyG style, bipartite num_src x num_dst)."""
        return np.stack([self.src, self.dst])


@dataclass
class SampledSubgraph:
    """A neighbor-sampled mini-batch (GraphSAGE).

    nodes: int64 (n,) unique dense store ids, seeds first, then hop by hop.
    num_seeds: number of seeds (prefix of `nodes`).
    hop_sizes: list of len(fanouts)+1 prefix lengths of `nodes` (nodes within 0, 1, ... hops).
    blocks: one Block per layer, input layer first; blocks[-1].num_dst == num_seeds.
    """

    nodes: np.ndarray
    num_seeds: int
    hop_sizes: list[int]
    blocks: list[Block]

    @property
    def seeds(self) -> np.ndarray:
        return self.nodes[:self.num_seeds]

    @property
    def num_nodes(self) -> int:
        return int(len(self.nodes))

    @property
    def num_edges(self) -> int:
        return sum(b.num_edges for b in self.blocks)

    def edge_index(self) -> np.ndarray:
        """int64 (2, E): the union of all blocks' edges in local ids (src; dst), duplicates removed."""
        if not self.blocks:
            return np.zeros((2, 0), dtype=np.int64)
        ei = np.concatenate([b.edge_index() for b in self.blocks], axis=1)
        if ei.shape[1] == 0:
            return ei
        return ei[:, first_pair_positions(ei[0], ei[1], self.num_nodes)]


@dataclass
class ClusterSubgraph:
    """An induced subgraph over the union of some clusters (Cluster-GCN) or a random node/edge set
    (GraphSAINT-style).

    nodes: int64 (n,) unique dense store ids of the subgraph (every node is a training target
        candidate; mask with the split to pick the loss nodes). Cluster batches list them in
        cluster order (ascending cluster, then ascending id); SAINT batches sorted.
    indptr: int64 (n+1,) local CSR over destinations; indices: int64 (m,) local source ids.
    edge_ids: int64 (m,) positions in the store's `indices` (-1 for added self-loops); empty (0,)
        when the sampler was built with edge_ids=False.
    edge_weight: float32 (m,) GCN-normalised weights when requested, else None.
    clusters: int64 (q,) the cluster ids chosen for this batch (empty for SAINT samplers).
    """

    nodes: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    edge_ids: np.ndarray
    edge_weight: np.ndarray | None
    clusters: np.ndarray

    @property
    def num_nodes(self) -> int:
        return int(len(self.nodes))

    @property
    def num_edges(self) -> int:
        return int(len(self.indices))

    def edge_index(self) -> np.ndarray:
        """int64 (2, m): [src; dst] local ids."""
        dst = np.repeat(np.arange(self.num_nodes, dtype=np.int64), np.diff(self.indptr))
        return np.stack([self.indices.astype(np.int64, copy=False), dst])

    def rows_first(self, first: np.ndarray) -> tuple["ClusterSubgraph", int]:
        """(this subgraph with the nodes where `first` (bool (n,)) holds relabelled to come first,
        their count k). Same nodes, edges and weights; edges stay grouped by destination, so the
        edges into the first k nodes are a prefix. A model whose last layer needs only the loss
        nodes' rows computes it on that prefix (Batch.layer_blocks)."""
        from gstore.pipeline.sampling.cluster_kernels import rows_first

        n, m = self.num_nodes, self.num_edges
        first = np.ascontiguousarray(first, dtype=np.bool_)
        order = np.empty(n, dtype=np.int64)
        indptr = np.empty(n + 1, dtype=np.int64)
        indices = np.empty(m, dtype=np.int64)
        none_f, none_i = np.empty(0, np.float32), np.empty(0, np.int64)
        weight = none_f if self.edge_weight is None else self.edge_weight
        new_weight = none_f if self.edge_weight is None else np.empty(m, dtype=self.edge_weight.dtype)
        ids = self.edge_ids if len(self.edge_ids) else none_i
        new_ids = np.empty(m, dtype=np.int64) if len(ids) else none_i
        k = rows_first(self.indptr, self.indices.astype(np.int64, copy=False), weight, ids, first,
                       order, indptr, indices, new_weight, new_ids)
        sub = ClusterSubgraph(self.nodes[order], indptr, indices, new_ids if len(ids) else self.edge_ids,
                              None if self.edge_weight is None else new_weight, self.clusters)
        return sub, int(k)
