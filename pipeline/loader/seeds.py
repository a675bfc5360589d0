"""The seeds stage: which batches an epoch holds, in what order, and each batch's sampling seed.

Shuffling: epoch `e` of a loader with seed `s` permutes the seed nodes with `gstore.seeding.rng(s, e)`
(`default_rng([s, e])`: every (seed, epoch) pair its own stream, so seed 5 / epoch 1 is not seed 6 /
epoch 0), and a run is reproducible from (s, e) alone, which is what lets `load_state_dict` resume
mid-epoch. Each batch's sampler seed is `derive_seed(s, e, batch index)` (`batch_seed`), independent
of which worker thread samples it.

Data-parallel runs (train/distributed.py) wrap a plan in `ShardedPlan`: every rank computes the
same epoch permutation from (s, e), cuts it into the same batches, and takes every W-th batch from
its rank on. `index` stays the batch's position in the whole epoch, so a batch's sampler seed (and
the trainer's torch seed) is the one the one-process run gives that batch.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from gstore.errors import OptionError
from gstore.seeding import derive_seed, rng


def batch_seed(seed: int, epoch: int, index: int) -> int:
    """Sampler seed in [0, 2^63) for batch `index` of `epoch`: `derive_seed(seed, epoch, index)`."""
    return derive_seed(seed, epoch, index)


@dataclass
class WorkItem:
    """One batch to produce. `payload`: int64 seed node ids (neighbor) or cluster ids (cluster)."""

    seq: int          # position in this run's output order
    epoch: int
    index: int        # batch index within the epoch
    payload: np.ndarray
    seed: int         # sampler seed for this batch


class EpochPlan(Protocol):
    num_batches: int

    def batches(self, epoch: int) -> list[np.ndarray]: ...

    def index(self, i: int) -> int:
        """Position in the whole epoch of entry i of `batches` (i itself, unless sharded)."""
        ...


def check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    """`value` as an int in [lo, hi]; OptionError naming `name` for a bool, a non-integer or a value
    out of range (int(2.5) would silently be 2)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise OptionError(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if v < lo or (hi is not None and v > hi):
        where = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise OptionError(f"{name} must be {where}, got {v}")
    return v


def count_batches(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


class SeedPlan:
    """Batches of seed nodes: `ids` (int64, unique dense ids) split into `batch_size` chunks."""

    def __init__(self, ids: np.ndarray, batch_size: int, shuffle: bool, drop_last: bool,
                 seed: int) -> None:
        check_int("batch_size", batch_size, 1)
        self.ids = np.ascontiguousarray(ids, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = int(seed)
        self.num_batches = count_batches(len(self.ids), self.batch_size, drop_last)

    def batches(self, epoch: int) -> list[np.ndarray]:
        ids = self.ids
        if self.shuffle:
            ids = rng(self.seed, epoch).permutation(ids)
        return [ids[i * self.batch_size:(i + 1) * self.batch_size] for i in range(self.num_batches)]

    def index(self, i: int) -> int:
        return i


class ClusterPlan:
    """Batches of cluster ids from a ClusterSampler's `epoch_batches(epoch)` (which shuffles with
    `rng(its seed, epoch)`, the same rule), or clusters in id order when not `shuffle`; `drop_last`
    drops a final batch with fewer than `clusters_per_batch` clusters."""

    def __init__(self, sampler, clusters_per_batch: int, drop_last: bool, shuffle: bool = True) -> None:
        self.sampler = sampler
        self.shuffle = shuffle
        self.clusters_per_batch = int(clusters_per_batch)
        self.drop_last = drop_last
        num_parts = getattr(sampler, "num_parts", None)
        if drop_last and num_parts is not None:
            self.num_batches = int(num_parts) // self.clusters_per_batch
        else:
            self.num_batches = int(sampler.num_batches)

    def batches(self, epoch: int) -> list[np.ndarray]:
        if self.shuffle or getattr(self.sampler, "num_parts", None) is None:
            out = [np.asarray(b, dtype=np.int64) for b in self.sampler.epoch_batches(epoch)]
        else:
            ids = np.arange(int(self.sampler.num_parts), dtype=np.int64)
            q = self.clusters_per_batch
            out = [ids[i:i + q] for i in range(0, len(ids), q)]
        if self.drop_last and out and len(out[-1]) < self.clusters_per_batch:
            out = out[:-1]
        return out[:self.num_batches]

    def index(self, i: int) -> int:
        return i


def shard_counts(num_batches: int, world_size: int, drop_remainder: bool) -> list[int]:
    """Batches of each rank when `num_batches` are dealt round robin to `world_size` ranks.

    drop_remainder (training): every rank gets num_batches // world_size, and the last
    num_batches % world_size batches of the epoch are left out (they are other seeds every epoch,
    as the permutation changes), so every rank makes the same number of optimizer steps and no
    rank waits at an epoch's end for a gradient all-reduce that never comes. Otherwise (evaluation,
    which has no collective per batch) rank r gets every batch r, r + W, ...: all of them."""
    check_int("world_size", world_size, 1)
    if drop_remainder:
        return [num_batches // world_size] * world_size
    return [len(range(r, num_batches, world_size)) for r in range(world_size)]


class _Strided(Sequence):
    """Entries rank, rank + W, ... of one epoch's batches (a list or the lazy ranges of RangePlan)."""

    def __init__(self, inner, rank: int, world_size: int, n: int) -> None:
        self.inner, self.rank, self.world_size, self.n = inner, rank, world_size, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(self.n))]
        if not 0 <= k < self.n:
            raise IndexError(k)
        return self.inner[self.rank + k * self.world_size]


class ShardedPlan:
    """Rank `rank`'s share of `plan` in a run of `world_size` ranks (see shard_counts for which
    batches and how many). Every other attribute (ids, shuffle, drop_last, batch_size) is the
    inner plan's: the loader's config and fingerprints describe the whole epoch."""

    def __init__(self, plan: EpochPlan, rank: int, world_size: int, drop_remainder: bool) -> None:
        self.world_size = check_int("world_size", world_size, 1)
        self.rank = check_int("rank", rank, 0, world_size - 1)
        self.plan = plan
        self.drop_remainder = bool(drop_remainder)
        self.num_batches = shard_counts(int(plan.num_batches), world_size, drop_remainder)[rank]

    def __getattr__(self, name: str):
        if name == "plan":              # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.plan, name)

    def batches(self, epoch: int) -> Sequence:
        return _Strided(self.plan.batches(epoch), self.rank, self.world_size, self.num_batches)

    def index(self, i: int) -> int:
        return self.plan.index(self.rank + i * self.world_size)


class EpochItems(Sequence):
    """The work items of `epoch` from batch `start` on (resume), numbered from `first_seq`, each
    made when asked for: an epoch of 2 x 10^4 batches spent 0.8 s deriving every batch's seed
    (one SeedSequence each) before its first batch could start."""

    def __init__(self, plan: EpochPlan, epoch: int, start: int, seed: int, first_seq: int = 0) -> None:
        self.plan, self.epoch, self.start = plan, int(epoch), int(start)
        self.seed, self.first_seq = int(seed), int(first_seq)
        self._batches = plan.batches(self.epoch)

    def __len__(self) -> int:
        return max(0, len(self._batches) - self.start)

    def where(self, k: int) -> tuple[int, int]:
        """(epoch, batch index in the whole epoch) of item k."""
        return self.epoch, self.plan.index(self.start + k)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(len(self)))]
        n = len(self)
        if k < 0:
            k += n
        if not 0 <= k < n:
            raise IndexError(k)
        index = self.plan.index(self.start + k)
        return WorkItem(seq=self.first_seq + k, epoch=self.epoch, index=index,
                        payload=self._batches[self.start + k],
                        seed=batch_seed(self.seed, self.epoch, index))


def epoch_items(plan: EpochPlan, epoch: int, start: int, seed: int, first_seq: int = 0) -> EpochItems:
    """The work items of `epoch` from batch `start` on (resume), numbered from `first_seq`."""
    return EpochItems(plan, epoch, start, seed, first_seq)
