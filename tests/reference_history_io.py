"""Plain-Python twins of pipeline/history/history_kernels.py (one row at a time, no numba)."""
from __future__ import annotations

import numpy as np


def gather_rows(src: np.ndarray, ids: np.ndarray, order: np.ndarray, out: np.ndarray) -> None:
    for k in range(len(order)):
        i = int(order[k])
        out[i] = src[int(ids[i])]


def scatter_rows(dst: np.ndarray, ids: np.ndarray, order: np.ndarray, rows: np.ndarray) -> None:
    for k in range(len(order)):
        i = int(order[k])
        dst[int(ids[i])] = rows[i]


def zero_rows(dst: np.ndarray, ids: np.ndarray, order: np.ndarray) -> None:
    for k in range(len(order)):
        dst[int(ids[int(order[k])])] = 0


def add_rows(dst: np.ndarray, ids: np.ndarray, order: np.ndarray, rows: np.ndarray) -> None:
    for k in range(len(order)):
        i = int(order[k])
        r = int(ids[i])
        dst[r] = (dst[r] + rows[i]).astype(dst.dtype)


def has_repeats(ids: np.ndarray, order: np.ndarray) -> bool:
    return len(set(ids.tolist())) != len(ids)


def member_mask(ids: np.ndarray, keys: np.ndarray, out: np.ndarray) -> int:
    keyset = set(keys.tolist())
    for i, v in enumerate(ids.tolist()):
        out[i] = v in keyset
    return int(out.sum())
