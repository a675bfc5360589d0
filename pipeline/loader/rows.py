"""Row batches: seed rows of a split, with x read from several memory-mapped (N, F_i) arrays side by side.

    loader = RowLoader(store, [hop0, hop1, hop2], batch_size=1024, split="train",
                       names=["features", "hop1", "hop2"])
    for batch in loader:             # Batch(kind="rows"): x (B, F_0 + F_1 + F_2), y, nodes
        ...

What SGC / SIGN train on (train/row_models.py): the graph is already folded into the precomputed
arrays (pipeline/propagation), so a batch is a plain row gather, no sampling. The loader is the
StagedLoader of NeighborLoader / ClusterLoader (threads, bounded queues, pinned staging, device
copy, resume state) with a sampler-free sample stage (`RowSelection`: a batch's nodes are its seed
ids) and a gather stage that writes every array's rows into its column block of one reused buffer
(`RowGatherer`; pageable buffers from pin.HostBufferPool, or one pinned Staging per batch). So
shuffling, batch order, resume and the seeding rule are NeighborLoader's, and a state saved by a
loader over other arrays (other hops) is refused by `load_state_dict`, naming `arrays`.

`split=None` is a pass over every node in id order (predictions): batches are id ranges
(`RangePlan`), gathered as contiguous slices (sequential reads), and the schedule holds one `range`
per batch, never an N-sized id array.

dtype: the buffer is float16 when every array is float16 (upcast to float32 on the device, as the
feature batches are), else float32 (float16 arrays are converted while copied in).
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gstore.errors import OptionError
from gstore.memory import ReleaseCounter, release_pages
from gstore.pipeline.features.gather import check_ids, gather_features, gather_labels, should_sort
from gstore.pipeline.loader.gather_stage import GatheredItem, Gatherer
from gstore.pipeline.loader.loader import StagedLoader, _seed_ids
from gstore.pipeline.loader.pin import HostBufferPool
from gstore.pipeline.loader.queues import PipelineControl
from gstore.pipeline.loader.sample_stage import SampledItem
from gstore.pipeline.loader.seeds import SeedPlan, check_int, count_batches
from gstore.pipeline.loader.staging import PINNED_BYTES_DEFAULT, Staging
from gstore.pipeline.loader.state import LoaderConfig, array_fingerprint, sampler_name, store_fingerprint

ROW_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))
# after this many bytes read, the arrays' mapped pages are unmapped from the process (they stay in
# the page cache): a pass over arrays larger than RAM then does not grow RSS
RELEASE_EVERY_BYTES = 256 << 20


@dataclass
class RowSubgraph:
    """A row batch as the sample stage hands it on: its node ids and no graph.

    nodes: int64 (n,) dense ids (all of them seeds); span: the same ids as a `range` when they are
    consecutive (an all-nodes pass), so the gather reads slices.
    """

    nodes: np.ndarray
    span: range | None = None
    batch_kind = "rows"           # to_device builds Batch(kind="rows")
    num_edges = 0

    @property
    def num_nodes(self) -> int:
        return int(len(self.nodes))

    @property
    def num_seeds(self) -> int:
        return int(len(self.nodes))


class RowSelection:
    """The sampler-free sample stage: a batch's payload (seed ids, or a range of ids) is its nodes."""

    def sample(self, payload, seed: int) -> RowSubgraph:
        if isinstance(payload, range):
            return RowSubgraph(np.arange(payload.start, payload.stop, dtype=np.int64), payload)
        return RowSubgraph(np.array(payload, dtype=np.int64))   # its own: a batch may keep it (torch tensor)


class _Ranges(Sequence):
    """Batch i of an all-nodes pass: range(i * batch_size, min(N, (i + 1) * batch_size))."""

    def __init__(self, num_nodes: int, batch_size: int, num_batches: int) -> None:
        self.n, self.b, self.k = num_nodes, batch_size, num_batches

    def __len__(self) -> int:
        return self.k

    def __getitem__(self, i: int) -> range:
        if not 0 <= i < self.k:
            raise IndexError(i)
        return range(i * self.b, min(self.n, (i + 1) * self.b))


