"""The one transaction that adds, replaces or drops a named group of arrays in an existing store.

    with StoreUpdate(store, "derived/emb", purpose="layer-wise embeddings") as up:
        w = up.array_writer("h", (N, 64), np.float16)     # -> derived/emb/h (or derived/emb.1/h)
        ...; up.add(w.finish())
        up.write_array("pred", pred)
        up.commit_derived(kind="embeddings", params={"run": "runs/a"})

Every stage that writes into an existing store (partitions, node embeddings, predictions, SGC
features, histories) goes through it, so the safety rules below exist once:

- **One writer.** The store's writer lock (`STORE/_partition_scratch`, a marked scratch dir,
  `scratch.STORE_LOCK`) is held from before the manifest is read until the new one is written; a
  second update, partition or reorder of the store is refused in one line, and so is an update while
  a rebuild (`ingest --force`, reorder: a live `STORE.tmp`) is in progress. A caller that holds the
  lock for longer (partition computes under it) passes its `StoreLock` in.
- **Nothing half-visible.** Arrays go to a fresh directory `<root>/<name>` (`.1`, `.2`, ... when the
  name is taken), marked as this process's scratch from `mkdir` on. The manifest is rewritten last
  and atomically; only then is the new directory unmarked and the replaced one removed.
- **Failures roll back.** An exception (OSError, ENOSPC, Ctrl-C included) removes the new directory:
  the store is byte-identical to before. A kill leaves marked scratch whose owner is gone, which the
  next update (`clean_stale_dirs`) reclaims; re-running is always safe.
- **Never delete a user's data.** Only directories directly under `UPDATE_ROOTS` that this process
  marked (new ones) or that the old manifest named and this process marked on their way out
  (replaced ones) are deleted; an unmarked stranger is logged and left.
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from gstore import scratch
from gstore.builder import _fsync_dir, temp_path_for
from gstore.errors import OptionError, StoreError
from gstore.faults import fault_point
from gstore.manifest import DerivedRecord, StoreManifest, read_manifest, write_manifest
from gstore.shard_array import (ArrayRecord, ShardArrayWriter, group_metadata, write_array,
                                write_group_metadata)

log = logging.getLogger(__name__)

# top-level directories whose children are update groups (one dir per group, arrays inside)
UPDATE_ROOTS = ("partition", "derived")
DERIVED_ROOT = "derived"
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
NEW_PURPOSE = "new store arrays"
REPLACED_PURPOSE = "replaced store arrays"

Edit = Callable[[StoreManifest, dict[str, ArrayRecord]], None]


@dataclass
class StoreLock:
    """The held writer lock of one store. `dir` (the lock directory) is the holder's scratch space:
    it is removed with everything in it when the lock is released."""

    store: Path
    dir: Path
    in_update: bool = False

    def check(self, store: Path) -> None:
        if os.path.abspath(store) != os.path.abspath(self.store) or not scratch.owned_by_me(self.dir):
            raise StoreError(f"the writer lock passed in is not held for this store (it is {self.dir})",
                             path=store, hint="take it with store_lock(store) around the update")


@contextmanager
def store_lock(store_path: str | Path, purpose: str = "store update") -> Iterator[StoreLock]:
    """Hold the writer lock of the store at `store_path` for the block (see module doc). Refused
    with one line when another process (or this one) holds it, or a rebuild of the store runs."""
    path = Path(store_path)
    read_manifest(path)         # a missing or broken store is refused before a lock dir is made in it
    with scratch.scratch_dir(path / scratch.STORE_LOCK, purpose, path) as lock_dir:
        # a rebuild of this store (ingest --force, reorder) would swap it out from under us
        scratch.refuse_if_in_use(temp_path_for(path), "this store")
        yield StoreLock(store=path, dir=lock_dir)


def group_dir(array_name: str) -> str | None:
    """'<root>/<group>' of an array that lives in an update group ('partition/k8/parts' ->
    'partition/k8'); None for the store's own arrays ('indices', 'splits/train')."""
    parts = array_name.split("/")
    if len(parts) >= 3 and parts[0] in UPDATE_ROOTS:
        return f"{parts[0]}/{parts[1]}"
    return None


def _inside(store: Path, rel: str) -> bool:
    """`store/rel` is a real directory inside the store: no symlink on the way (a swapped-in link
    must not lead a delete elsewhere)."""
    p = store / rel
    if p.is_symlink() or (p.parent.is_symlink()) or not p.is_dir():
        return False
    real, root = os.path.realpath(p), os.path.realpath(store)
    return os.path.commonpath([real, root]) == root and real != root


