"""Out-of-core layer-wise inference: every node's output, one layer at a time, through disk arrays.

`layerwise_inference(store, model, out_dir, memory_budget=...)` computes, for l = 0..L-1, layer l of
`model` (a LayerwiseModel, pipeline/inference/protocol.py) for every node, chunk by chunk, from the
full in-neighborhoods: layer 0 reads the store's features, layer l > 0 the rows layer l-1 wrote to
a memory-mapped disk array (float32 or float16, the `dtype` option; rows are upcast to float32 for
the model). Layer l-1's array is deleted as soon as layer l is done. The last layer feeds
`model.readout` directly, which writes the result, float32 (N, out_dim), to the zarr v3 array
`out_dir/logits` (gstore/shard_array.py; `LayerwiseResult.open_output()` memory-maps it). With a
read-out state (jumping knowledge, readout_dim > 0) the state rows are a float32 disk array too,
read and rewritten chunk by chunk after each layer.

Chunks (pipeline/inference/chunks.py) are ranges of destinations bounded by in-edges and rows so a
chunk's working set fits the budget; a hub whose in-edges alone exceed a chunk is aggregated in
slices that `model.merge` combines before one `model.finish`. Each chunk's block comes from the
NeighborSampler with fanout -1 (every in-edge) and its source rows from the row gather; a hub
slice's block is the slice of its in-edge list itself (sources in edge order: a source listed
twice is gathered twice, which aggregates the same as one source with two edges; a self-loop
points at the hub's own local id 0, as in a sampled block). A background
thread builds the next chunks (block, rows, degrees) into a ring of reused buffers while the
current one computes.

Memory: the budget bounds what inference allocates (buffers, blocks, the model's temporaries);
pages of the memory-mapped store and layer arrays it reads are page cache, mapped into the process
only while a chunk reads them (released with madvise after each chunk) and reclaimable by the
kernel. `peak_anon_bytes` in the result is the memory the process owned; `peak_rss_bytes` also
counts those mapped file pages.

Every intermediate array lives in the marked scratch directory `out_dir/.layerwise.tmp`
(gstore/scratch.py), removed whether the run succeeds or fails; finished arrays move into out_dir
only at the end, so a failed run leaves out_dir as it was.
"""
from __future__ import annotations

import logging
import os
import queue
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numba
import numpy as np
import torch

from gstore import scratch
from gstore.errors import OptionError, StoreError
from gstore.memory import (DEFAULT_MEMORY_BUDGET, anon_rss_bytes, current_rss_bytes, parse_bytes,
                           peak_rss_bytes)
from gstore.memory import release_pages as _release_pages
from gstore.pipeline.features.gather import gather_features, should_sort
from gstore.pipeline.inference.checks import (check_device, check_dtype, check_model, check_out_dir,
                                              check_store, check_threads, layer_working_set)
from gstore.pipeline.inference.chunks import CHUNKS_IN_FLIGHT, ChunkPlan, plan_chunks
from gstore.pipeline.features.gather_kernels import in_degrees
from gstore.pipeline.inference.protocol import LayerwiseModel
from gstore.pipeline.inference.readout_state import ReadoutState
from gstore.pipeline.inference.ranks import RankGroup, plan_range, rank_nodes
from gstore.pipeline.inference.result import LayerStats, LayerwiseResult
from gstore.pipeline.inference.sum_layer import SumLayers, sum_mode
from gstore.pipeline.loader.batch import LayerBlock
from gstore.pipeline.loader.queues import PipelineControl, StageQueue, StageThread, Stopped
from gstore.pipeline.sampling.neighbor import NeighborSampler
from gstore.progress import NULL_PROGRESS, Progress
from gstore.shard_array import (ArrayRecord, ShardArrayWriter, default_chunk_rows,
                                write_group_metadata)

log = logging.getLogger(__name__)

SCRATCH_NAME = ".layerwise.tmp"
SCRATCH_PURPOSE = "layer-wise inference"
OUTPUT_NAME = "logits"
LAYERS_DIR = "layers"          # kept layer arrays: out_dir/layers/layer_<l>


