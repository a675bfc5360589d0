"""GraphStore: read-only, zero-copy access to a store (`gstore.open(path)`).

Every array is a numpy memmap over the store's shard files; nothing is loaded until touched. CSR rows
are destinations: `g.neighbors(v)` are the in-neighbors of v (sources u of edges u -> v); in an
undirected store that is simply the neighbor set.
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from gstore.errors import OptionError, StoreError
from gstore.manifest import StoreManifest, read_manifest
from gstore.shard_array import open_array, verify_array

SPLITS = ("train", "val", "test")


class StringIds:
    """Original string node ids stored Arrow-style: `offsets` (int64, N+1) into `utf8` (uint8) bytes."""

    def __init__(self, offsets: np.ndarray, data: np.ndarray) -> None:
        self.offsets = offsets
        self.data = data

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def _one(self, i: int) -> str:
        return bytes(self.data[self.offsets[i]:self.offsets[i + 1]]).decode("utf-8")

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            n = len(self)
            if not -n <= key < n:
                raise IndexError(key)
            return self._one(int(key) % n)
        idx = np.arange(len(self))[key] if isinstance(key, slice) else np.asarray(key)
        out = np.empty(idx.shape, dtype=object)
        for j, i in enumerate(idx.ravel()):
            out.flat[j] = self._one(int(i))
        return out

    def to_list(self) -> list[str]:
        return [self._one(i) for i in range(len(self))]


class GraphStore:
    """An opened store. Arrays are memory-mapped lazily and cached on the object."""

    def __init__(self, path: str | Path, *, verify: bool = True) -> None:
        self.path = Path(path)
        self.manifest: StoreManifest = read_manifest(self.path)
        if verify:
            for rec in self.manifest.arrays.values():
                verify_array(self.path, rec)
        for required in ("indptr", "indices"):
            if required not in self.manifest.arrays:
                raise StoreError(f"store has no {required!r} array", path=self.path, hint="rebuild the store")

    # ---- counts -------------------------------------------------------------------------------
    @property
    def num_nodes(self) -> int:
        return self.manifest.num_nodes

    @property
    def num_edges(self) -> int:
        return self.manifest.num_edges

    @property
    def directed(self) -> bool:
        return self.manifest.directed

    def has_array(self, name: str) -> bool:
        return name in self.manifest.arrays

    def array(self, name: str) -> np.ndarray:
        """Memory-map any array recorded in the manifest by its path (e.g. "splits/train")."""
        rec = self.manifest.arrays.get(name)
        if rec is None:
            raise StoreError(f"store has no array {name!r}", path=self.path)
        return open_array(self.path, rec)

    # ---- graph --------------------------------------------------------------------------------
    @cached_property
    def indptr(self) -> np.ndarray:
        """int64 (N+1,): row offsets into `indices`."""
        return self.array("indptr")

    @cached_property
    def indices(self) -> np.ndarray:
        """int32 (E,) when N < 2^31, else int64: source node of each stored edge, sorted per row."""
        return self.array("indices")

    @cached_property
    def weights(self) -> np.ndarray | None:
        """float32 (E,) edge weights aligned with `indices`, or None."""
        return self.array("weights") if self.has_array("weights") else None

    def degrees(self) -> np.ndarray:
        """int64 (N,): in-degree of every node (degree, for undirected stores)."""
        return np.diff(self.indptr)

    def neighbors(self, v: int) -> np.ndarray:
        """Sorted in-neighbors of dense node `v` (a view into the memory map)."""
        if not 0 <= v < self.num_nodes:
            raise OptionError(f"node {v} out of range [0, {self.num_nodes})")
        return self.indices[self.indptr[v]:self.indptr[v + 1]]

    # ---- node data ----------------------------------------------------------------------------
    @cached_property
    def node_ids(self) -> np.ndarray | StringIds:
        """Original id of each dense node: int64 (N,) array, or StringIds for string ids."""
        if self.manifest.id_type == "string":
            return StringIds(self.array("node_ids/offsets"), self.array("node_ids/utf8"))
        return self.array("node_ids")

    @cached_property
    def features(self) -> np.ndarray | None:
        """float32 or float16 (N, F) node features, or None."""
        return self.array("features") if self.has_array("features") else None

    @cached_property
    def labels(self) -> np.ndarray | None:
        """int64 (N,) class index per node, -1 where unknown; or None."""
        return self.array("labels") if self.has_array("labels") else None

    @property
    def label_names(self) -> list[str] | None:
        return self.manifest.label_names

    def split(self, name: str) -> np.ndarray:
        """int64 sorted dense node ids of split `name` ("train", "val" or "test"); empty if absent."""
        if name not in SPLITS:
            raise OptionError(f"unknown split {name!r}", hint=f"use one of {', '.join(SPLITS)}")
        key = f"splits/{name}"
        return self.array(key) if self.has_array(key) else np.zeros(0, dtype=np.int64)

    @property
    def partition(self):
        """The default `Partition` (gstore/partition_info.py) written by `gstore partition`, or None."""
        from gstore.partition_info import load_partition

        return load_partition(self)

    def partitions(self) -> dict:
        """Every recorded `Partition`, by number of parts."""
        from gstore.partition_info import load_partition, partition_keys

        return {int(k): load_partition(self, k) for k in partition_keys(self.manifest)}

    def zarr_group(self):
        """The store opened read-only through zarr-python (slower, chunked access)."""
        import zarr

        return zarr.open_group(str(self.path), mode="r")

    def __repr__(self) -> str:
        kind = "directed" if self.directed else "undirected"
        return f"GraphStore({str(self.path)!r}, {self.num_nodes} nodes, {self.num_edges} edges, {kind})"


def open(path: str | Path, *, verify: bool = True) -> GraphStore:  # noqa: A001 - public API name
    """Open a store read-only. `verify` checks sizes and checksums of every array (cheap)."""
    return GraphStore(path, verify=verify)