class StoreUpdate:
    """Add or replace the group `group` ('<root>/<name>', root in UPDATE_ROOTS) of the store at
    `store_path`, or drop groups, in one transaction (module doc). Use as a context manager:
    arrays are written inside the block, `commit(edit)` publishes them; leaving the block without a
    commit (an exception included) rolls everything back.

    Args:
        store_path: the store directory.
        group: where the new arrays go, e.g. "partition/k8" or "derived/emb".
        purpose: what the update is, for markers and messages ("partition k=8").
        lock: a `StoreLock` this process already holds on the store (else one is taken).
        fault_prefix: names the test-hook kill points `<prefix>:before-manifest` etc.
            (default: the group's root, e.g. "partition").
    """

    def __init__(self, store_path: str | Path, group: str, *, purpose: str,
                 lock: StoreLock | None = None, fault_prefix: str | None = None) -> None:
        parts = group.split("/")
        if len(parts) != 2 or parts[0] not in UPDATE_ROOTS or not NAME_RE.match(parts[1]):
            raise OptionError(f"store update group {group!r} must be '<root>/<name>' with root one of "
                              f"{', '.join(UPDATE_ROOTS)} and a plain name", hint="e.g. 'derived/emb'")
        self.path = Path(store_path)
        self.group = group
        self.root = parts[0]
        self.purpose = purpose
        self.fault_prefix = fault_prefix or self.root
        self._given_lock = lock
        self._stack = ExitStack()
        self._lock: StoreLock | None = None
        self._manifest: StoreManifest | None = None
        self._dir: str | None = None          # the new group dir, once created
        self._made_root = False
        self._writers: dict[str, ShardArrayWriter] = {}
        self._records: dict[str, ArrayRecord] = {}
        self._done = False
        self._holds_update = False            # this object set its lock's in_update
        self._closed = False

    # ---- the transaction's life ---------------------------------------------------------------
    def __enter__(self) -> "StoreUpdate":
        try:
            if self._given_lock is not None:
                self._given_lock.check(self.path)
                self._lock = self._given_lock
            else:
                self._lock = self._stack.enter_context(store_lock(self.path, self.purpose))
            if self._lock.in_update:
                raise StoreError("another update of this store is open in this process", path=self.path,
                                 hint="commit or leave the first update before starting the next")
            self._lock.in_update = self._holds_update = True
            self._manifest = read_manifest(self.path)
            clean_stale_dirs(self.path, self._manifest)
        except BaseException as exc:
            if isinstance(exc, OSError):
                scratch.name_path_in(exc, self.path)
            self._release()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if isinstance(exc, OSError):
                scratch.name_path_in(exc, self.path)
            if not self._done:
                self._rollback()
        finally:
            self._release()

    def _release(self) -> None:
        self._closed = True
        if self._holds_update:
            self._lock.in_update = self._holds_update = False
        self._stack.close()

    @property
    def manifest(self) -> StoreManifest:
        """The manifest as read under the lock (do not modify it: `commit`'s edit gets a copy)."""
        self._check_open()
        return self._manifest

    @property
    def lock(self) -> StoreLock:
        self._check_open()
        return self._lock

    @property
    def dir(self) -> str:
        """The new group directory inside the store (created on first use)."""
        self._check_open()
        if self._dir is None:
            self._create_dir()
        return self._dir

    def array_name(self, role: str) -> str:
        """Store path of the array `role` of this update ('derived/emb.1/h')."""
        if not NAME_RE.match(role):
            raise OptionError(f"array role {role!r} must be a plain name", hint="e.g. 'h' or 'pred'")
        return f"{self.dir}/{role}"

    # ---- writing ------------------------------------------------------------------------------
    def array_writer(self, role: str, shape: tuple[int, ...], dtype, chunk_rows: int | None = None
                     ) -> ShardArrayWriter:
        """A ShardArrayWriter for array `role` (any write order; see shard_array); hand its
        `finish()` to `add`."""
        name = self.array_name(role)
        if role in self._writers or role in self._records:
            raise OptionError(f"array {role!r} is written twice in the update of {self.group}")
        w = ShardArrayWriter(self.path, name, shape, dtype, chunk_rows)
        self._writers[role] = w
        return w

    def add(self, rec: ArrayRecord) -> ArrayRecord:
        """Register a finished array of this update (`writer.finish()`)."""
        role = rec.name.rsplit("/", 1)[-1]
        if self._dir is None or rec.name != f"{self._dir}/{role}" or role not in self._writers:
            raise OptionError(f"array {rec.name!r} was not written by this update of {self.group}")
        del self._writers[role]
        self._records[role] = rec
        fault_point(f"{self.fault_prefix}:after-write")
        return rec

    def write_array(self, role: str, arr: np.ndarray, chunk_rows: int | None = None) -> ArrayRecord:
        """Write a whole (in-memory or memory-mapped) array as `role` and register it."""
        name = self.array_name(role)
        if role in self._writers or role in self._records:
            raise OptionError(f"array {role!r} is written twice in the update of {self.group}")
        rec = write_array(self.path, name, arr, chunk_rows)
        self._records[role] = rec
        fault_point(f"{self.fault_prefix}:after-write")
        return rec

    @property
    def records(self) -> dict[str, ArrayRecord]:
        """role -> record of every array finished so far."""
        return dict(self._records)

    # ---- publishing ---------------------------------------------------------------------------
    def commit(self, edit: Edit) -> StoreManifest:
        """Publish: `edit(manifest, records)` changes a copy of the manifest (records: role ->
        ArrayRecord of this update; it must put every one of them in `manifest.arrays`), the
        manifest is written atomically, the new directory unmarked, and directories whose arrays the
        edit dropped removed. Returns the new manifest."""
        self._check_open()
        if self._writers:
            raise OptionError(f"arrays {sorted(self._writers)} of the update of {self.group} were "
                              "never finished", hint="call add(writer.finish()) for each writer")
        new = _copy(self._manifest)
        edit(new, dict(self._records))
        lost = sorted(r.name for r in self._records.values() if new.arrays.get(r.name) != r)
        if lost:
            raise StoreError(f"the manifest edit of the update of {self.group} does not record {lost}",
                             path=self.path, hint="put every record the edit gets into manifest.arrays")
        try:
            StoreManifest.from_json(new.to_json())     # the edit must leave a manifest we can read
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"the update of {self.group} would write a malformed manifest: {exc}",
                             path=self.path) from None
        dropped = self._dropped_dirs(new)
        marked: list[str] = []
        try:
            if self._dir is not None:
                write_group_metadata(self.path / self._dir)
                _fsync_dir(self.path / self._dir)
            # marked before the switch: a kill after it leaves them reclaimable, a kill before it
            # leaves marked dirs the manifest still names, which the next update unmarks
            for d in dropped:
                scratch.mark(self.path / d, REPLACED_PURPOSE, self.path)
                marked.append(d)
            fault_point(f"{self.fault_prefix}:before-manifest")
            write_manifest(self.path, new)
        except BaseException:
            for d in marked:
                _unmark_quietly(self.path / d)
            raise
        self._done = True
        fault_point(f"{self.fault_prefix}:after-manifest")
        if self._dir is not None:
            if self._records:
                scratch.unmark(self.path / self._dir)
            else:
                scratch.remove(self.path / self._dir)
        for d in dropped:
            try:
                if not scratch.remove(self.path / d):
                    log.warning("could not remove the replaced arrays %s", self.path / d)
            except OSError as exc:     # the new manifest is written: a leftover is not fatal
                log.warning("could not remove the replaced arrays %s: %s", self.path / d, exc)
        for root in {d.split("/")[0] for d in dropped}:
            if not any(group_dir(n) and group_dir(n).startswith(root + "/") for n in new.arrays):
                _remove_empty_root(self.path / root)
        self._manifest = new
        return new

    def commit_derived(self, kind: str, params: dict | None = None, *, node_keyed: bool = True
                       ) -> DerivedRecord:
        """Commit this update's arrays as the derived group `<name>` of a 'derived/<name>' update,
        replacing a group of that name. `node_keyed`: row i belongs to dense node i (checked: every
        array has num_nodes rows), so `--reorder` drops the group."""
        if self.root != DERIVED_ROOT:
            raise OptionError(f"commit_derived needs a 'derived/<name>' update, not {self.group!r}")
        if not self._records:
            raise OptionError(f"the derived group {self.group!r} has no arrays", hint="write some first")
        key = self.group.split("/", 1)[1]
        n = self.manifest.num_nodes
        if node_keyed:
            bad = [r.name for r in self._records.values() if r.shape[0] != n]
            if bad:
                raise OptionError(f"node-keyed derived arrays {bad} must have {n} rows (one per node)",
                                  hint="pass node_keyed=False for arrays not indexed by node")
        record = DerivedRecord(kind=kind, arrays={role: r.name for role, r in self._records.items()},
                               params=dict(params or {}), node_keyed=node_keyed, created=time.time())

        def edit(manifest: StoreManifest, records: dict[str, ArrayRecord]) -> None:
            set_derived(manifest, key, record, list(records.values()))

        self.commit(edit)
        return record

    # ---- internals ----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._manifest is None or self._closed:
            raise OptionError("the store update is not open", hint="use it as `with StoreUpdate(...) as up:`")
        if self._done:
            raise OptionError(f"the update of {self.group} is already committed")

    def _create_dir(self) -> None:
        name, i = self.group, 1
        while os.path.lexists(self.path / name):
            name, i = f"{self.group}.{i}", i + 1
        root = self.path / self.root
        if root.is_symlink():
            raise StoreError(f"{self.root}/ is a symlink; gstore writes only inside the store",
                             path=root, hint="replace the link by a directory")
        self._made_root = not root.exists()
        try:
            scratch.create(self.path / name, NEW_PURPOSE, self.path)
            if not (root / "zarr.json").exists():
                write_group_metadata(root)
        except BaseException:
            self._rollback()
            raise
        self._dir = name

    def _dropped_dirs(self, new: StoreManifest) -> list[str]:
        """Group dirs the old manifest named and the new one does not (replaced or dropped)."""
        old = {group_dir(n) for n in self._manifest.arrays} - {None}
        kept = {group_dir(n) for n in new.arrays} - {None}
        return sorted(d for d in old - kept if _inside(self.path, d))

    def _rollback(self) -> None:
        for w in self._writers.values():
            w.abort()
        self._writers.clear()
        if self._dir is not None:
            scratch.remove(self.path / self._dir)
            self._dir = None
        if self._made_root:
            _remove_empty_root(self.path / self.root)
            self._made_root = False
        self._records.clear()


