"""1-hop batches for the history methods, from the existing loader and samplers.

Both variants' batches are NeighborSampler batches with ONE hop: in-batch nodes B (the seeds, first
rows), halo H (their in-neighbors outside B), one block (B u H -> B).
- gas: B = the nodes of `clusters_per_batch` clusters of the store's partition, in the cluster
  sampler's epoch order (ClusterPlan: rng(seed, epoch) permutation); fanout -1, so the block holds
  every in-edge of B and GCN/SAGE normalisation is exact. `mask` marks B's train nodes.
- scalable-gcn: B = a shuffled batch of train seeds (SeedPlan), fanout f: a sampled 1-hop.
"""
from __future__ import annotations

import numpy as np

from gstore.pipeline.loader.loader import NeighborLoader, StagedLoader
from gstore.pipeline.loader.seeds import ClusterPlan
from gstore.pipeline.loader.state import LoaderConfig, array_fingerprint, sampler_name, store_fingerprint
from gstore.pipeline.sampling.neighbor import NeighborSampler


class ClusterNodePlan:
    """The batches of a ClusterPlan as node ids: batch i of epoch e = the nodes of its clusters."""

    def __init__(self, cluster_sampler, clusters_per_batch: int) -> None:
        self.clusters = ClusterPlan(cluster_sampler, clusters_per_batch, drop_last=False)
        self.sampler = cluster_sampler
        self.num_batches = self.clusters.num_batches
        self.shuffle, self.drop_last = True, False

    def batches(self, epoch: int) -> list[np.ndarray]:
        return [self.sampler.cluster_nodes(c) for c in self.clusters.batches(epoch)]

    def index(self, i: int) -> int:
        return i


class HaloClusterLoader(StagedLoader):
    """gas batches (see the module docstring); CPU tensors, `mask` = nodes of `split`."""

    kind = "history-gas"

    def __init__(self, store, cluster_sampler, clusters_per_batch: int, split: str = "train", *,
                 seed: int = 0, prefetch: int = 2, num_workers: int = 1) -> None:
        self.cluster_sampler = cluster_sampler
        self.clusters_per_batch = int(clusters_per_batch)
        sampler = NeighborSampler.from_store(store, [-1], seed=seed)
        plan = ClusterNodePlan(cluster_sampler, clusters_per_batch)
        mask_ids = np.asarray(store.split(split), dtype=np.int64)
        super().__init__(store, sampler, plan, seed=seed, prefetch=prefetch, device="cpu",
                         pin_memory=False, cache_bytes=0, num_workers=num_workers, features=True,
                         labels=True, mask_ids=mask_ids)

    def _make_config(self) -> LoaderConfig:
        s = self.cluster_sampler
        index = [a for a in (getattr(s, "partptr", None), getattr(s, "perm", None)) if a is not None]
        return LoaderConfig(kind=self.kind, store=store_fingerprint(self.store), seed=self.seed,
                            num_batches=len(self), shuffle=True, drop_last=False,
                            seeds=array_fingerprint(self.gatherer.mask_ids), sampler=sampler_name(s),
                            fanouts=(-1,), num_parts=int(s.num_parts),
                            clusters_per_batch=self.clusters_per_batch,
                            clusters=";".join(array_fingerprint(a) for a in index) or "none")


def gas_loader(store, partition, clusters_per_batch: int, *, seed: int, prefetch: int,
               num_workers: int) -> HaloClusterLoader:
    """gas batches over `partition` (a store Partition)."""
    from gstore.pipeline.sampling.cluster import ClusterSampler

    csr = store.csr()
    cs = ClusterSampler(csr.indptr, csr.indices, partition.parts, partition.num_parts, clusters_per_batch,
                        normalize=False, self_loops=False, seed=seed, perm=partition.perm,
                        partptr=partition.partptr, contiguous=partition.contiguous, pos=partition.pos,
                        edge_ids=False)
    return HaloClusterLoader(store, cs, clusters_per_batch, "train", seed=seed, prefetch=prefetch,
                             num_workers=num_workers)


def scalable_loader(store, fanout: int, batch_size: int, *, seed: int, prefetch: int,
                    num_workers: int) -> NeighborLoader:
    """scalable-gcn batches: shuffled train seeds with `fanout` sampled in-neighbors (one hop)."""
    return NeighborLoader(store, [fanout], batch_size, "train", seed=seed, prefetch=prefetch,
                          device="cpu", pin_memory=False, num_workers=num_workers)