class RangePlan:
    """Every node in id order, `batch_size` per batch (an EpochPlan: seeds.epoch_items reads it)."""

    shuffle = False
    drop_last = False

    def __init__(self, num_nodes: int, batch_size: int) -> None:
        self.num_nodes = check_int("num_nodes", num_nodes, 0)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.num_batches = count_batches(self.num_nodes, self.batch_size, False)

    def batches(self, epoch: int) -> _Ranges:
        return _Ranges(self.num_nodes, self.batch_size, self.num_batches)

    def index(self, i: int) -> int:
        return i


def check_row_arrays(store, arrays: list, names: list[str] | None) -> tuple[list[np.ndarray], list[str]]:
    """The arrays (each (num_nodes, F_i) float32/float16, 2-d) and one name per array; OptionError
    naming the array otherwise."""
    if not isinstance(arrays, (list, tuple)) or not arrays:
        raise OptionError("row batches need a non-empty list of (N, F) arrays")
    if names is None:
        names = [f"array{i}" for i in range(len(arrays))]
    if len(names) != len(arrays):
        raise OptionError(f"{len(names)} names for {len(arrays)} row arrays")
    n = int(store.num_nodes)
    out = []
    for name, a in zip(names, arrays):
        if not isinstance(a, np.ndarray):
            a = np.asarray(a)
        if a.ndim != 2 or a.shape[0] != n or a.shape[1] < 1:
            raise OptionError(f"row array {name} has shape {a.shape}, expected ({n}, F) (one row per node)")
        if a.dtype not in ROW_DTYPES:
            raise OptionError(f"row array {name} is {a.dtype}", hint="use float32 or float16 arrays")
        out.append(a)
    return out, [str(x) for x in names]


class RowGatherer(Gatherer):
    """The gather stage of row batches: labels as for any batch, x = the arrays' rows side by side.

    Every array's rows go straight into their column block x[:, a:b] of the batch buffer (the row
    gather kernels take any row stride); a float16 array under a float32 buffer goes through a
    pooled float16 buffer of its own width and is converted by the copy.
    """

    def __init__(self, base: Gatherer, arrays: list[np.ndarray], pool: HostBufferPool | None,
                 sort: bool) -> None:
        super().__init__(base.source, pool, base.with_labels, None, features=False, budget=base.budget,
                         upcast=base.upcast, degree=False)
        self.arrays = arrays
        self.with_features = True
        widths = [int(a.shape[1]) for a in arrays]
        self.bounds = list(zip(np.cumsum([0] + widths[:-1]).tolist(), np.cumsum(widths).tolist()))
        self.width = int(sum(widths))
        self.dtype = row_dtype(arrays)
        self.sort = sort
        self.num_nodes = int(base.source.num_nodes)
        self._casts = {i: HostBufferPool(widths[i], a.dtype, max_buffers=4)
                       for i, a in enumerate(arrays) if a.dtype != self.dtype}
        self._release = ReleaseCounter(RELEASE_EVERY_BYTES)

    def fill(self, nodes: np.ndarray, span: range | None, out: np.ndarray) -> int:
        """Write the rows of `nodes` (int64 (n,), or the range `span`) of every array into their
        column blocks of out (n, width); returns the bytes read."""
        n = len(nodes)
        read = 0
        for i, (a, (lo, hi)) in enumerate(zip(self.arrays, self.bounds)):
            dst = out[:n, lo:hi]
            if span is not None:
                np.copyto(dst, a[span.start:span.stop])    # sequential, converts float16 on the way
            elif i in self._casts:
                tmp = self._casts[i].acquire(n)
                np.copyto(dst, gather_features(a, nodes, tmp, sort=self.sort).rows)
            else:
                gather_features(a, nodes, dst, sort=self.sort)
            read += n * (hi - lo) * a.dtype.itemsize
        if self._release.add(read):      # another thread reading meanwhile just faults its pages in again
            for a in self.arrays:
                release_pages(a)
        return read

    def gather(self, s: SampledItem, control: PipelineControl | None = None) -> GatheredItem:
        t0 = time.perf_counter()
        sub = s.subgraph
        nodes = sub.nodes if sub.span is not None else check_ids(sub.nodes, self.num_nodes)
        st = buffer = None
        if self.budget is not None:
            st = Staging(self.staging_specs(sub), self.budget, s.item.seq, control)
            np.copyto(st.array("nodes"), nodes)
            x = st.array("x")
            y = gather_labels(self.source.labels, nodes, st.array("y")) if self.with_labels else None
        else:
            buffer = self.pool.acquire(len(nodes))
            x = buffer[:len(nodes)]
            y = gather_labels(self.source.labels, nodes) if self.with_labels else None
        self.fill(nodes, sub.span, x)
        return GatheredItem(s.item, sub, x, buffer, y, None, 0, s.sample_s, time.perf_counter() - t0,
                            staging=st)

    def staging_specs(self, sub) -> list[tuple[str, np.dtype, tuple[int, ...]]]:
        n = len(sub.nodes)
        specs = [("nodes", np.dtype(np.int64), (n,)), ("x", self.dtype, (n, self.width))]
        if self.upcast and self.dtype != np.float32:
            specs.append(("x32", np.dtype(np.float32), (n, self.width)))
        if self.with_labels:
            specs.append(("y", self.source.labels.dtype, (n,)))
        return specs


