"""Chunk planning for layer-wise inference: destination ranges bounded by in-edges and rows.

A chunk is a range [start, stop) of destination nodes whose in-edges, sources and output rows fit
one share of the memory budget. Chunks are cut greedily from `indptr`: each chunk takes as many
consecutive destinations as fit both `max_edges` in-edges and `max_rows` rows, found with one
np.searchsorted on the chunk's window of indptr, so planning costs O(chunks x log rows) and never
loops over nodes. A node whose in-degree alone exceeds `max_edges` (a hub) gets a run of slices of
its in-edge list, at most `max_edges` each; inference aggregates the slices separately, merges the
partial aggregates and finishes the node once (pipeline/inference/protocol.py).

`working_set` is the cost model that turns a byte budget and a layer's widths into those two limits.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from gstore.errors import BudgetError
from gstore.memory import format_bytes

# Inputs of this many chunks exist at once: the one being computed, the one waiting in the
# prefetch queue and the one the prefetch thread is building (pipeline/inference/layerwise.py).
CHUNKS_IN_FLIGHT = 3
# Caps that keep a chunk a chunk even under a huge budget: past these sizes torch's kernels gain
# nothing, and smaller chunks let the prefetch thread overlap more of the layer.
MAX_CHUNK_EDGES = 1 << 23
MAX_CHUNK_ROWS = 1 << 20
# sampler outputs (edge ids, dst, src: int64) while a block is built
_SAMPLER_BYTES_PER_EDGE = 24
# node id (int64), the sampler's hash-table slots (two int64 at load <= 1/2, capacity rounded up
# to a power of two: up to 64 B) and the gathered degree (float32) per source row
_BYTES_PER_SOURCE = 8 + 64 + 4
# the block's edge_index (2 x int64) per edge, kept with the chunk until it is computed
_EDGE_INDEX_BYTES = 16
# a model's per-edge temporaries: the gathered message rows, a scaled copy and one more
# (attention weights, a reduction's output), each float32 of the aggregation width
_MESSAGE_COPIES = 3
# per destination row: the aggregate and its merged copy, the layer output and about three
# temporaries of it (pre-activation, normalisation, residual)
_AGGREGATE_COPIES = 2
_OUTPUT_COPIES = 4


@dataclass(frozen=True)
class WorkingSet:
    """Bytes one chunk costs per in-edge and per destination row, and the limits they give.

    bytes_per_edge / bytes_per_row: the cost model's estimate (every in-flight copy included).
    max_edges / max_rows: the largest chunk that fits the budget (half for edges, half for rows).
    """

    bytes_per_edge: int
    bytes_per_row: int
    max_edges: int
    max_rows: int

    def chunk_bytes(self, rows: int, edges: int) -> int:
        """Estimated peak bytes of a chunk of `rows` destinations and `edges` in-edges."""
        return rows * self.bytes_per_row + edges * self.bytes_per_edge

    def to_json(self) -> dict:
        return asdict(self)


def working_set(budget: int, *, in_width: int, in_itemsize: int, out_width: int, out_itemsize: int,
                readout_dim: int = 0, final_dim: int = 0, layer: int = 0) -> WorkingSet:
    """The chunk limits of one layer under `budget` bytes.

    in_width / in_itemsize: the layer's input rows as stored (features or the previous layer);
    rows are upcast to float32 when stored narrower. out_width / out_itemsize: its output rows as
    written. readout_dim: read-out state columns (float32); final_dim: the model's output columns
    when this is the last layer (0 otherwise).

    Every source row may be new (a chunk has at most rows + edges distinct sources), so a source
    row's cost is charged to each edge and each row. Raises BudgetError when one destination with
    one in-edge does not fit.
    """
    src_row = in_width * in_itemsize + (in_width * 4 if in_itemsize != 4 else 0) + _BYTES_PER_SOURCE
    agg_width = max(in_width, out_width)
    per_edge = (CHUNKS_IN_FLIGHT * (src_row + _EDGE_INDEX_BYTES) + _SAMPLER_BYTES_PER_EDGE
                + _MESSAGE_COPIES * 4 * agg_width)
    per_row = (CHUNKS_IN_FLIGHT * src_row + 4 * agg_width * _AGGREGATE_COPIES
               + out_width * (4 * _OUTPUT_COPIES + out_itemsize)
               + 3 * 4 * readout_dim + 2 * 4 * final_dim)
    half = budget // 2
    if per_edge > half or per_row > half:
        need = 2 * max(per_edge, per_row)
        raise BudgetError(f"memory budget {format_bytes(budget)} is too small for layer {layer} "
                          f"(one node with one in-edge needs about {format_bytes(need)} at "
                          f"{in_width} -> {out_width} columns)",
                          hint=f"use --memory-budget {_round_up_mib(need * 16)}MiB or more")
    return WorkingSet(bytes_per_edge=per_edge, bytes_per_row=per_row,
                      max_edges=int(min(MAX_CHUNK_EDGES, half // per_edge)),
                      max_rows=int(min(MAX_CHUNK_ROWS, half // per_row)))


def _round_up_mib(n: int) -> int:
    return max(1, -(-n // (1 << 20)))


@dataclass
class ChunkPlan:
    """Chunks of one layer in node order.

    starts, stops: int64 (C,) destination range [start, stop) of each entry.
    edge_lo, edge_hi: int64 (C,) the entry's in-edges, positions [edge_lo, edge_hi) in `indices`:
        indptr[start]..indptr[stop] for a range chunk, one slice of the hub's row for a hub slice.
    hub: bool (C,) the entry is a slice of a single hub's in-edges (stop == start + 1); the hub's
        slices are consecutive entries, the last one ending at indptr[start + 1].
    """

    starts: np.ndarray
    stops: np.ndarray
    edge_lo: np.ndarray
    edge_hi: np.ndarray
    hub: np.ndarray
    max_edges: int
    max_rows: int

    def __len__(self) -> int:
        return int(len(self.starts))

    @property
    def num_hubs(self) -> int:
        """Distinct hub nodes (each split over two or more slices)."""
        first = np.ones(len(self.starts), dtype=bool)
        first[1:] = self.starts[1:] != self.starts[:-1]
        return int(np.count_nonzero(self.hub & first))

    @property
    def num_hub_slices(self) -> int:
        return int(np.count_nonzero(self.hub))

    def last_slice(self, i: int) -> bool:
        """Entry i ends its node range: a range chunk, or a hub's last slice."""
        return bool(not self.hub[i] or i + 1 == len(self.starts) or self.starts[i + 1] != self.starts[i])


