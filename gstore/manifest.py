"""The store manifest: one versioned JSON object in the root group's `zarr.json` attributes.

The root `zarr.json` is written last and atomically (temp file + rename), after every array is on disk
and fsynced; a directory without it is not a store. Later stages (partition) rewrite it the same way.

Format versions: 2 records a CRC32C per 4 MiB block of every array (ArrayRecord.block_crc32c, see
docs/format.md); 1 did not. Version-1 stores are still read: the cheap checks on open and the
structural invariants apply to them, and `gstore verify` says which arrays it could not check byte by
byte (re-ingest to add the checksums).
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gstore.errors import FormatVersionError, StoreError
from gstore.partition_info import DEFAULT_KEY
from gstore.shard_array import ZARR_JSON, ArrayRecord, write_json_atomic

DERIVED_KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)      # 1: no block checksums (read with a notice)
MANIFEST_KEY = "gstore"


@dataclass(frozen=True)
class DerivedRecord:
    """Arrays computed from a store and added to it later (node embeddings, predictions, SGC
    features, histories) through gstore/store_update.py: what they are and what made them.

    kind: what the arrays hold ("embeddings", "predictions", ...). arrays: role -> array name (a key
    of `manifest.arrays`, under `derived/<key>/`). params: the JSON parameters that produced them
    (run dir, layer, dtype, ...). node_keyed: row i belongs to dense node i, so `--reorder` (which
    renumbers nodes) drops the group. created: unix time of the commit.
    """

    kind: str
    arrays: dict[str, str]
    params: dict = field(default_factory=dict)
    node_keyed: bool = True
    created: float = 0.0

    def to_json(self) -> dict:
        return {"kind": self.kind, "arrays": dict(self.arrays), "params": dict(self.params),
                "node_keyed": self.node_keyed, "created": self.created}

    @staticmethod
    def from_json(d) -> "DerivedRecord":
        """Parse a record; an unknown key or a field of the wrong type is a ValueError naming it."""
        if not isinstance(d, dict):
            raise ValueError(f"must be an object, got {type(d).__name__}")
        unknown = sorted(set(d) - {"kind", "arrays", "params", "node_keyed", "created"})
        if unknown:
            raise ValueError(f"unknown fields {unknown}")
        kind, arrays = d.get("kind"), d.get("arrays")
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"kind must be a non-empty string, got {kind!r:.60}")
        if not (isinstance(arrays, dict) and arrays and all(isinstance(k, str) and isinstance(v, str)
                                                            for k, v in arrays.items())):
            raise ValueError(f"arrays must map roles to array names, got {arrays!r:.60}")
        params = d.get("params", {})
        if not isinstance(params, dict):
            raise ValueError(f"params must be an object, got {params!r:.60}")
        node_keyed = d.get("node_keyed", True)
        if not isinstance(node_keyed, bool):
            raise ValueError(f"node_keyed must be true or false, got {node_keyed!r:.60}")
        created = d.get("created", 0.0)
        if isinstance(created, bool) or not isinstance(created, (int, float)):
            raise ValueError(f"created must be a number, got {created!r:.60}")
        return DerivedRecord(kind=kind, arrays=dict(arrays), params=dict(params),
                             node_keyed=node_keyed, created=float(created))


@dataclass
class StoreManifest:
    """Everything needed to open and describe a store.

    `num_edges` counts stored edge entries (len(indices)); an undirected store holds both directions.
    Rows of the CSR are destination nodes: `indices[indptr[v]:indptr[v+1]]` are the sources u of the
    edges u -> v (in-neighbors), which is what message passing samples.
    """

    num_nodes: int
    num_edges: int
    directed: bool
    id_type: str = "int"                      # "int" or "string"
    feature_dim: int | None = None
    feature_dtype: str | None = None
    label_names: list[str] | None = None      # class names; labels index into it
    num_classes: int | None = None
    split_sizes: dict[str, int] = field(default_factory=dict)
    arrays: dict[str, ArrayRecord] = field(default_factory=dict)
    build: dict = field(default_factory=dict)       # parameters and stats of the build
    partitions: dict[str, dict] = field(default_factory=dict)  # filled by `gstore partition`
    # arrays added later through the store update (embeddings, predictions, ...), by group name;
    # absent from manifests written before it existed
    derived: dict[str, DerivedRecord] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    created: float = field(default_factory=time.time)
    gstore_version: str = ""

    def to_json(self) -> dict:
        d = asdict(self)
        d["arrays"] = {k: v.to_json() for k, v in self.arrays.items()}
        d["derived"] = {k: v.to_json() for k, v in self.derived.items()}
        return d

    @staticmethod
    def from_json(d: dict) -> "StoreManifest":
        """Parse a manifest; a field of the wrong type (a hand-edited or damaged manifest) is a
        ValueError naming it, so every command fails with one line instead of a traceback."""
        if not isinstance(d, dict):
            raise ValueError("the manifest must be an object")
        d = dict(d)
        _check_fields(d)
        if not isinstance(d.get("arrays", {}), dict):
            raise ValueError("arrays must be an object of array records")
        d["arrays"] = {k: ArrayRecord.from_json(v) for k, v in d.get("arrays", {}).items()}
        for k, rec in d["arrays"].items():
            if k != rec.name:
                raise ValueError(f"array key {k!r} names a record of array {rec.name!r}")
        _check_partitions(d.get("partitions", {}))
        d["derived"] = _parse_derived(d.get("derived", {}), d["arrays"], d["num_nodes"])
        known = set(StoreManifest.__dataclass_fields__)
        return StoreManifest(**{k: v for k, v in d.items() if k in known})


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# field: (check, what it must be); fields absent from a manifest take their defaults
_FIELD_RULES = {
    "num_nodes": (lambda v: _is_int(v) and 0 <= v < 2**62, "an integer >= 0"),
    "num_edges": (lambda v: _is_int(v) and 0 <= v < 2**62, "an integer >= 0"),
    "directed": (lambda v: isinstance(v, bool), "true or false"),
    "id_type": (lambda v: v in ("int", "string"), "'int' or 'string'"),
    "feature_dim": (lambda v: v is None or (_is_int(v) and v >= 0), "null or an integer >= 0"),
    "feature_dtype": (lambda v: v is None or isinstance(v, str), "null or a dtype name"),
    "label_names": (lambda v: v is None or (isinstance(v, list) and all(isinstance(x, str) for x in v)),
                    "null or a list of strings"),
    "num_classes": (lambda v: v is None or (_is_int(v) and v >= 0), "null or an integer >= 0"),
    "split_sizes": (lambda v: isinstance(v, dict) and all(isinstance(k, str) and _is_int(x) and x >= 0
                                                           for k, x in v.items()),
                    "an object of split name -> count"),
    "arrays": (lambda v: isinstance(v, dict), "an object of array records"),
    "build": (lambda v: isinstance(v, dict), "an object"),
    "partitions": (lambda v: isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()),
                   "an object of partition records"),
    "format_version": (_is_int, "an integer"),
    "created": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    "gstore_version": (lambda v: isinstance(v, str), "a string"),
}


def _check_fields(d: dict) -> None:
    """ValueError naming the first field (of those present) with a value of the wrong type; the
    counts must be present."""
    for key in ("num_nodes", "num_edges", "directed"):
        if key not in d:
            raise ValueError(f"field {key!r} is missing")
    for name, (ok, want) in _FIELD_RULES.items():
        if name in d and not ok(d[name]):
            raise ValueError(f"{name} must be {want}, got {d[name]!r:.60}")
    for key, record in d.get("partitions", {}).items():
        names = record.get("arrays", {})
        if not (isinstance(names, dict) and all(isinstance(v, str) for v in names.values())):
            raise ValueError(f"partition record {key!r}: 'arrays' must map roles to array names, "
                             f"got {names!r:.60}")


def _check_partitions(partitions) -> None:
    """ValueError unless `partitions` maps names to objects and the default entry's key is a name:
    every reader of partition metadata indexes into those objects."""
    if not isinstance(partitions, dict):
        raise ValueError(f"partitions must be an object, got {type(partitions).__name__}")
    for key, meta in partitions.items():
        if not isinstance(meta, dict):
            raise ValueError(f"partitions[{key!r}] must be an object, got {type(meta).__name__}")
    default = partitions.get(DEFAULT_KEY, {})
    if "key" in default and not isinstance(default["key"], str):
        raise ValueError(f"partitions[{DEFAULT_KEY!r}].key must be a partition name, got {default['key']!r}")


def _parse_derived(derived, arrays: dict[str, ArrayRecord], num_nodes: int) -> dict[str, DerivedRecord]:
    """The `derived` field as records; ValueError naming the group when one is malformed, names an
    array the manifest does not record, or (node-keyed) an array without one row per node."""
    if not isinstance(derived, dict):
        raise ValueError(f"derived must be an object of derived-array records, got {derived!r:.60}")
    out = {}
    for key, d in derived.items():
        if not DERIVED_KEY_RE.match(key):
            raise ValueError(f"derived group name {key!r} is not a plain name")
        try:
            rec = DerivedRecord.from_json(d)
        except ValueError as exc:
            raise ValueError(f"derived[{key!r}]: {exc}") from None
        for role, name in rec.arrays.items():
            if name not in arrays:
                raise ValueError(f"derived[{key!r}] names array {name!r}, which the manifest does not record")
            if rec.node_keyed and arrays[name].shape[0] != num_nodes:
                raise ValueError(f"derived[{key!r}]: node-keyed array {name!r} has {arrays[name].shape[0]} "
                                 f"rows, not one per node ({num_nodes})")
        out[key] = rec
    return out


def write_manifest(store_dir: Path, manifest: StoreManifest) -> None:
    """Atomically (re)write the root group metadata holding the manifest."""
    from gstore import __version__

    manifest.gstore_version = manifest.gstore_version or __version__
    if all(rec.block_crc32c is not None for rec in manifest.arrays.values()):
        manifest.format_version = FORMAT_VERSION   # e.g. a v1 store rewritten whole by --reorder
    write_json_atomic(Path(store_dir) / ZARR_JSON, {
        "zarr_format": 3, "node_type": "group",
        "attributes": {MANIFEST_KEY: manifest.to_json()},
    })


def read_manifest(store_dir: Path) -> StoreManifest:
    """Read and version-check the manifest of `store_dir`; clear StoreError when it is not a store."""
    store_dir = Path(store_dir)
    if not store_dir.exists():
        raise StoreError("no such store", path=store_dir, hint="build one with `gstore ingest`")
    meta_path = store_dir / ZARR_JSON
    if not store_dir.is_dir():
        raise StoreError("is a file, not a store directory", path=store_dir,
                         hint="give the store's directory (the one holding zarr.json)")
    if not meta_path.is_file():
        hint = "the build did not finish; re-run it" if store_dir.name.endswith(".tmp") else \
            "not a gstore store (or an unfinished build); re-run `gstore ingest`"
        raise StoreError("missing zarr.json manifest", path=store_dir, hint=hint)
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"unreadable manifest: {exc}", path=meta_path, hint="rebuild the store") from None
    attrs = meta.get("attributes") if isinstance(meta, dict) else None
    if not isinstance(attrs, dict) or meta.get("zarr_format") != 3 or MANIFEST_KEY not in attrs:
        raise StoreError("zarr group without a gstore manifest", path=store_dir,
                         hint="this directory was not written by gstore")
    d = attrs[MANIFEST_KEY]
    if not isinstance(d, dict):
        raise StoreError(f"malformed manifest: {MANIFEST_KEY!r} must be an object", path=meta_path,
                         hint="rebuild the store")
    version = d.get("format_version")
    if version not in READABLE_VERSIONS:
        readable = ", ".join(str(v) for v in READABLE_VERSIONS)
        raise FormatVersionError(f"store format version {version}, this gstore reads {readable}",
                                 path=store_dir, hint="re-ingest with this gstore version")
    try:
        return StoreManifest.from_json(d)
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"malformed manifest: {exc}", path=meta_path, hint="rebuild the store") from None