def row_dtype(arrays: list[np.ndarray]) -> np.dtype:
    """float16 when every array is float16, else float32."""
    return np.dtype(np.float16) if all(a.dtype == np.float16 for a in arrays) else np.dtype(np.float32)


class RowLoader(StagedLoader):
    """Batches of `batch_size` seed rows of `split` (a split name, int64 seed ids, or None for
    every node in id order) with x = the rows of `arrays` side by side, float32 (B, sum F_i), y and
    nodes; no blocks (`Batch.layer_blocks(0)` is []).

    names: one per array, recorded in the loader's config (with shape and dtype) so a resume over
    other arrays is refused. Shuffling, batch seeds and resume follow NeighborLoader (seeds.py).
    """

    kind = "rows"

    def __init__(self, store, arrays: list, batch_size: int, split="train", *, names: list[str] | None = None,
                 shuffle: bool = True, drop_last: bool = False, seed: int = 0, prefetch: int = 4,
                 device="cpu", pin_memory: bool | None = None, num_workers: int = 1, labels: bool = True,
                 sort_ids: bool | None = None, pinned_bytes: int = PINNED_BYTES_DEFAULT) -> None:
        arrays, names = check_row_arrays(store, arrays, names)
        self.arrays = arrays
        self.names = [f"{nm} ({a.shape[0]}x{a.shape[1]} {a.dtype})" for nm, a in zip(names, arrays)]
        self.batch_size = check_int("batch_size", batch_size, 1)
        if split is None:
            if shuffle or drop_last:
                raise OptionError("a pass over every node (split=None) is in id order and complete",
                                  hint="pass shuffle=False, drop_last=False")
            plan = RangePlan(store.num_nodes, batch_size)
        else:
            plan = SeedPlan(_seed_ids(store, split), batch_size, shuffle, drop_last, seed)
        super().__init__(store, RowSelection(), plan, seed=seed, prefetch=prefetch, device=device,
                         pin_memory=pin_memory, cache_bytes=0, num_workers=num_workers, features=False,
                         labels=labels, mask_ids=None, sort_ids=sort_ids, pinned_bytes=pinned_bytes)
        # the feature pool and gatherer StagedLoader made are for the store's features: rows get
        # their own (same buffer rules, the width of all arrays)
        width = sum(int(a.shape[1]) for a in arrays)
        self.pool = None if self.pin_memory else HostBufferPool(
            width, row_dtype(arrays), max_buffers=self.prefetch + 2 * self.num_workers + 2)
        sort = any(should_sort(a) for a in arrays) if sort_ids is None else bool(sort_ids)
        self.gatherer = RowGatherer(self.gatherer, arrays, self.pool, sort)

    @property
    def width(self) -> int:
        return self.gatherer.width

    def _make_config(self) -> LoaderConfig:
        ids = getattr(self.plan, "ids", None)
        seeds = array_fingerprint(ids) if ids is not None else f"all {self.store.num_nodes} nodes"
        return LoaderConfig(kind=self.kind, store=store_fingerprint(self.store), seed=self.seed,
                            num_batches=len(self), shuffle=bool(self.plan.shuffle),
                            drop_last=bool(self.plan.drop_last), seeds=seeds,
                            sampler=sampler_name(self.sampler), batch_size=self.batch_size,
                            arrays=tuple(self.names))
