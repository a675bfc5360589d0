"""GraphSAINT-style induced-subgraph samplers on random node sets and on endpoints of random edges.

Both use the search-based induced-subgraph kernel (cluster_kernels.induced_subgraph) and return
ClusterSubgraph (clusters empty); they share ClusterSampler's interface: `num_batches`,
`epoch_batches(epoch)` (what `sample` takes) and `sample(batch, seed)`. GraphSAINT's pre-computed loss/aggregator normalisation is not applied;
`normalize` gives the plain GCN normalisation over the subgraph.
"""
from __future__ import annotations

import numpy as np

from gstore.errors import OptionError
from gstore.pipeline.sampling.cluster import build_induced
from gstore.pipeline.sampling.inputs import as_u64, check_csr, check_node_ids
from gstore.pipeline.sampling.subgraph import ClusterSubgraph
from gstore.seeding import rng
from gstore.set_kernels import counting_groups


def _epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The epoch's stream by the one seeding rule (gstore/seeding.py)."""
    return rng(seed, epoch)


def _positive(name: str, value: int) -> int:
    if int(value) < 1:
        raise OptionError(f"{name} must be >= 1, got {value}")
    return int(value)


class RandomNodeSampler:
    """Each epoch partitions the nodes at random into batches of `batch_size` (PyG RandomNodeLoader);
    a batch is the induced subgraph over its nodes. epoch_batches holds an O(N) permutation."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, batch_size: int,
                 normalize: bool = True, self_loops: bool = True, seed: int = 0) -> None:
        self.indptr, self.indices = check_csr(indptr, indices)
        self.batch_size = _positive("batch_size", batch_size)
        self.normalize, self.self_loops = bool(normalize), bool(self_loops)
        self.seed = int(seed)
        as_u64(seed)

    @classmethod
    def from_store(cls, store, batch_size: int, normalize: bool = True, self_loops: bool = True,
                   seed: int = 0) -> "RandomNodeSampler":
        csr = store.csr()
        return cls(csr.indptr, csr.indices, batch_size, normalize, self_loops, seed)

    @property
    def num_nodes(self) -> int:
        return len(self.indptr) - 1

    @property
    def num_batches(self) -> int:
        return -(-self.num_nodes // self.batch_size)

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """int64 sorted node-id chunks of a `rng(seed, epoch)` permutation of all nodes."""
        n, b = self.num_nodes, self.batch_size
        order = _epoch_rng(self.seed, epoch).permutation(n).astype(np.int64)
        # chunk c holds order[c*b:(c+1)*b]; a counting pass by chunk lists each one ascending
        # (what np.sort of every chunk gives, in O(N) rather than N log b)
        chunk = np.empty(n, dtype=np.int64)
        chunk[order] = np.arange(n, dtype=np.int64) // b
        nb = self.num_batches
        starts = np.empty(nb + 1, dtype=np.int64)
        members = np.empty(n, dtype=np.int64)
        counting_groups(chunk, np.int64(nb), starts, members)
        return [members[starts[c]:starts[c + 1]] for c in range(nb)]

    def sample(self, node_ids: np.ndarray, seed: int = 0) -> ClusterSubgraph:
        """Induced subgraph over `node_ids` (duplicates are merged). `seed` is unused."""
        nodes = np.unique(check_node_ids(node_ids, self.num_nodes, "node_ids"))
        return build_induced(self.indptr, self.indices, nodes, normalize=self.normalize,
                             self_loops=self.self_loops)


class RandomEdgeSampler:
    """GraphSAINT edge sampler: a batch is the induced subgraph over both endpoints of `batch_size`
    edges drawn uniformly with replacement. `num_steps` batches per epoch (default: enough to touch
    about N endpoints, ceil(N / (2 * batch_size)))."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, batch_size: int,
                 num_steps: int | None = None, normalize: bool = True, self_loops: bool = True,
                 seed: int = 0) -> None:
        self.indptr, self.indices = check_csr(indptr, indices)
        self.batch_size = _positive("batch_size", batch_size)
        n = len(self.indptr) - 1
        self.num_steps = _positive("num_steps", num_steps if num_steps is not None
                                   else max(1, -(-n // (2 * self.batch_size))))
        self.normalize, self.self_loops = bool(normalize), bool(self_loops)
        self.seed = int(seed)
        as_u64(seed)

    @classmethod
    def from_store(cls, store, batch_size: int, num_steps: int | None = None, normalize: bool = True,
                   self_loops: bool = True, seed: int = 0) -> "RandomEdgeSampler":
        csr = store.csr()
        return cls(csr.indptr, csr.indices, batch_size, num_steps, normalize, self_loops, seed)

    @property
    def num_edges(self) -> int:
        return len(self.indices)

    @property
    def num_batches(self) -> int:
        return self.num_steps

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """num_steps int64 arrays of batch_size edge positions (into the store's `indices`)."""
        if self.num_edges == 0:
            return [np.zeros(0, np.int64) for _ in range(self.num_steps)]
        rng = _epoch_rng(self.seed, epoch)
        return [rng.integers(0, self.num_edges, self.batch_size, dtype=np.int64)
                for _ in range(self.num_steps)]

    def sample(self, edge_positions: np.ndarray, seed: int = 0) -> ClusterSubgraph:
        """Induced subgraph over the endpoints of `edge_positions`. `seed` is unused."""
        e = np.asarray(edge_positions)
        if e.ndim != 1 or (len(e) and not np.issubdtype(e.dtype, np.integer)):
            raise OptionError(f"edge_positions must be a 1-D integer array, got {e.dtype} {e.shape}")
        e = e.astype(np.int64, copy=False)
        if len(e) and (int(e.min()) < 0 or int(e.max()) >= self.num_edges):
            raise OptionError(f"edge positions outside [0, {self.num_edges})")
        dst = np.searchsorted(self.indptr, e, side="right") - 1  # the row holding each edge
        src = np.asarray(self.indices[e], dtype=np.int64)
        nodes = np.unique(np.concatenate([src, dst]))
        return build_induced(self.indptr, self.indices, nodes, normalize=self.normalize,
                             self_loops=self.self_loops)
