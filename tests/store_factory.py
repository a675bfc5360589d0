"""Build small stores straight from numpy edge arrays, for tests of stages that read stores.

Independent of `gstore ingest` on purpose: it is also the reference the ingest tests compare against.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from gstore.builder import StoreBuilder
from gstore.manifest import StoreManifest


def reference_csr(src: np.ndarray, dst: np.ndarray, num_nodes: int, *, directed: bool,
                  dedup: bool = True, drop_self_loops: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """In-edge CSR (rows = dst, sorted sources) of an edge list, the plain-numpy way."""
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    if not directed:
        src, dst = np.concatenate([src, dst]), np.concatenate([dst, src])
    if drop_self_loops:
        keep = src != dst
        src, dst = src[keep], dst[keep]
    key = dst * num_nodes + src
    key = np.unique(key) if dedup else np.sort(key)
    rows, cols = key // num_nodes, key % num_nodes
    indptr = np.zeros(num_nodes + 1, dtype=np.int64)
    np.add.at(indptr, rows + 1, 1)
    return np.cumsum(indptr), cols


def build_store(path: str | Path, src, dst, num_nodes: int, *, directed: bool = False,
                features: np.ndarray | None = None, labels: np.ndarray | None = None,
                label_names: list[str] | None = None, splits: dict[str, np.ndarray] | None = None,
                index_dtype=np.int32, force: bool = False) -> Path:
    """Write a store with in-edge CSR built by `reference_csr`; ids are 0..num_nodes-1."""
    indptr, indices = reference_csr(src, dst, num_nodes, directed=directed)
    manifest = StoreManifest(num_nodes=num_nodes, num_edges=int(len(indices)), directed=directed)
    with StoreBuilder(path, force=force) as b:
        b.write_array("indptr", indptr)
        b.write_array("indices", indices.astype(index_dtype))
        b.write_array("node_ids", np.arange(num_nodes, dtype=np.int64))
        if features is not None:
            b.write_array("features", features)
            manifest.feature_dim, manifest.feature_dtype = int(features.shape[1]), str(features.dtype)
        if labels is not None:
            b.write_array("labels", np.asarray(labels, dtype=np.int64))
            manifest.label_names = label_names or [str(i) for i in range(int(np.max(labels)) + 1)]
            manifest.num_classes = len(manifest.label_names)
        for name, idx in (splits or {}).items():
            b.write_array(f"splits/{name}", np.sort(np.asarray(idx, dtype=np.int64)))
            manifest.split_sizes[name] = int(len(idx))
        b.commit(manifest, check=False)   # the factory builds damaged stores too
    return Path(path)


def random_graph(num_nodes: int, num_edges: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, num_nodes, num_edges), rng.integers(0, num_nodes, num_edges)
