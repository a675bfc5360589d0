"""Plain-Python twins of gstore/cold_page_kernels.py: which items a touch reads."""
from __future__ import annotations


def touch_rows_positions(ids, lo: int, hi: int) -> list[tuple[int, int]]:
    """(row, column) read by touch_rows for ids[lo:hi]."""
    return [(int(ids[i]), 0) for i in range(lo, hi)]


def touch_csr_positions(indptr, nodes, lo: int, hi: int, page_items: int, max_pages: int) -> list[int]:
    """Positions of `indices` read by touch_csr_rows for nodes[lo:hi] (in order, repeats kept)."""
    out = []
    for i in range(lo, hi):
        a, b = int(indptr[nodes[i]]), int(indptr[nodes[i] + 1])
        if b <= a:
            continue
        step = page_items
        if b - a > step * max_pages:
            step = -(-(b - a) // max_pages)
        out.extend(range(a, b, step))
        out.append(b - 1)
    return out
