"""Cluster-GCN batches: the induced subgraph over the union of q random clusters.

`ClusterSampler(indptr, indices, parts)` takes any node -> cluster assignment (int per node, values in
[0, K)). Each epoch permutes the K clusters (`gstore.seeding.rng(seed, epoch)`) and cuts the permutation into
batches of `clusters_per_batch`; a batch keeps EVERY store edge between its nodes, edges between
different chosen clusters included (the multi-cluster variant of Cluster-GCN), optionally with
self-loops and GCN normalisation. Conventions: docs/sampling.md.

Every batch is a few ranges of the cluster order and goes through the range kernel
(`cluster_kernels.induced_ranges`: membership by a per-batch range table, [src; dst] written
directly; see docs/sampling.md). When the clusters are contiguous id ranges (parts non-decreasing,
e.g. a store relabelled by `gstore partition --reorder`) the order is the id order: batches read
contiguous CSR and feature ranges and no index is kept. Otherwise the sampler holds a cluster index,
perm (nodes grouped by cluster) and pos (its inverse), both int (N,): taken from the store's
partition (memory-mapped) or built once by counting sort from `parts` (16 bytes per node of RAM at
most); each scanned edge then costs one random read of pos. Per batch: O(batch nodes + batch edges).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numba
import numpy as np

from gstore.errors import OptionError
from gstore.pipeline.sampling import cluster_kernels as ck
from gstore.pipeline.sampling.inputs import as_u64, check_csr
from gstore.pipeline.sampling.subgraph import ClusterSubgraph
from gstore.seeding import rng

log = logging.getLogger(__name__)


def build_induced(indptr: np.ndarray, indices: np.ndarray, nodes: np.ndarray, *, normalize: bool,
                  self_loops: bool, clusters: np.ndarray | None = None) -> ClusterSubgraph:
    """Induced subgraph over `nodes` (int64 (n,) sorted unique dense ids) as a ClusterSubgraph."""
    sub_indptr, sub_indices, edge_ids = ck.induced_subgraph(indptr, indices, nodes, bool(self_loops))
    weight = ck.gcn_norm(sub_indptr, sub_indices) if normalize else None
    return ClusterSubgraph(nodes=nodes, indptr=sub_indptr, indices=sub_indices, edge_ids=edge_ids,
                           edge_weight=weight,
                           clusters=np.zeros(0, np.int64) if clusters is None else clusters)


@dataclass
class RangeClusterSubgraph(ClusterSubgraph):
    """A ClusterSubgraph built by the range kernel, which wrote the [src; dst] edge index directly:
    `indices` is row 0 of `edge_index_array` (int64 (2, m)), so `edge_index()` is free."""

    edge_index_array: np.ndarray

    def edge_index(self) -> np.ndarray:
        """int64 (2, m): [src; dst] local ids (no copy)."""
        return self.edge_index_array


def build_induced_ranges(indptr: np.ndarray, indices: np.ndarray, starts: np.ndarray,
                         stops: np.ndarray, *, normalize: bool, self_loops: bool,
                         clusters: np.ndarray, perm: np.ndarray | None = None,
                         pos: np.ndarray | None = None,
                         edge_ids: bool = True) -> RangeClusterSubgraph:
    """Induced subgraph over the ranges [starts[k], stops[k]) (int64 (q,), ascending, disjoint) of
    the cluster order: id ranges, or ranges of `perm` (with `pos` its inverse) when given."""
    nodes, sub_indptr, edge_index, eids = ck.induced_ranges(
        indptr, indices, starts, stops, bool(self_loops), bool(edge_ids), ck.RANGE_TABLE_BLOCKS,
        perm, pos, numba.get_num_threads())
    weight = ck.gcn_norm(sub_indptr, edge_index[0]) if normalize else None
    return RangeClusterSubgraph(nodes=nodes, indptr=sub_indptr, indices=edge_index[0],
                                edge_ids=eids, edge_weight=weight, clusters=clusters,
                                edge_index_array=edge_index)


def _store_partition(store):
    """The partition the partition stage attached to a store (attribute or method), or None."""
    part = getattr(store, "partition", None)
    return part() if callable(part) else part


class ClusterSampler:
    """Cluster-GCN sampler over in-edge CSR arrays and a node -> cluster assignment.

    parts: int (N,) cluster of every node, in [0, num_parts) (num_parts defaults to max + 1).
    perm/partptr/pos: optional precomputed cluster index (a store partition's `perm`, `partptr`,
        `pos`); built from `parts` when absent (pos from perm when only it is missing).
        contiguous: cluster c is the id range [partptr[c], partptr[c+1]) (a store reordered by its
        partition); perm and pos are then not read.
    edge_ids: return each edge's position in the store's `indices` (False: an empty array, which
        saves writing 8 bytes per edge; the loader does not use them).
    Batch nodes come in cluster order: ascending cluster id, then ascending node id (sorted for
    contiguous clusters).
    kernel_threads: numba threads one `sample` call uses (None: all). Several loader workers
        sampling concurrently do better with 1 each than with competing thread teams (bench:
        2 workers on 2 cores, 100 -> 127 batches/s on the reordered bench store).
    """

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, parts: np.ndarray | None = None,
                 num_parts: int | None = None, clusters_per_batch: int = 20, normalize: bool = True,
                 self_loops: bool = True, seed: int = 0, *, perm: np.ndarray | None = None,
                 partptr: np.ndarray | None = None, contiguous: bool = False,
                 pos: np.ndarray | None = None, kernel_threads: int | None = None,
                 edge_ids: bool = True) -> None:
        self.indptr, self.indices = check_csr(indptr, indices)
        if kernel_threads is not None and (isinstance(kernel_threads, bool) or not isinstance(
                kernel_threads, (int, np.integer)) or int(kernel_threads) < 1):
            raise OptionError(f"kernel_threads must be >= 1 or None, got {kernel_threads}")
        self.kernel_threads = None if kernel_threads is None else int(kernel_threads)
        if isinstance(clusters_per_batch, bool) or not isinstance(clusters_per_batch, (int, np.integer)) \
                or int(clusters_per_batch) < 1:
            raise OptionError(f"clusters_per_batch must be an integer >= 1, got {clusters_per_batch!r}")
        self.clusters_per_batch = int(clusters_per_batch)
        self.normalize = bool(normalize)
        self.self_loops = bool(self_loops)
        self.seed = int(seed)
        self.edge_ids = bool(edge_ids)
        as_u64(seed)
        if partptr is not None and (perm is not None or contiguous):
            self.num_parts, self.partptr, self.perm = self._check_index(perm, partptr, num_parts,
                                                                        contiguous)
        elif parts is not None:
            self.num_parts, self.partptr, self.perm = self._index_from_parts(parts, num_parts)
        else:
            raise OptionError("ClusterSampler needs `parts` (cluster of every node) or perm+partptr",
                              hint="run `gstore partition` or pass parts=")
        self.pos = None if self.perm is None else self._inverse(pos)
        if self.perm is not None:
            log.info("clusters are scattered over the node ids: every scanned edge costs a random "
                     "read; a store laid out by its partition (`gstore partition --reorder`) reads "
                     "contiguous ranges (about 4x the batches/s on the bench graph)")

    @classmethod
    def from_store(cls, store, parts: np.ndarray | None = None, num_parts: int | None = None,
                   clusters_per_batch: int = 20, normalize: bool = True, self_loops: bool = True,
                   seed: int = 0, kernel_threads: int | None = None,
                   edge_ids: bool = True) -> "ClusterSampler":
        """Sampler over a GraphStore; clusters from `parts` or else the store's partition."""
        perm = partptr = pos = None
        contiguous = False
        if parts is None:
            part = _store_partition(store)
            if part is None:
                raise OptionError("store has no partition and no parts were given",
                                  path=getattr(store, "path", None),
                                  hint="run `gstore partition` or pass parts=")
            parts = part.parts
            num_parts = part.num_parts if num_parts is None else num_parts
            perm, partptr = getattr(part, "perm", None), getattr(part, "partptr", None)
            pos = getattr(part, "pos", None)
            contiguous = bool(getattr(part, "contiguous", False))
        csr = store.csr()   # checks the CSR and the recorded partitions before any kernel runs
        return cls(csr.indptr, csr.indices, parts, num_parts, clusters_per_batch, normalize,
                   self_loops, seed, perm=perm, partptr=partptr, contiguous=contiguous, pos=pos,
                   kernel_threads=kernel_threads, edge_ids=edge_ids)

    @property
    def num_nodes(self) -> int:
        return len(self.indptr) - 1

    def _index_from_parts(self, parts, num_parts):
        parts = np.asarray(parts)
        if parts.shape != (self.num_nodes,) or not np.issubdtype(parts.dtype, np.integer):
            raise OptionError(f"parts must be an integer array of one cluster per node "
                              f"(shape ({self.num_nodes},)), got {parts.dtype} {parts.shape}")
        lo = int(parts.min()) if len(parts) else 0
        hi = int(parts.max()) if len(parts) else -1
        if num_parts is not None and (isinstance(num_parts, bool)
                                      or not isinstance(num_parts, (int, np.integer))):
            raise OptionError(f"num_parts must be an integer, got {num_parts!r}")
        k = hi + 1 if num_parts is None else int(num_parts)
        if lo < 0 or hi >= k or k < 1:
            raise OptionError(f"cluster ids must lie in [0, {k}), got [{lo}, {hi}]",
                              hint="pass num_parts >= max(parts) + 1")
        partptr, perm = ck.cluster_index(parts, np.int64(k))
        if len(parts) < 2 or bool(np.all(parts[1:] >= parts[:-1])):
            perm = None  # clusters are contiguous id ranges: read ranges, keep no permutation
        return k, partptr, perm

    def _check_index(self, perm, partptr, num_parts, contiguous):
        partptr = np.asarray(partptr, dtype=np.int64)
        perm = None if contiguous else np.asarray(perm)
        k = len(partptr) - 1
        perm_len = self.num_nodes if perm is None else len(perm)
        if (num_parts is not None and int(num_parts) != k) or k < 1 or int(partptr[0]) != 0 \
                or int(partptr[-1]) != self.num_nodes or perm_len != self.num_nodes \
                or bool(np.any(np.diff(partptr) < 0)):
            raise OptionError(f"partition index does not fit: {k} clusters, partptr ends at "
                              f"{int(partptr[-1])}, perm has {perm_len} entries, N={self.num_nodes}",
                              hint="re-run `gstore partition`")
        return k, partptr, perm

    # ---- epochs -------------------------------------------------------------------------------
    @property
    def num_batches(self) -> int:
        """Batches per epoch: ceil(num_parts / clusters_per_batch)."""
        return -(-self.num_parts // self.clusters_per_batch)

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """The epoch's batches: a `rng(seed, epoch)` permutation of all clusters, cut into chunks
        of clusters_per_batch (the last may be smaller); each chunk int64 sorted."""
        order = rng(self.seed, epoch).permutation(self.num_parts).astype(np.int64)
        q = self.clusters_per_batch
        return [np.sort(order[i:i + q]) for i in range(0, self.num_parts, q)]

    # ---- batches ------------------------------------------------------------------------------
    def cluster_nodes(self, cluster_ids: np.ndarray) -> np.ndarray:
        """int64 dense ids of the union of `cluster_ids` (int (q,) unique, in range), in the order
        `sample` puts them: ascending cluster id, ascending node id within a cluster."""
        ids = self._checked_ids(cluster_ids)
        starts, stops = self.partptr[ids], self.partptr[ids + 1]
        if self.perm is None:
            return np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in zip(starts, stops)]
                                  or [np.zeros(0, np.int64)])
        return ck.gather_ranges(self.perm, starts, stops)

    def _inverse(self, pos: np.ndarray | None) -> np.ndarray:
        """pos: int (N,) position of every node in perm (given, or computed: one O(N) pass)."""
        if pos is not None:
            pos = np.asarray(pos)
            if pos.shape != (self.num_nodes,) or not np.issubdtype(pos.dtype, np.integer):
                raise OptionError(f"pos must be an integer array of shape ({self.num_nodes},), got "
                                  f"{pos.dtype} {pos.shape}", hint="re-run `gstore partition`")
            return pos
        out = np.empty(self.num_nodes, dtype=np.int32 if self.num_nodes < 2**31 else np.int64)
        ck.inverse_permutation(self.perm, out)
        return out

    def _checked_ids(self, cluster_ids: np.ndarray) -> np.ndarray:
        """int64 (q,) sorted cluster ids, validated (1-D integers, unique, in [0, num_parts))."""
        ids = np.asarray(cluster_ids)
        if ids.ndim != 1 or (len(ids) and not np.issubdtype(ids.dtype, np.integer)):
            raise OptionError(f"cluster_ids must be a 1-D integer array, got {ids.dtype} {ids.shape}")
        ids = np.sort(ids.astype(np.int64))
        if len(ids) and (ids[0] < 0 or ids[-1] >= self.num_parts):
            raise OptionError(f"cluster ids outside [0, {self.num_parts})")
        if len(ids) > 1 and bool(np.any(ids[1:] == ids[:-1])):
            raise OptionError("duplicate cluster ids in the batch", hint="pass unique cluster ids")
        return ids

    def sample(self, cluster_ids: np.ndarray, seed: int = 0) -> ClusterSubgraph:
        """Induced subgraph over the clusters `cluster_ids` (nodes in cluster order, see the class).
        Deterministic: `seed` is accepted for a uniform sampler interface and unused (the epoch's
        cluster order is where randomness enters, `epoch_batches`)."""
        if self.kernel_threads is None:
            return self._sample(cluster_ids)
        before = numba.get_num_threads()  # thread-local: other workers keep their own setting
        numba.set_num_threads(min(self.kernel_threads, numba.config.NUMBA_NUM_THREADS))
        try:
            return self._sample(cluster_ids)
        finally:
            numba.set_num_threads(before)

    def _sample(self, cluster_ids: np.ndarray) -> ClusterSubgraph:
        ids = self._checked_ids(cluster_ids)
        return build_induced_ranges(self.indptr, self.indices, self.partptr[ids],
                                    self.partptr[ids + 1], normalize=self.normalize,
                                    self_loops=self.self_loops, clusters=ids, perm=self.perm,
                                    pos=self.pos, edge_ids=self.edge_ids)
