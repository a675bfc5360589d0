"""Memory plan of one propagation hop: panels of input rows and blocks of output rows under a budget.

What a hop holds in memory (anonymous, owned by the process):
    scales        float32 (N,)                   the degree scale of every node (computed once)
    panels        buffers x panel_rows x F x 4   source rows of hop k-1, float32 (+ F x 2 per row
                                                 for the raw rows when hop k-1 is float16)
    block         max_rows x (F x 4 + 8)         the float32 accumulator and the row cursors
                  + max_rows x F x 2             the float16 copy of a block being written
and, mapped from the store, the indices (and weights) of one block (max_edges x 4..12 bytes),
released after each block.

If hop k-1 fits in half of what the scales leave, it is one panel read once per hop (the common
case: time = one pass over the CSR plus the compute). Otherwise the input is cut into panels of
a sixth of that each, three in rotation so the reader thread fills one while the kernel uses
another, and every block sweeps all panels: the input is read once per block, so blocks take as
many rows as the rest allows (fewer blocks, fewer re-reads).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from gstore.errors import BudgetError
from gstore.memory import format_bytes

# caps that keep a block a block under a huge budget: larger ones gain nothing and make the first
# touch of the accumulator (about 0.5 GB/s) a visible pause
MAX_BLOCK_ROWS = 1 << 20
MAX_BLOCK_EDGES = 1 << 26
# what the Python side of a hop allocates beside the planned buffers (plans, small temporaries)
_SLACK_BYTES = 1 << 20


@dataclass(frozen=True)
class HopPlan:
    """panel_rows: source rows per panel (= N: one panel, read once); buffers: panel buffers (1, or
    3 for the reader thread's rotation, panels.py); max_rows / max_edges: a block's destination rows and in-edges (hubs are split in slices of
    max_edges); planned_bytes: what the plan allocates at most (scales included)."""

    panel_rows: int
    panels: int
    buffers: int
    max_rows: int
    max_edges: int
    planned_bytes: int

    def to_json(self) -> dict:
        return asdict(self)


def plan_hop(budget: int, *, num_nodes: int, width: int, in_itemsize: int, out_itemsize: int,
             index_itemsize: int, weighted: bool) -> HopPlan:
    """The panels and blocks of one hop of an (N, width) input under `budget` bytes.

    Raises BudgetError (with the budget that would do) when the scales and one row of each buffer
    do not fit.
    """
    n, f = max(int(num_nodes), 1), int(width)
    scales = 4 * n
    panel_row = 4 * f + (f * in_itemsize if in_itemsize != 4 else 0)
    block_row = 4 * f + 8 + (f * out_itemsize if out_itemsize != 4 else 0)
    edge = index_itemsize + (4 if weighted else 0)
    avail = budget - scales - _SLACK_BYTES
    minimum = scales + _SLACK_BYTES + 2 * (panel_row + block_row + edge) * 64
    if avail <= 0 or avail < minimum - scales - _SLACK_BYTES:
        raise BudgetError(f"memory budget {format_bytes(budget)} is too small to propagate {n} nodes x {f} "
                          f"features (the degree scales alone take {format_bytes(scales)})",
                          hint=f"use --memory-budget {_round_up_mib(2 * minimum)}MiB or more")
    if n * panel_row <= avail // 2:
        panel_rows, buffers = n, 1
        rest = avail - n * panel_row
        row_share, edge_share = rest * 3 // 4, rest // 4
    else:
        panel_rows, buffers = max(1, (avail // 6) // panel_row), 3
        row_share, edge_share = avail * 3 // 8, avail // 8
    max_rows = int(max(1, min(MAX_BLOCK_ROWS, row_share // block_row)))
    max_edges = int(max(1, min(MAX_BLOCK_EDGES, edge_share // edge)))
    panels = -(-n // panel_rows)
    planned = scales + buffers * panel_rows * panel_row + max_rows * block_row + max_edges * edge
    return HopPlan(panel_rows=int(panel_rows), panels=int(panels), buffers=buffers, max_rows=max_rows,
                   max_edges=max_edges, planned_bytes=int(planned))


def _round_up_mib(n: int) -> int:
    return max(1, -(-n // (1 << 20)))