@dataclass
class _Slot:
    """Reused buffers of one in-flight chunk (first touch of fresh pages is slow: reuse them)."""

    raw: np.ndarray            # (max_src, in_width) rows as stored
    rows: np.ndarray           # (max_src, in_width) float32 (raw itself when stored as float32)
    degree: np.ndarray         # float32 (max_src,)
    edges: np.ndarray          # int64 (2 * max_edges,): [src; dst] of the block


@dataclass
class _ChunkInput:
    index: int                 # entry of the plan
    start: int
    stop: int
    hub: bool
    last_slice: bool
    num_src: int
    num_edges: int
    slot: _Slot


_END = object()


def layerwise_inference(store, model: LayerwiseModel, out_dir: str | Path, *,
                        memory_budget: int | str = DEFAULT_MEMORY_BUDGET, dtype: str = "float32",
                        device: str | torch.device = "cpu", progress: Progress = NULL_PROGRESS,
                        keep_layers: bool = False, output_name: str = OUTPUT_NAME,
                        overwrite: bool = False, prefetch_threads: int | None = None,
                        ranks: RankGroup | None = None, sum_path: bool = True) -> LayerwiseResult:
    """Run `model` over every node of `store` (an opened GraphStore) layer by layer, out of core.

    memory_budget: bytes (or '512MiB') for inference's working set; chunks are sized to it.
    dtype: how intermediate layer rows are stored ("float32" or "float16"); the output is float32.
    device: where the model computes ("cpu", "cuda", "cuda:1"); the model must already be there.
    keep_layers: also keep every layer's rows as out_dir/layers/layer_<l>.
    overwrite: replace an existing out_dir/<output_name> (and layers/) written by an earlier run.
    prefetch_threads: numba threads of the prefetch thread's kernels (sampler, gather); default:
        the cores torch's intra-op pool leaves free, at least 1 (oversubscribed cores make torch's
        OpenMP barriers spin: a SAGE layer ran 7x slower on 2 busy cores with 2 torch threads).
    ranks: the job of a data-parallel run (pipeline/inference/ranks.py): every rank calls this
        with the same arguments and computes its node range; rank 0 publishes the output (the
        other ranks' result has `output` None).
    sum_path: layers the model declares sum-aggregating (SumAggregating: SAGE, GCN, MLP) read
        their sources' rows straight into per-destination sums (pipeline/inference/sum_layer.py);
        False: every layer takes the block path (the tests compare the two).
    Raises OptionError / StoreError / BudgetError (one line each) on bad input.
    """
    t0 = time.perf_counter()
    start_rss = current_rss_bytes()
    budget = parse_bytes(memory_budget)
    dtype = check_dtype(dtype)
    dev = check_device(device, model)
    features = check_store(store)
    widths = check_model(model, int(features.shape[1]))
    threads = check_threads(prefetch_threads)
    out_dir = Path(out_dir)
    targets = [output_name] + ([LAYERS_DIR] if keep_layers else [])
    check_out_dir(out_dir, targets, overwrite)
    for layer, (w_in, w_out) in enumerate(zip(widths, widths[1:])):   # fail before writing anything
        layer_working_set(budget, layer, w_in, w_out, features, dtype, model)
    csr = store.csr()
    group = ranks if ranks is not None and ranks.world_size > 1 else None
    main = group is None or group.rank == 0
    work = out_dir / SCRATCH_NAME
    if main:
        scratch.create(work, SCRATCH_PURPOSE, out_dir)
    if group is not None:
        group.barrier()
    try:
        with torch.no_grad(), _eval_mode(model):
            run = _Run(store, csr, features, model, widths, work, budget, dtype, dev, progress,
                       keep_layers, output_name, threads, group, sum_path)
            record, kept = run.layers()
        if main:
            _publish(work, out_dir, targets, overwrite)
    except OSError as exc:
        scratch.name_path_in(exc, out_dir)
        raise
    finally:
        if main:
            scratch.remove(work)
    result = LayerwiseResult(root=str(out_dir), output=record, num_nodes=store.num_nodes,
                             out_dim=int(model.out_dim), dtype=dtype, device=str(dev),
                             memory_budget=budget, seconds=time.perf_counter() - t0,
                             peak_rss_bytes=peak_rss_bytes(), peak_anon_bytes=run.peak_anon,
                             start_rss_bytes=start_rss, layers=run.stats, kept_layers=kept)
    log.info("layer-wise inference: %d nodes, %d layers in %.1f s, peak RSS %d, peak anon %d",
             result.num_nodes, len(widths) - 1, result.seconds, result.peak_rss_bytes,
             result.peak_anon_bytes)
    return result


