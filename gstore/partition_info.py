"""Partitions recorded in a store: the `Partition` view that `GraphStore.partition` returns.

Layout (written by `gstore partition`, see docs/partition.md)::

    partition/k<K>/parts    int32 (N,)   part of every dense node id
    partition/k<K>/partptr  int64 (K+1,) part p holds perm[partptr[p]:partptr[p+1]]
    partition/k<K>/perm     int64 (N,)   node ids sorted by part (absent when `contiguous`)
    partition/k<K>/pos      int32/64 (N,) position of every node in perm, the inverse permutation
                                         (absent when `contiguous`; stores written before it
                                         existed lack it and samplers compute it)

and `manifest.partitions[str(K)]` = {num_parts, method, params, edge_cut, balance, seconds, peak_rss,
contiguous, arrays: {parts, partptr, perm, pos}, created}; `manifest.partitions["default"]["key"]`
names the active one. When the store was reordered by a partition (`--reorder`), that partition is
contiguous: part p is the node range [partptr[p], partptr[p+1]) and perm / pos are the identity
(not stored, None in `Partition`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DEFAULT_KEY = "default"


@dataclass
class Partition:
    """One k-way partition of a store's nodes.

    parts: int32 (N,) part per dense node id; partptr: int64 (K+1,) offsets into `perm`;
    perm: int64 (N,) node ids grouped by part (ascending within a part), None when contiguous (the
    identity); pos: int (N,) inverse of perm, None when contiguous or not stored;
    edge_cut: fraction of stored edge entries whose endpoints lie in different parts;
    balance: heaviest part / average part.
    """

    num_parts: int
    parts: np.ndarray
    partptr: np.ndarray
    perm: np.ndarray | None
    edge_cut: float
    balance: float
    method: str
    contiguous: bool = False
    params: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    pos: np.ndarray | None = None

    def nodes_of(self, p: int) -> np.ndarray:
        """int64 dense node ids of part `p` (ascending)."""
        if self.perm is None:
            return np.arange(self.partptr[p], self.partptr[p + 1], dtype=np.int64)
        return self.perm[self.partptr[p]:self.partptr[p + 1]]

    def sizes(self) -> np.ndarray:
        """int64 (K,) nodes per part."""
        return np.diff(self.partptr)


def partition_keys(manifest) -> list[str]:
    """Keys (str(K)) of the partitions recorded in a manifest, default first."""
    keys = [k for k in manifest.partitions if k != DEFAULT_KEY]
    default = manifest.partitions.get(DEFAULT_KEY, {}).get("key")
    return sorted(keys, key=lambda k: (k != default, int(k)))


def load_partition(store, key: str | int | None = None) -> Partition | None:
    """The partition `key` (its K) of an opened GraphStore; the default one when key is None.

    Returns None when the store has no partition (or not that one).
    """
    parts_meta = store.manifest.partitions
    if key is None:
        key = parts_meta.get(DEFAULT_KEY, {}).get("key")
        if key is None:
            keys = partition_keys(store.manifest)
            key = keys[0] if keys else None
    if key is None or str(key) not in parts_meta:
        return None
    meta = parts_meta[str(key)]
    try:
        return _partition_from_record(store, meta)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        from gstore.errors import StoreError

        raise StoreError(f"malformed record of the {key}-way partition in the manifest ({type(exc).__name__}: "
                         f"{exc})", path=store.path,
                         hint=f"re-run `gstore partition {store.path} -k {key} --force`") from None


def _partition_from_record(store, meta: dict) -> Partition:
    arrays = meta["arrays"]
    parts = store.array(arrays["parts"])
    partptr = np.asarray(store.array(arrays["partptr"]))
    perm = pos = None  # contiguous: the identity, never materialised (N can be 10^9)
    if not meta.get("contiguous") and "perm" in arrays:
        perm = store.array(arrays["perm"])
        pos = store.array(arrays["pos"]) if "pos" in arrays else None
    return Partition(num_parts=int(meta["num_parts"]), parts=parts, partptr=partptr, perm=perm,
                     edge_cut=float(meta["edge_cut"]), balance=float(meta["balance"]),
                     method=str(meta["method"]), contiguous=bool(meta.get("contiguous", False)),
                     params=dict(meta.get("params", {})), info=dict(meta), pos=pos)


def partition_summary_lines(manifest) -> list[str]:
    """Human-readable lines describing the recorded partitions (for `gstore info`)."""
    from gstore.memory import format_bytes

    default = manifest.partitions.get(DEFAULT_KEY, {}).get("key")
    lines = []
    for key in partition_keys(manifest):
        m = manifest.partitions[key]
        flags = (" default" if key == default else "") + (" contiguous" if m.get("contiguous") else "")
        lines.append(f"partition k={key}: method={m['method']} edge_cut={m['edge_cut']:.4f} "
                     f"balance={m['balance']:.3f} time={m.get('seconds', 0.0):.1f}s "
                     f"peak_rss={format_bytes(m.get('peak_rss', 0))}{flags}")
    return lines
