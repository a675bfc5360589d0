"""1-hop batches for the history methods, from the existing loader and samplers.

Both variants' batches are NeighborSampler batches with ONE hop: in-batch nodes B (the seeds, first
rows), halo H (their in-neighbors outside B), one block (B u H -> B).
- gas: B = the nodes of `clusters_per_batch` clusters of the store's partition, in the cluster
  sampler's epoch order (ClusterPlan: rng(seed, epoch) permutation); fanout -1, so the block holds
  every in-edge of B and GCN/SAGE normalisation is exact. `mask` marks B's train nodes.
- scalable-gcn: B = a shuffled batch of the epoch's seeds (SweepPlan: every train node, plus the
  non-train nodes swept through the batches once every `sweep` epochs), fanout f: a sampled 1-hop.
  `mask` marks B's train nodes (the loss is on them; the others are there to push their histories
  and apply their gradient-store rows).
"""
from __future__ import annotations

import numpy as np

from gstore.errors import OptionError
from gstore.set_kernels import sorted_unique_ids
from gstore.pipeline.loader.loader import StagedLoader
from gstore.pipeline.loader.seeds import ClusterPlan, check_int, count_batches
from gstore.pipeline.loader.state import LoaderConfig, array_fingerprint, sampler_name, store_fingerprint
from gstore.pipeline.sampling.neighbor import NeighborSampler
from gstore.seeding import rng


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


class SweepPlan:
    """The seeds of scalable-gcn epochs: every train node each epoch, and the other nodes swept
    through the batches, each once every `sweep` epochs (0: train nodes only).

    A node's history rows are pushed only when it is a batch node, and its gradient-store rows are
    read back only then; a node never in a batch keeps the rows of the last fill and never passes
    on the gradient its neighbors sent it. Sweep cycle c = epochs [c*sweep, (c+1)*sweep) permutes
    the non-train nodes once (rng(seed, "history-sweep", c)) and epoch c*sweep + p takes chunk p of
    k = ceil(n_other / sweep) of them (the last chunk topped up from the cycle's first nodes, so
    every epoch holds the same number of seeds and no node twice). The epoch's seeds (train nodes,
    then the chunk) are then permuted with rng(seed, epoch) and cut into `batch_size` batches;
    with sweep 0 that is SeedPlan over the train nodes, the same batches.

    Memory: the epoch's seed array, 8 bytes per seed (N at sweep 1: what a gas epoch's cluster
    lists hold too), and the cycle's permutation of the other nodes (8 bytes each).
    """

    def __init__(self, train_ids: np.ndarray, num_nodes: int, sweep: int, batch_size: int,
                 seed: int) -> None:
        check_int("batch_size", batch_size, 1)
        self.sweep = check_int("history sweep", sweep, 0)
        self.train = np.ascontiguousarray(train_ids, dtype=np.int64)
        self.num_nodes = int(num_nodes)
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.shuffle, self.drop_last = True, False
        n_other = self.num_nodes - len(self.train)
        self.per_epoch = 0 if not self.sweep else -(-n_other // self.sweep)
        self.num_batches = count_batches(len(self.train) + self.per_epoch, self.batch_size, False)
        self._others: np.ndarray | None = None
        self._cycle: tuple[int, np.ndarray] | None = None

    def index(self, i: int) -> int:
        return i

    def others(self) -> np.ndarray:
        """int64 ids of the nodes outside the train split, ascending (built on first use)."""
        if self._others is None:
            keep = np.ones(self.num_nodes, dtype=bool)
            keep[self.train] = False
            self._others = np.flatnonzero(keep).astype(np.int64)
        return self._others

    def sweep_chunk(self, epoch: int) -> np.ndarray:
        """The non-train seeds of `epoch` (int64, `per_epoch` of them, distinct)."""
        k = self.per_epoch
        if not k:
            return np.zeros(0, np.int64)
        others = self.others()
        if self.sweep == 1:
            return others
        c, p = divmod(int(epoch), self.sweep)
        if self._cycle is None or self._cycle[0] != c:
            self._cycle = (c, rng(self.seed, "history-sweep", c).permutation(others))
        perm = self._cycle[1]
        chunk = perm[p * k:(p + 1) * k]
        if len(chunk) < k:          # the cycle's last chunk: top up from its first (other) nodes
            chunk = np.concatenate([chunk, perm[:k - len(chunk)]])
        return chunk

    def batches(self, epoch: int) -> list[np.ndarray]:
        ids = self.train if not self.per_epoch else np.concatenate([self.train, self.sweep_chunk(epoch)])
        ids = rng(self.seed, epoch).permutation(ids)
        b = self.batch_size
        return [ids[i * b:(i + 1) * b] for i in range(self.num_batches)]


class HaloSeedLoader(StagedLoader):
    """scalable-gcn batches (see the module docstring); CPU tensors, `mask` = train nodes."""

    kind = "history-scalable-gcn"

    def __init__(self, store, fanout: int, batch_size: int, sweep: int, *, seed: int = 0,
                 prefetch: int = 2, num_workers: int = 1) -> None:
        train = np.asarray(store.split("train"), dtype=np.int64)
        if not len(train):
            raise OptionError("store has no 'train' split (or it is empty)", path=store.path,
                              hint="scalable-gcn's loss is on the train split: ingest one")
        # sorted: split_mask needs it, and the plan's order is fixed (a bitmap pass, not np.unique)
        train = sorted_unique_ids(train, store.num_nodes)
        self.fanout = int(fanout)
        self.batch_size = int(batch_size)
        sampler = NeighborSampler.from_store(store, [self.fanout], seed=seed)
        plan = SweepPlan(np.asarray(store.split("train"), dtype=np.int64), store.num_nodes, sweep,
                         batch_size, seed)
        super().__init__(store, sampler, plan, seed=seed, prefetch=prefetch, device="cpu",
                         pin_memory=False, cache_bytes=0, num_workers=num_workers, features=True,
                         labels=True, mask_ids=train)

    def _make_config(self) -> LoaderConfig:
        seeds = f"train {array_fingerprint(self.gatherer.mask_ids)}, sweep {self.plan.sweep}"
        return LoaderConfig(kind=self.kind, store=store_fingerprint(self.store), seed=self.seed,
                            num_batches=len(self), shuffle=True, drop_last=False, seeds=seeds,
                            sampler=sampler_name(self.sampler), batch_size=self.batch_size,
                            fanouts=(self.fanout,), replace=False)


def scalable_loader(store, fanout: int, batch_size: int, *, seed: int, prefetch: int,
                    num_workers: int, sweep: int = 1) -> HaloSeedLoader:
    """scalable-gcn batches: shuffled seeds (train nodes + the sweep's share of the others, see
    SweepPlan) with `fanout` sampled in-neighbors (one hop)."""
    return HaloSeedLoader(store, fanout, batch_size, sweep, seed=seed, prefetch=prefetch,
                          num_workers=num_workers)