def _copy(manifest: StoreManifest) -> StoreManifest:
    return StoreManifest.from_json(manifest.to_json())


def _unmark_quietly(path: Path) -> None:
    try:
        scratch.unmark(path)
    except OSError as exc:      # left marked, but named by the manifest: the next update unmarks it
        log.warning("could not unmark %s: %s", path, exc)


def _remove_empty_root(root: Path) -> None:
    """Undo a root group (`partition/`, `derived/`) left holding nothing but the zarr.json gstore
    writes for it (an empty group's metadata); any other content, a zarr.json with attributes or a
    file gstore did not write included, keeps the directory."""
    meta = root / "zarr.json"
    try:
        if root.is_symlink() or set(os.listdir(root)) - {"zarr.json"}:
            return
        if meta.exists():
            if meta.is_symlink() or json.loads(meta.read_text()) != group_metadata():
                return
            meta.unlink()
        root.rmdir()
    except (OSError, ValueError):
        pass


def clean_stale_dirs(path: Path, manifest: StoreManifest, roots: tuple[str, ...] = UPDATE_ROOTS) -> None:
    """Reclaim group dirs under `roots` that no manifest entry names, when they are marked scratch of
    a gstore process that is gone (left by an interrupted update); unmark named ones so marked
    (killed around the manifest switch). Others are left alone (logged)."""
    used = {group_dir(name) for name in manifest.arrays} - {None}
    for r in roots:
        root = path / r
        if root.is_symlink() or not root.is_dir():
            continue
        for child in root.iterdir():
            if not child.is_dir() or child.is_symlink():
                continue
            marker = scratch.read_marker(child)
            state = marker.owner.state() if marker is not None else None
            if f"{r}/{child.name}" in used:
                if state == "gone":
                    scratch.unmark(child)
                continue
            if marker is None:
                log.warning("leaving %s: not named by the manifest, and not marked as gstore scratch "
                            "(remove it yourself if you do not need it)", child)
            elif state == "gone":
                scratch.reclaim(child, f"{marker.purpose} of {path}")
            else:
                log.info("leaving %s: pid %d is still writing it", child, marker.owner.pid)


# ---- derived groups ---------------------------------------------------------------------------
def set_derived(manifest: StoreManifest, key: str, record: DerivedRecord, recs: list[ArrayRecord]) -> None:
    """Point the manifest at derived group `key` (dropping the arrays of the one it replaces)."""
    drop_derived(manifest, key)
    for rec in recs:
        manifest.arrays[rec.name] = rec
    manifest.derived[key] = record


def drop_derived(manifest: StoreManifest, key: str) -> None:
    """Remove derived group `key` and its arrays from the manifest (no-op when absent)."""
    old = manifest.derived.pop(key, None)
    if old is not None:
        for name in old.arrays.values():
            manifest.arrays.pop(name, None)


def remove_derived(store_path: str | Path, key: str, *, lock: StoreLock | None = None) -> bool:
    """Drop the derived group `key` from the store through the update transaction (manifest
    switched first, then its directory deleted). False when the store has no such group."""
    with StoreUpdate(store_path, f"{DERIVED_ROOT}/{key}", purpose=f"drop derived {key}", lock=lock) as up:
        if key not in up.manifest.derived:
            return False
        up.commit(lambda manifest, records: drop_derived(manifest, key))
    return True
