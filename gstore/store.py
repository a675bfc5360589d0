"""GraphStore: read-only, zero-copy access to a store (`gstore.open(path)`).

Every array is a numpy memmap over the store's shard files; nothing is loaded until touched. CSR rows
are destinations: `g.neighbors(v)` are the in-neighbors of v (sources u of edges u -> v); in an
undirected store that is simply the neighbor set.

Safety: opening always runs the cheap checks (metadata, exact file sizes, checksum of each array's
ends); `verify=True` reads every byte against its block checksums (gstore/verify.py). Kernels get the
CSR only through `g.csr()`, which first checks the structural invariants (gstore/store_invariants.py)
once per process, so a damaged store raises StoreError instead of crashing a kernel.
"""
from __future__ import annotations

import logging
import numbers
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from gstore.errors import OptionError, StoreError
from gstore.manifest import DerivedRecord, StoreManifest, read_manifest
from gstore.shard_array import open_array, verify_array

log = logging.getLogger(__name__)
_V1_NOTICED: set[str] = set()

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


@dataclass(frozen=True)
class CSR:
    """The store's CSR after its structural check: indptr int64 (N+1,), indices int32/int64 (E,)
    with indptr[0] == 0, non-decreasing, indptr[N] == E and 0 <= indices < N (memory maps)."""

    indptr: np.ndarray
    indices: np.ndarray

    @property
    def num_nodes(self) -> int:
        return len(self.indptr) - 1


@dataclass(frozen=True)
class DerivedArrays:
    """A derived group of a store: `record` (gstore.manifest.DerivedRecord: kind, params, ...) and
    its arrays by role (read-only memory maps)."""

    key: str
    record: DerivedRecord
    arrays: dict[str, np.ndarray]


class GraphStore:
    """An opened store. Arrays are memory-mapped lazily and cached on the object.

    Args:
        path: the store directory.
        verify: read every byte against its block checksums and check every structural rule
            before returning (gstore/verify.py; as slow as reading the store once). The cheap
            checks (metadata, sizes, checksum of each array's ends) always run.
    """

    def __init__(self, path: str | Path, *, verify: bool = False) -> None:
        self.path = Path(path)
        self.manifest: StoreManifest = read_manifest(self.path)
        for required in ("indptr", "indices"):
            if required not in self.manifest.arrays:
                raise StoreError(f"store has no {required!r} array", path=self.path, hint="rebuild the store")
        for rec in self.manifest.arrays.values():
            verify_array(self.path, rec)
        if self.manifest.format_version < 2:
            key = str(self.path.absolute())
            if key not in _V1_NOTICED:
                _V1_NOTICED.add(key)
                log.warning("%s: format v%d store has no block checksums; corruption is detected only "
                            "in array ends and structure (re-ingest to checksum every byte)",
                            self.path, self.manifest.format_version)
        if verify:
            from gstore.verify import verify_store

            report = verify_store(self.path, self.manifest)
            if not report.ok:
                first = report.problems[0]
                more = f" and {len(report.problems) - 1} more problem(s)" if len(report.problems) > 1 else ""
                raise StoreError(f"{first.line()}{more}", path=self.path,
                                 hint="run `gstore verify` for the full list, then rebuild the store")

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

    def csr(self) -> CSR:
        """The CSR for kernels: every structural rule of the store checked first (once per process,
        one sequential pass over indptr, indices and the node arrays; cached by file identity).

        Raises StoreError naming the array and its first bad position when the store is damaged.
        """
        from gstore.store_invariants import mark_checked

        self.check_structure()
        mark_checked(self.indptr, self.indices)
        return CSR(indptr=self.indptr, indices=self.indices)

    def check_structure(self, arrays: list[str] | tuple[str, ...] | None = None) -> None:
        """Check the structural rules of `arrays` (all when None); StoreError on the first broken one."""
        from gstore.store_invariants import check_structure

        check_structure(self.path, self.manifest, arrays)

    def degrees(self) -> np.ndarray:
        """int64 (N,): in-degree of every node (degree, for undirected stores)."""
        return np.diff(self.indptr)

    def neighbors(self, v: int) -> np.ndarray:
        """Sorted in-neighbors of dense node `v` (a view into the memory map).

        `v` is a Python or numpy integer (not a bool, float or string); its row is checked on the
        spot (0 <= indptr[v] <= indptr[v+1] <= E), so this never needs the full structural check.
        """
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
            raise OptionError(f"node id must be an integer, got {type(v).__name__} {v!r}",
                              hint="pass a dense node id such as 5 (int or numpy integer)")
        v = int(v)
        if not 0 <= v < self.num_nodes:
            raise OptionError(f"node {v} out of range [0, {self.num_nodes})")
        lo, hi = int(self.indptr[v]), int(self.indptr[v + 1])
        if not 0 <= lo <= hi <= len(self.indices):
            raise StoreError(f"array 'indptr': row {v} spans [{lo}, {hi}), outside [0, "
                             f"{len(self.indices)}]", path=self.path,
                             hint="the store is corrupt; run `gstore verify` on it, then rebuild it")
        return self.indices[lo:hi]

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

    def derived(self, key: str) -> "DerivedArrays":
        """Derived group `key` (added through gstore/store_update.py): its record and memory-mapped
        arrays by role. StoreError naming the recorded groups when the store has no such group."""
        rec = self.manifest.derived.get(key)
        if rec is None:
            have = ", ".join(sorted(self.manifest.derived)) or "none"
            raise StoreError(f"store has no derived arrays {key!r} (it has: {have})", path=self.path)
        return DerivedArrays(key=key, record=rec,
                             arrays={role: self.array(name) for role, name in rec.arrays.items()})

    def zarr_group(self):
        """The store opened read-only through zarr-python (slower, chunked access)."""
        import zarr

        return zarr.open_group(str(self.path), mode="r")

    def __repr__(self) -> str:
        kind = "directed" if self.directed else "undirected"
        return f"GraphStore({str(self.path)!r}, {self.num_nodes} nodes, {self.num_edges} edges, {kind})"


def open(path: str | Path, *, verify: bool = False) -> GraphStore:  # noqa: A001 - public API name
    """Open a store read-only. Sizes and the checksum of each array's ends are always checked
    (cheap); `verify=True` also reads every byte against its block checksums and checks every
    structural rule, raising StoreError on the first problem (`gstore verify` lists them all)."""
    return GraphStore(path, verify=verify)