@contextmanager
def _eval_mode(model) -> Iterator[None]:
    module = model if isinstance(model, torch.nn.Module) else None
    was_training = module.training if module is not None else False
    if module is not None:
        module.eval()
    try:
        yield
    finally:
        if module is not None:
            module.train(was_training)


def _publish(work: Path, out_dir: Path, targets: list[str], overwrite: bool) -> None:
    """Move the finished arrays from the scratch dir into out_dir; a replaced one goes into the
    scratch dir first (deleted with it), so out_dir never holds a mix of two runs' arrays."""
    for name in targets:
        dest, aside = out_dir / name, work / f"replaced-{name}"
        if overwrite and os.path.lexists(dest):
            os.replace(dest, aside)
        try:
            os.replace(work / name, dest)
        except BaseException:
            if os.path.lexists(aside):
                os.replace(aside, dest)     # the earlier output stays where it was
            raise


# ---- the run ----------------------------------------------------------------------------------
class _Run:
    """State of one inference run: the arrays of the layer being read and written, the stats."""

    def __init__(self, store, csr, features, model, widths, work, budget, dtype, dev, progress,
                 keep_layers, output_name, prefetch_threads: int, group: RankGroup | None = None,
                 sum_path: bool = True) -> None:
        self.store, self.model, self.widths = store, model, widths
        self.group = group
        self.main = group is None or group.rank == 0
        self.indptr, self.indices = csr.indptr, csr.indices
        # the memmap objects behind the CSR (csr() hands out the checked arrays themselves)
        self._maps = [store.indptr, store.indices]
        self.features, self.work, self.budget = features, work, budget
        self.dtype, self.dev, self.progress = dtype, dev, progress
        self.keep_layers, self.output_name = keep_layers, output_name
        self.prefetch_threads = prefetch_threads
        self.num_nodes = int(store.num_nodes)
        # the destination rows this process computes: all, or its rank's range
        self.lo, self.hi = (0, self.num_nodes) if group is None else rank_nodes(
            self.indptr, group.rank, group.world_size)
        self.sampler = NeighborSampler(self.indptr, self.indices, [-1])
        self.sums = SumLayers(self.indptr, self.indices, self.num_nodes) if sum_path else None
        self.stats: list[LayerStats] = []
        self.peak_anon = anon_rss_bytes()
        self.readout_dim = int(model.readout_dim)
        self.state = ReadoutState(work / "readout_state", self.num_nodes, self.readout_dim)

    def layers(self) -> tuple[ArrayRecord, list[ArrayRecord]]:
        """Every layer in turn; returns the output's record and the kept layers' records."""
        L = len(self.widths) - 1
        src = self.features
        prev_dir: Path | None = None
        kept: list[ArrayRecord] = []
        if self.keep_layers and self.main:
            write_group_metadata(self.work / LAYERS_DIR)
        if self.readout_dim and L > 1 and self.main:
            self.state.create()
        output = self._writer(self.output_name, int(self.model.out_dim), "float32")
        try:
            for layer in range(L):
                last = layer == L - 1
                writer = None
                if not last or self.keep_layers:
                    writer = self._writer(f"{LAYERS_DIR}/layer_{layer}", self.widths[layer + 1], self.dtype)
                try:
                    self._layer(layer, src, writer, output if last else None)
                    if self.group is not None:
                        self.group.barrier()    # every range of the layer is written
                    if writer is not None and self.keep_layers and self.main:
                        kept.append(writer.finish())
                finally:
                    if writer is not None:
                        writer.abort()
                if prev_dir is not None and not self.keep_layers:
                    src = None
                    # the layer array lives in this run's marked scratch dir: delete only while
                    # the marker still says it is ours
                    if scratch.owned_by_me(self.work):
                        shutil.rmtree(prev_dir)
                if writer is not None:
                    prev_dir = writer.array_dir
                    src = (np.memmap(writer.path, dtype=self.dtype, mode="r",
                                     shape=(self.num_nodes, self.widths[layer + 1]))
                           if self.num_nodes else np.zeros((0, self.widths[layer + 1]), self.dtype))
            record = output.finish() if self.main else None
        finally:
            output.abort()
        return record, kept

    def _writer(self, name: str, width: int, dtype: str) -> ShardArrayWriter:
        shape = (self.num_nodes, width)
        # a small graph's array is one chunk of its own size, not a 4 MiB (sparse) default chunk
        rows = max(1, min(self.num_nodes, default_chunk_rows(shape, dtype)))
        if self.group is None:
            return ShardArrayWriter(self.work, name, shape, dtype, chunk_rows=rows)
        # rank 0 makes the file, then the others open it: nobody writes rows before all have
        w = ShardArrayWriter(self.work, name, shape, dtype, chunk_rows=rows) if self.main else None
        self.group.barrier()
        if w is None:
            w = ShardArrayWriter(self.work, name, shape, dtype, chunk_rows=rows)
        self.group.barrier()
        w.external_writes()
        return w

    # one layer: a prefetch thread builds chunk inputs, this thread computes and writes them
    def _layer(self, layer: int, src: np.ndarray, writer: ShardArrayWriter | None,
               output: ShardArrayWriter | None) -> None:
        t0 = time.perf_counter()
        w_in, w_out = self.widths[layer], self.widths[layer + 1]
        ws = layer_working_set(self.budget, layer, w_in, w_out, self.features, self.dtype, self.model)
        plan = (plan_chunks(self.indptr, ws.max_edges, ws.max_rows) if self.group is None
                else plan_range(self.indptr, self.lo, self.hi, ws.max_edges, ws.max_rows))
        log.debug("layer %d: %d chunks (max %d edges, %d rows), %d hubs", layer, len(plan),
                  ws.max_edges, ws.max_rows, plan.num_hubs)
        mode = sum_mode(self.model, layer) if self.sums is not None else None
        if mode is not None:
            self._sum_layer(layer, mode, src, plan, ws.max_rows, ws.max_edges, writer, output, t0)
            return
        control = PipelineControl()
        free = StageQueue(CHUNKS_IN_FLIGHT, control)
        ready = StageQueue(1, control)
        max_src = ws.max_rows + ws.max_edges
        for _ in range(min(CHUNKS_IN_FLIGHT, max(1, len(plan)))):
            raw = np.empty((max_src, w_in), dtype=src.dtype)
            rows = raw if src.dtype == np.float32 else np.empty((max_src, w_in), dtype=np.float32)
            free.put(_Slot(raw, rows, np.empty(max_src, dtype=np.float32),
                           np.empty(2 * ws.max_edges, dtype=np.int64)))
        sort = should_sort(src)

        def produce() -> None:
            # numba's thread count is per thread: the prefetch kernels take the cores torch leaves
            numba.set_num_threads(self.prefetch_threads)
            for i in range(len(plan)):
                ready.put(self._build(plan, i, free.get(), src, sort))
                _release_pages(src)
                for m in self._maps:
                    _release_pages(m)
            ready.put(_END)

        thread = StageThread(f"inference-prefetch-{layer}", produce, control)
        thread.start()
        stats = LayerStats(layer=layer, in_width=w_in, out_width=w_out, seconds=0.0, chunks=len(plan),
                           hubs=plan.num_hubs, hub_slices=plan.num_hub_slices, edges=0,
                           max_edges=ws.max_edges, max_rows=ws.max_rows, wait_s=0.0, compute_s=0.0,
                           write_s=0.0)
        try:
            with self.progress.phase(f"inference layer {layer + 1}/{len(self.widths) - 1}",
                                     total=self.hi - self.lo, unit="node") as bar:
                pending = None       # a hub's merged aggregate while its slices arrive
                while True:
                    t = time.perf_counter()
                    item = self._next(ready, control)
                    stats.wait_s += time.perf_counter() - t
                    if item is _END:
                        break
                    t = time.perf_counter()
                    out, pending = self._compute(layer, item, pending)
                    stats.compute_s += time.perf_counter() - t
                    stats.edges += item.num_edges
                    if out is not None:
                        t = time.perf_counter()
                        self._write(layer, item.start, out, writer, output)
                        stats.write_s += time.perf_counter() - t
                        bar.advance(item.stop - item.start)
                    # only now: a model's output may be a view of the slot's rows
                    free.put(item.slot)
                    self.peak_anon = max(self.peak_anon, anon_rss_bytes())
        except Stopped:
            # the prefetch thread failed while this loop was handing a slot back: raise its error
            if control.failure is not None:
                raise control.failure.exc from None
            raise
        finally:
            control.stop.set()
            thread.join()
            ready.drain()
        stats.seconds = time.perf_counter() - t0
        self.stats.append(stats)
        log.info("layer %d: %d nodes, %d edges, %d chunks in %.2f s (waited %.2f s on reads)", layer,
                 self.hi - self.lo, stats.edges, stats.chunks, stats.seconds, stats.wait_s)

    def _sum_layer(self, layer: int, mode: str, src: np.ndarray, plan: ChunkPlan, max_rows: int,
                   max_edges: int, writer: ShardArrayWriter | None, output: ShardArrayWriter | None, t0: float) -> None:
        stats = LayerStats(layer=layer, in_width=self.widths[layer], out_width=self.widths[layer + 1],
                           seconds=0.0, chunks=len(plan), hubs=plan.num_hubs,
                           hub_slices=plan.num_hub_slices, edges=0, max_edges=max_edges,
                           max_rows=max_rows, wait_s=0.0, compute_s=0.0, write_s=0.0, path="sum")

        def emit(start: int, out: torch.Tensor) -> None:
            self._write(layer, start, self._checked(layer, out, len(out)), writer, output)
            self.peak_anon = max(self.peak_anon, anon_rss_bytes())

        def release() -> None:
            _release_pages(src)
            for m in self._maps:
                _release_pages(m)

        with self.progress.phase(f"inference layer {layer + 1}/{len(self.widths) - 1}",
                                 total=self.hi - self.lo, unit="node") as bar:
            self.sums.run(layer, mode, self.model, src, plan, max_rows, self.dev, emit, stats,
                          bar.advance, release, release_every=self.budget)
        stats.seconds = time.perf_counter() - t0
        self.stats.append(stats)
        log.info("layer %d (sum path): %d nodes, %d edges, %d chunks in %.2f s", layer,
                 self.hi - self.lo, stats.edges, stats.chunks, stats.seconds)

    @staticmethod
    def _next(ready: StageQueue, control: PipelineControl):
        """The next chunk input; a failure of the prefetch thread is raised here, as it was."""
        while True:
            if control.failure is not None:
                raise control.failure.exc
            try:
                return ready.poll()
            except queue.Empty:
                continue

    def _build(self, plan: ChunkPlan, i: int, slot: _Slot, src: np.ndarray, sort: bool) -> _ChunkInput:
        """Block, source rows (float32) and source degrees of plan entry i, into `slot`."""
        start, stop = int(plan.starts[i]), int(plan.stops[i])
        lo, hi = int(plan.edge_lo[i]), int(plan.edge_hi[i])
        e = hi - lo
        if plan.hub[i]:
            # one hub's slice of in-edges: the hub (local 0) and its sources in edge order; a
            # self-loop's source is local 0 itself, as the sampler labels it (models such as GAT
            # recognise self-loops by src == dst)
            nodes = np.empty(e + 1, dtype=np.int64)
            nodes[0] = start
            nodes[1:] = self.indices[lo:hi]
            edge_index = slot.edges[:2 * e].reshape(2, e)
            edge_index[0] = np.arange(1, e + 1, dtype=np.int64)
            edge_index[0][nodes[1:] == start] = 0
            edge_index[1] = 0
        else:
            sub = self.sampler.sample(np.arange(start, stop, dtype=np.int64))
            block = sub.blocks[0]
            if block.num_edges != e:
                raise StoreError(f"nodes [{start}, {stop}) have {block.num_edges} in-edges in the sampled "
                                 f"block, {e} by indptr", path=self.store.path,
                                 hint="the store changed during inference; run `gstore verify` on it")
            nodes = sub.nodes
            edge_index = slot.edges[:2 * e].reshape(2, e)
            edge_index[0] = block.src
            edge_index[1] = block.dst
        n = len(nodes)
        gather_features(src, nodes, slot.raw, sort=sort)
        if slot.rows is not slot.raw:
            np.copyto(slot.rows[:n], slot.raw[:n])
        in_degrees(self.indptr, nodes, slot.degree)
        return _ChunkInput(index=i, start=start, stop=stop, hub=bool(plan.hub[i]),
                           last_slice=plan.last_slice(i), num_src=n, num_edges=e, slot=slot)

    def _compute(self, layer: int, item: _ChunkInput, pending):
        """The layer's rows for the chunk's destinations (None while a hub's slices arrive)."""
        model, dev = self.model, self.dev
        n, e = item.num_src, item.num_edges
        h = torch.from_numpy(item.slot.rows[:n]).to(dev)
        degree = torch.from_numpy(item.slot.degree[:n]).to(dev)
        block = LayerBlock(torch.from_numpy(item.slot.edges[:2 * e].reshape(2, e)).to(dev), n,
                           item.stop - item.start)
        if not item.hub:
            return self._checked(layer, model.forward_layer(layer, h, block, degree), block.num_dst), None
        agg = model.aggregate(layer, h, block, degree)
        pending = agg if pending is None else model.merge(layer, pending, agg)
        if not item.last_slice:
            return None, pending
        # the hub's own row is local 0 of every slice
        out = model.finish(layer, h[:1], pending, degree[:1])
        return self._checked(layer, out, 1), None

    def _checked(self, layer: int, out: torch.Tensor, rows: int) -> np.ndarray:
        want = (rows, self.widths[layer + 1])
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != want:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise OptionError(f"model layer {layer} returned rows of shape {shape}, expected {want} "
                              f"(layer_dim({layer}) = {want[1]})", hint="fix the model's layer_dim")
        return out

    def _write(self, layer: int, start: int, out: torch.Tensor, writer: ShardArrayWriter | None,
               output: ShardArrayWriter | None) -> None:
        """Write the layer's rows [start, start + len(out)), fold them into the read-out state, and
        on the last layer write the model's output rows."""
        model = self.model
        rows = len(out)
        if writer is not None:
            writer.write_rows(start, out.detach().to("cpu", torch.float32).numpy())
        state = None
        if self.readout_dim:
            prev = self.state.read(start, rows, self.dev) if layer > 0 else None
            state = model.readout_step(layer, out, prev)
            if not isinstance(state, torch.Tensor) or tuple(state.shape) != (rows, self.readout_dim):
                raise OptionError(f"model readout_step({layer}) returned {_shape(state)}, expected "
                                  f"({rows}, {self.readout_dim}) (readout_dim)")
            if output is None:
                self.state.write(start, state)
        if output is not None:
            y = model.readout(state, out)
            if not isinstance(y, torch.Tensor) or tuple(y.shape) != (rows, int(model.out_dim)):
                raise OptionError(f"model readout returned {_shape(y)}, expected ({rows}, {model.out_dim}) "
                                  "(out_dim)")
            output.write_rows(start, y.detach().to("cpu", torch.float32).numpy())


def _shape(x) -> str:
    return str(tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__
