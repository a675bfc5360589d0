"""GraphSAGE neighbor sampling straight from a (memory-mapped) CSR store.

`NeighborSampler(indptr, indices, fanouts=[15, 10, 5]).sample(seeds, seed)` returns a
`SampledSubgraph`. fanouts[0] is the hop next to the seeds (the model's LAST layer, blocks[-1]);
-1 takes every in-neighbor, 0 none (an empty block). Hop k samples the in-neighbors of all nodes reached within k-1 hops
(seeds included), as PyG's NeighborSampler does, so each block's destinations are a prefix of its
sources. Conventions: docs/sampling.md.

Thread safety: sample() keeps no shared mutable state; the node hash table is per-thread scratch
(threading.local) reused across calls and emptied in O(batch) after each one.
"""
from __future__ import annotations

import threading

import numpy as np

from gstore.errors import OptionError
from gstore.pipeline.sampling import neighbor_kernels as nk
from gstore.pipeline.sampling.inputs import as_u64, check_csr, check_node_ids
from gstore.pipeline.sampling.subgraph import Block, SampledSubgraph


class _NodeTable:
    """Open-addressing hash map dense id -> local id (see neighbor_kernels), owned by one thread."""

    def __init__(self) -> None:
        self.slots = np.full(0, nk.EMPTY, dtype=np.int64)

    def reserve(self, max_entries: int, nodes: np.ndarray) -> None:
        """Make room for `max_entries` at load <= 1/2, re-inserting the current `nodes` if it grows."""
        capacity = 1 << max(4, int(2 * max_entries - 1).bit_length())
        if len(self.slots) >= 2 * capacity:
            return
        self.slots = np.full(2 * capacity, nk.EMPTY, dtype=np.int64)
        if len(nodes):
            nk.insert_seeds(nodes, self.slots)


# Fanouts above this are refused: no node has 2^31 in-edges worth sampling one by one, and with
# replace=True a fanout is an exact draw count, so a typo like 10000000000 would try to allocate
# f x 8 bytes per node instead of failing (and past 2^63 numba raised OverflowError mid-run).
FANOUT_MAX = 2**31 - 1
FANOUTS_HINT = ("one integer per hop from the seeds outwards, e.g. 15,10,5; -1 = all in-neighbors, "
                "0 = no neighbors at that hop")


def check_fanouts(fanouts, option: str = "fanouts", text: str | None = None) -> list[int]:
    """Validated fanouts as Python ints: a non-empty sequence of integers in [-1, FANOUT_MAX].

    0 is allowed and means what it means in PyG: that hop samples no edges, so its block is empty
    and it adds no nodes (docs/sampling.md). `option` / `text` only shape the message: the CLI
    passes ("--fanouts", the text typed) and fields are then numbered from 1, as typed.
    Raises OptionError naming the option and the offending field.
    """
    def field(i: int) -> str:
        return f"{option} {text!r}: field {i + 1}" if text is not None else f"{option}[{i}]"

    if isinstance(fanouts, (str, bytes)) or not hasattr(fanouts, "__iter__"):
        raise OptionError(f"{option} must be a list of integers, got {fanouts!r}", hint=FANOUTS_HINT)
    values = list(fanouts)
    if not values:
        raise OptionError(f"{option} is empty", hint=FANOUTS_HINT)
    out = []
    for i, f in enumerate(values):
        if isinstance(f, (float, np.floating)) and float(f).is_integer():
            f = int(f)  # 15.0 read from a JSON config is the integer 15
        if isinstance(f, (bool, np.bool_)) or not isinstance(f, (int, np.integer)):
            raise OptionError(f"{field(i)} is {f!r}, not an integer", hint=FANOUTS_HINT)
        v = int(f)
        if v < -1:
            raise OptionError(f"{field(i)} is {v}: the only negative fanout is -1 (all in-neighbors)",
                              hint=FANOUTS_HINT)
        if v > FANOUT_MAX:
            raise OptionError(f"{field(i)} is {v}, above the limit {FANOUT_MAX} (2^31-1)",
                              hint="use -1 to take every in-neighbor")
        out.append(v)
    return out


