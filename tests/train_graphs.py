"""Small labelled graphs for the training tests: planted communities whose labels the graph reveals."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from store_factory import build_store


def community_graph(n: int = 600, classes: int = 4, degree: int = 8, p_in: float = 0.9, dim: int = 16,
                    signal: float = 0.6, seed: int = 0):
    """(src, dst, features float32 (n, dim), labels int64 (n,), splits) of an SBM-like graph: labels are
    communities, features a weak class signal (features alone reach well under the graph's accuracy)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    m = n * degree // 2
    src = rng.integers(0, n, m)
    same = rng.random(m) < p_in
    members = [np.flatnonzero(labels == c) for c in range(classes)]
    dst = rng.integers(0, n, m)
    for c in range(classes):
        pick = same & (labels[src] == c)
        dst[pick] = rng.choice(members[c], int(pick.sum()))
    keep = src != dst
    centroids = rng.standard_normal((classes, dim)).astype(np.float32)
    x = (signal * centroids[labels] + rng.standard_normal((n, dim))).astype(np.float32)
    order = rng.permutation(n)
    splits = {"train": order[:n // 2], "val": order[n // 2:3 * n // 4], "test": order[3 * n // 4:]}
    return src[keep], dst[keep], x, labels.astype(np.int64), splits


def community_store(path: Path, **kw) -> Path:
    src, dst, x, y, splits = community_graph(**kw)
    return build_store(path, src, dst, len(y), features=x, labels=y, splits=splits)
