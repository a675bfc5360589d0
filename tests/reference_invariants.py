"""Plain-Python twin of gstore/store_invariants.py's block checker: the first bad element, by a loop."""
from __future__ import annotations


def first_violation(values: list[int], kind: str, *, lo: int, hi: int, last: int) -> int | None:
    """Position of the first element breaking the rule (None when all hold).

    range: lo <= v < hi. offsets: values[0] == 0, never decreasing, values[-1] == last (reported at
    the last position).
    """
    if kind == "range":
        for i, v in enumerate(values):
            if not lo <= v < hi:
                return i
        return None
    if values[0] != 0:
        return 0
    for i in range(1, len(values)):
        if values[i] < values[i - 1]:
            return i
    return None if values[-1] == last else len(values) - 1