class NeighborSampler:
    """Uniform neighbor sampler (GraphSAGE) over in-edge CSR arrays.

    indptr: int64 (N+1,); indices: int32 or int64 (E,) in-neighbors per row (memmaps are fine).
    fanouts: per hop from the seeds outwards; -1 = all in-neighbors, 0 = none (check_fanouts).
    replace: False samples min(f, degree) distinct edges per node; True exactly f draws (0 if isolated).
    seed: mixed into every batch's seed, so two samplers with different seeds differ.
    cold_pages: a gstore.cold_pages.ColdPages that faults in each hop's CSR rows many at a time
        before the hop samples them, while they are not cached (the loader's; None: no touches).
    """

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, fanouts, replace: bool = False,
                 seed: int = 0, cold_pages=None) -> None:
        self.indptr, self.indices = check_csr(indptr, indices)
        self.cold_pages = cold_pages
        self.fanouts = check_fanouts(fanouts)
        self.replace = bool(replace)
        self.seed = int(seed)
        self._seed_u64 = as_u64(seed)
        self._local = threading.local()

    @classmethod
    def from_store(cls, store, fanouts, replace: bool = False, seed: int = 0,
                   cold_start=None) -> "NeighborSampler":
        """Sampler over an opened GraphStore's memory-mapped CSR (structurally checked first).
        With a loader's `cold_start` (gstore.cold_pages.ColdStart), indices are read through their
        own MADV_RANDOM mapping (a sampled row's fault reads its page, not the 128 KiB around it) and
        each hop's rows are faulted in many at a time first."""
        csr = store.csr()
        if cold_start is None:
            return cls(csr.indptr, csr.indices, fanouts, replace=replace, seed=seed)
        from gstore.cold_pages import ColdPages, random_access

        # MADV_RANDOM even when the page cache could hold the indices: a batch touches ~1.5% of
        # their pages, so read-around reads 128 KiB per sampled row (10^9 chain, cold: first
        # batch 15.5 s with it, 9.3 s without; ColdStart reads the file ahead instead)
        return cls(csr.indptr, random_access(csr.indices), fanouts, replace=replace,
                   seed=seed, cold_pages=ColdPages(cold_start))

    @property
    def num_nodes(self) -> int:
        return len(self.indptr) - 1

    @property
    def num_layers(self) -> int:
        return len(self.fanouts)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_local"]  # per-thread scratch is not shared (nor picklable)
        state["cold_pages"] = None  # its threads stay in this process
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def batch_key(self, seed: int) -> np.uint64:
        """uint64 key of one batch: a hash of (sampler seed, batch seed)."""
        return np.uint64(nk.layer_key(self._seed_u64, as_u64(seed)))  # numba hands back a Python int

    def sample(self, seeds: np.ndarray, seed: int = 0) -> SampledSubgraph:
        """Sample the multi-hop neighborhood of `seeds` (int64 (B,) unique dense ids).

        Deterministic in (sampler seed, `seed`, seeds, fanouts), whatever the thread count.
        Raises OptionError for duplicate or out-of-range seeds.
        """
        seeds = check_node_ids(seeds, self.num_nodes, "seeds")
        # taken off the thread-local slot while in use: if anything fails mid-way, the (dirty) table
        # is simply dropped and the next call starts a clean one
        table = self._local.__dict__.pop("table", None) or _NodeTable()
        table.reserve(len(seeds), seeds[:0])
        dup = nk.insert_seeds(seeds, table.slots)
        if dup >= 0:
            raise OptionError(f"duplicate seed {int(seeds[dup])} in the batch",
                              hint="pass unique seed nodes (np.unique)")
        nodes, hop_sizes, blocks = self._expand(seeds, table, self.batch_key(seed))
        nk.clear_table(nodes, table.slots)
        self._local.table = table
        return SampledSubgraph(nodes=nodes, num_seeds=len(seeds), hop_sizes=hop_sizes,
                               blocks=blocks[::-1])

    def _expand(self, seeds: np.ndarray, table: _NodeTable, key: np.uint64):
        """Hop by hop: sample the in-edges of every node reached so far, then relabel new sources."""
        nodes = seeds
        hop_sizes = [len(seeds)]
        blocks = []
        touched = 0
        for layer, fanout in enumerate(self.fanouts):
            num_dst = len(nodes)
            if self.cold_pages is not None and fanout != 0:
                # the rows of nodes[:touched] were faulted in for an earlier hop
                self.cold_pages.csr_rows(self.indptr, self.indices, nodes[touched:])
                touched = num_dst
            edge_ids, dst, src = nk.sample_layer(self.indptr, self.indices, nodes, np.int64(fanout),
                                                 self.replace, np.uint64(nk.layer_key(key, np.uint64(layer))))
            table.reserve(num_dst + len(src), nodes)
            new_nodes = nk.relabel_sources(src, table.slots, np.int64(num_dst))  # src now local
            nodes = np.concatenate([nodes, new_nodes])
            hop_sizes.append(len(nodes))
            blocks.append(Block(src=src, dst=dst, edge_ids=edge_ids, num_src=len(nodes),
                                num_dst=num_dst))
        return nodes, hop_sizes, blocks