def plan_chunks(indptr: np.ndarray, max_edges: int, max_rows: int) -> ChunkPlan:
    """Cut nodes 0..N-1 into chunks of at most `max_edges` in-edges and `max_rows` rows.

    indptr: int64 (N+1,) CSR row offsets (a memmap is fine: each step reads one window of it).
    Greedy: every chunk is as long as both limits allow, so the plan is the unique one the
    plain per-node loop in tests/reference_layerwise.py produces. Hubs (in-degree > max_edges)
    become ceil(degree / max_edges) slices of one node each. The loop runs once per chunk or hub,
    never per node.
    """
    if max_edges < 1 or max_rows < 1:
        raise ValueError(f"chunk limits must be >= 1, got max_edges={max_edges}, max_rows={max_rows}")
    n = len(indptr) - 1
    ranges: list[tuple[int, int, int, int]] = []     # (start, stop, edge_lo, edge_hi)
    hub_parts: list[tuple[int, np.ndarray, int]] = []  # (position in ranges, slice starts, row end)
    v = 0
    while v < n:
        window = np.asarray(indptr[v:min(n, v + max_rows) + 1], dtype=np.int64)
        base = int(window[0])
        # the last s in the window with indptr[s] - indptr[v] <= max_edges
        stop = v + int(np.searchsorted(window, base + max_edges, side="right")) - 1
        if stop > v:
            ranges.append((v, stop, base, int(window[stop - v])))
            v = stop
            continue
        end = int(window[1])
        hub_parts.append((len(ranges), np.arange(base, end, max_edges, dtype=np.int64), end))
        ranges.append((v, v + 1, base, end))     # placeholder, expanded below
        v += 1
    table = np.array(ranges, dtype=np.int64).reshape(-1, 4)
    hub = np.zeros(len(table), dtype=bool)
    if hub_parts:
        pieces, flags, prev = [], [], 0
        for pos, cuts, end in hub_parts:
            pieces.append(table[prev:pos])
            flags.append(np.zeros(pos - prev, dtype=bool))
            part = np.empty((len(cuts), 4), dtype=np.int64)
            part[:, 0], part[:, 1] = table[pos, 0], table[pos, 1]
            part[:, 2], part[:, 3] = cuts, np.minimum(cuts + max_edges, end)
            pieces.append(part)
            flags.append(np.ones(len(cuts), dtype=bool))
            prev = pos + 1
        pieces.append(table[prev:])
        flags.append(np.zeros(len(table) - prev, dtype=bool))
        table, hub = np.concatenate(pieces), np.concatenate(flags)
    return ChunkPlan(starts=table[:, 0].copy(), stops=table[:, 1].copy(), edge_lo=table[:, 2].copy(),
                     edge_hi=table[:, 3].copy(), hub=hub, max_edges=int(max_edges), max_rows=int(max_rows))
