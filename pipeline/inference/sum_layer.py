"""Layer-wise inference's sum path: one layer of a sum-aggregating model without sampled blocks.

SAGE (mean), GCN (symmetric normalised sum) and the MLP baseline (no neighbors) aggregate a linear
function of their sources' rows, so a chunk of destinations needs only the sum over each CSR row of
s_u x_u (s_u = 1, or GCN's 1/sqrt(d_u + 1)). The block path (layerwise.py) samples the chunk's
full neighborhood, relabels its sources, gathers their rows and multiplies a sparse matrix by them:
about 1.5 us per stored entry on the 2-core machine. Here sum_kernels.py reads each source row
where it lies (the store's memory-mapped features, or the previous layer's array) into the chunk's
accumulator, and the model's own `aggregate_sum` and `finish` turn the sums into the layer's rows:
the same arithmetic (to float tolerance), one random row read per entry.

Memory: the accumulator and the destinations' own rows, (max_rows, in_width) float32 each, within
the chunk plan's rows; the rows read are page cache, released from the process once the chunks
have touched `release_every` bytes of mapped rows and indices (the budget), not after every chunk:
at 10^9 edges a release per chunk had every chunk fault the 4.3 GB feature array's pages in again,
and `perf` put half the layer's time in that page-table work. Hubs are the plan's slices, summed
into one accumulator before one `finish`.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from gstore.memory import ReleaseCounter
from gstore.pipeline.inference import sum_kernels as K
from gstore.pipeline.inference.chunks import ChunkPlan
from gstore.pipeline.inference.protocol import GCN_SUM, NO_NEIGHBORS, SUM, SumAggregating
from gstore.pipeline.inference.result import LayerStats

SUM_MODES = (SUM, GCN_SUM, NO_NEIGHBORS)
_SCALE_ROWS = 1 << 22


def sum_mode(model, layer: int) -> str | None:
    """The sum path's mode for `layer` of `model` (SUM, GCN_SUM, NO_NEIGHBORS), or None when the
    model does not aggregate a sum there (it then takes the block path)."""
    if not isinstance(model, SumAggregating):
        return None
    mode = model.sum_aggregation(layer)
    return mode if mode in SUM_MODES else None


class SumLayers:
    """The sum path of one inference run over the checked CSR (indptr int64 (N+1,), indices (E,))."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, num_nodes: int) -> None:
        self.indptr, self.indices, self.num_nodes = indptr, indices, num_nodes
        self._gcn_scale: np.ndarray | None = None
        self._dummy = np.ones(1, dtype=np.float32)

    def _scale(self, mode: str) -> np.ndarray | None:
        if mode != GCN_SUM:
            return None
        if self._gcn_scale is None:             # float32 (N,), once per run
            out = np.empty(self.num_nodes, dtype=np.float32)
            for start in range(0, self.num_nodes, _SCALE_ROWS):
                K.gcn_source_scales(self.indptr, start, out[start:start + _SCALE_ROWS])
            self._gcn_scale = out
        return self._gcn_scale

    def run(self, layer: int, mode: str, model: SumAggregating, src: np.ndarray, plan: ChunkPlan,
            max_rows: int, device: torch.device, emit: Callable[[int, torch.Tensor], None],
            stats: LayerStats, advance: Callable[[int], None], release: Callable[[], None],
            release_every: int) -> None:
        """Layer `layer` for every chunk of `plan`; `emit(start, rows)` writes each chunk's output.

        src: (N, in_width) float32 or float16 rows of the layer's input (a memmap is fine);
        max_rows: the plan's largest chunk (destination rows); release(): drop the mapped pages
        from the process, called every `release_every` bytes touched and at the end."""
        w_in = int(src.shape[1])
        acc = np.empty((max(1, max_rows), w_in), dtype=np.float32)
        own = np.empty((max(1, max_rows), w_in), dtype=np.float32)
        scale = self._scale(mode)
        half = src.dtype == np.float16
        bits = src.view(np.uint16) if half else src
        touched = ReleaseCounter(release_every)
        entry_bytes = w_in * src.dtype.itemsize + self.indices.dtype.itemsize
        for i in range(len(plan)):
            t = time.perf_counter()
            start, stop = int(plan.starts[i]), int(plan.stops[i])
            lo, hi = int(plan.edge_lo[i]), int(plan.edge_hi[i])
            rows = stop - start
            first = not plan.hub[i] or i == 0 or int(plan.starts[i - 1]) != start
            if first:
                acc[:rows] = 0.0
            if mode != NO_NEIGHBORS and hi > lo:
                self._sum(bits, half, scale, start, stop, lo, hi, acc)
            stats.edges += hi - lo
            if plan.last_slice(i):
                np.copyto(own[:rows], src[start:stop], casting="same_kind")
                degree = torch.from_numpy(np.diff(self.indptr[start:stop + 1]).astype(np.float32)).to(device)
                total = torch.from_numpy(acc[:rows]).to(device)
                h_dst = torch.from_numpy(own[:rows]).to(device)
                out = model.finish(layer, h_dst, model.aggregate_sum(layer, total, degree), degree)
                stats.compute_s += time.perf_counter() - t
                t = time.perf_counter()
                emit(start, out)              # before the buffers are reused: out may view them
                stats.write_s += time.perf_counter() - t
                advance(rows)
            else:
                stats.compute_s += time.perf_counter() - t
            if touched.add((hi - lo) * entry_bytes + rows * w_in * src.dtype.itemsize):
                release()
        release()

    def _sum(self, bits: np.ndarray, half: bool, scale: np.ndarray | None, start: int, stop: int,
             lo: int, hi: int, acc: np.ndarray) -> None:
        use_scale = scale is not None
        s = scale if use_scale else self._dummy
        if half:
            K.neighbor_sum_f16(self.indptr, self.indices, bits, s, use_scale, start, stop, lo, hi, acc)
        else:
            K.neighbor_sum_f32(self.indptr, self.indices, bits, s, use_scale, start, stop, lo, hi, acc)
