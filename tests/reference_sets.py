"""Plain-Python twins of gstore/set_kernels.py."""
from __future__ import annotations


def first_duplicate(ids) -> int:
    seen = set()
    for i, v in enumerate(ids):
        if v in seen:
            return i
        seen.add(v)
    return -1


def sorted_unique_ids(ids) -> list[int]:
    return sorted(set(int(v) for v in ids))


def counting_groups(keys, num_keys: int) -> list[list[int]]:
    groups = [[] for _ in range(num_keys)]
    for i, k in enumerate(keys):
        groups[k].append(i)
    return groups


def first_pair_positions(src, dst) -> list[int]:
    seen, out = set(), []
    for j, pair in enumerate(zip(src, dst)):
        if pair not in seen:
            seen.add(pair)
            out.append(j)
    return out
