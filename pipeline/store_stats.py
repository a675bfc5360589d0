"""What `gstore info` shows: `describe(store) -> StoreSummary`, computed in bounded memory.

Degrees come from `indptr` in chunks; the median from a capped histogram (exact whenever the median
degree is below the cap, which is every real graph; else one O(N) np.partition). Label counts are a
chunked bincount. Nothing reads `indices` or `features`, so info on a billion-edge store takes
seconds.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from gstore.store import SPLITS, GraphStore

CHUNK_ROWS = 1 << 22
MEDIAN_HIST_CAP = 1 << 16


@dataclass
class DegreeStats:
    """In-degree statistics over all nodes (degree, for undirected stores)."""

    min: int
    median: float
    mean: float
    max: int
    isolated: int            # nodes with no stored edge entry (in-degree 0)


@dataclass
class StoreSummary:
    path: str
    num_nodes: int
    num_edges: int           # stored entries (both directions for undirected stores)
    directed: bool
    id_type: str
    index_dtype: str
    has_weights: bool
    degree: DegreeStats | None
    feature_shape: list[int] | None
    feature_dtype: str | None
    num_classes: int | None
    label_counts: dict[str, int] = field(default_factory=dict)   # class name -> nodes; "unknown"
    split_sizes: dict[str, int] = field(default_factory=dict)
    partitions: dict[str, dict] = field(default_factory=dict)
    derived: dict[str, dict] = field(default_factory=dict)          # key -> DerivedRecord JSON
    bytes_on_disk: int = 0                                        # allocated blocks
    array_bytes: dict[str, int] = field(default_factory=dict)
    build: dict = field(default_factory=dict)
    format_version: int = 0
    gstore_version: str = ""
    created: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


def degree_stats(indptr: np.ndarray, chunk_rows: int = CHUNK_ROWS) -> DegreeStats | None:
    """Degree statistics from an int64 (N+1,) indptr, reading it `chunk_rows` at a time."""
    n = len(indptr) - 1
    if n <= 0:
        return None
    lo, hi, isolated = np.iinfo(np.int64).max, 0, 0
    hist = np.zeros(MEDIAN_HIST_CAP + 1, dtype=np.int64)   # last bin: degree >= cap
    for start in range(0, n, chunk_rows):
        stop = min(n, start + chunk_rows)
        deg = np.diff(np.asarray(indptr[start:stop + 1], dtype=np.int64))
        lo = min(lo, int(deg.min()))
        hi = max(hi, int(deg.max()))
        isolated += int(np.count_nonzero(deg == 0))
        hist += np.bincount(np.minimum(deg, MEDIAN_HIST_CAP), minlength=MEDIAN_HIST_CAP + 1)
    median = _median_from_hist(hist, n)
    if median is None:                                     # median degree >= cap: exact the slow way
        median = float(np.median(np.diff(np.asarray(indptr, dtype=np.int64))))
    total = int(indptr[n]) - int(indptr[0])
    return DegreeStats(min=lo, median=median, mean=total / n, max=hi, isolated=isolated)


def _median_from_hist(hist: np.ndarray, n: int) -> float | None:
    """np.median of the values histogrammed in `hist` (value = bin index), None if in the cap bin."""
    cum = np.cumsum(hist)
    cap = len(hist) - 1
    lo_rank, hi_rank = (n - 1) // 2, n // 2               # 0-based ranks averaged by np.median
    a = int(np.searchsorted(cum, lo_rank + 1))
    b = int(np.searchsorted(cum, hi_rank + 1))
    if a >= cap or b >= cap:
        return None
    return (a + b) / 2


def label_counts(labels: np.ndarray, names: list[str] | None,
                 chunk_rows: int = CHUNK_ROWS) -> dict[str, int]:
    """Nodes per class name (plus "unknown" for label -1), counted chunk by chunk."""
    k = len(names) if names else 0
    counts = np.zeros(k + 1, dtype=np.int64)               # last slot: unknown (-1)
    for start in range(0, len(labels), chunk_rows):
        lab = np.asarray(labels[start:start + chunk_rows], dtype=np.int64)
        known = lab[lab >= 0]
        if len(known) and int(known.max()) >= k:
            k2 = int(known.max()) + 1
            counts = np.concatenate([counts[:k], np.zeros(k2 - k, dtype=np.int64), counts[k:]])
            k = k2
        counts[:k] += np.bincount(known, minlength=k)[:k]
        counts[k] += int(np.count_nonzero(lab < 0))
    out = {(names[i] if names and i < len(names) else str(i)): int(counts[i]) for i in range(k)}
    if counts[k]:
        out["unknown"] = int(counts[k])
    return out


def _dir_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.stat(os.path.join(root, f))
                total += min(st.st_size, st.st_blocks * 512)   # padded shards are sparse files
            except OSError:
                pass
    return total


def _array_bytes(g: GraphStore) -> dict[str, int]:
    """Logical bytes per top-level array group (indptr, indices, features, splits, partition, ...)."""
    out: dict[str, int] = {}
    for name, rec in g.manifest.arrays.items():
        top = name.split("/")[0]
        size = int(np.prod(rec.shape, dtype=np.int64)) * np.dtype(rec.dtype).itemsize
        out[top] = out.get(top, 0) + size
    return out


def describe(g: GraphStore) -> StoreSummary:
    """Summarise an opened store (counts, degrees, features, labels, splits, partitions, sizes)."""
    m = g.manifest
    g.check_structure(("indptr", "labels"))   # a damaged store: one clear StoreError, not a traceback
    labels = g.labels
    counts = label_counts(labels, g.label_names) if labels is not None else {}
    splits = dict(m.split_sizes)
    for name in SPLITS:
        key = f"splits/{name}"
        if key in m.arrays:
            splits[name] = int(m.arrays[key].shape[0])
    feat = m.arrays.get("features")
    return StoreSummary(
        path=str(g.path), num_nodes=g.num_nodes, num_edges=g.num_edges, directed=g.directed,
        id_type=m.id_type, index_dtype=m.arrays["indices"].dtype, has_weights=g.has_array("weights"),
        degree=degree_stats(g.indptr),
        feature_shape=list(feat.shape) if feat else None, feature_dtype=feat.dtype if feat else None,
        num_classes=m.num_classes if m.num_classes is not None else (len(m.label_names)
                                                                     if m.label_names else None),
        label_counts=counts, split_sizes=splits, partitions=dict(m.partitions),
        derived={k: r.to_json() for k, r in m.derived.items()},
        bytes_on_disk=_dir_bytes(g.path), array_bytes=_array_bytes(g), build=dict(m.build),
        format_version=m.format_version, gstore_version=m.gstore_version, created=m.created)
