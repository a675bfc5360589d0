"""StoreBuilder: builds a store in `STORE.tmp` and renames it into place only when complete.

    with StoreBuilder(out, force=False, inputs=[edges_csv]) as b:
        w = b.array_writer("indices", (E,), np.int32); ...; b.add(w.finish())
        b.add(b.write_array("splits/train", train_idx))
        b.commit(manifest)          # writes the manifest last, then renames STORE.tmp -> STORE

Safety rules (docs/format.md, "Safety rules"): `force` replaces only a directory that is a gstore
store; an output that equals or contains an input is refused; `STORE.tmp` carries a scratch marker
(gstore/scratch.py) from its first moment, and only marked scratch whose owner is gone is reclaimed.
Leaving the `with` block by an exception (Ctrl-C included) removes `STORE.tmp`; a kill leaves it, and
the next build of the same STORE reclaims it. Scratch files go in `b.spill_dir` (inside the temp
dir, so they share its fate and its filesystem).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np

from gstore import scratch
from gstore.errors import OptionError, StoreError, StoreExistsError
from gstore.manifest import MANIFEST_KEY, StoreManifest, write_manifest
from gstore.store_invariants import check_structure
from gstore.shard_array import ZARR_JSON, ArrayRecord, ShardArrayWriter, write_array, write_group_metadata

log = logging.getLogger(__name__)

BUILD_PURPOSE = "store build"
REPLACED_PURPOSE = "replaced store"


def temp_path_for(out: Path) -> Path:
    return out.with_name(out.name + ".tmp")


def aside_path_for(out: Path) -> Path:
    """Where a replaced store is moved while the new one takes its name (no renameat2 exchange)."""
    return out.with_name(out.name + f".old{os.getpid()}")


def is_store(path: Path) -> bool:
    """True when `path` is a directory whose root zarr.json holds a gstore manifest (any version)."""
    try:
        meta = json.loads((Path(path) / ZARR_JSON).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and MANIFEST_KEY in (meta.get("attributes") or {})


def absolute(path: str | Path) -> Path:
    """Absolute and normalised ('.' and '..' folded), without resolving symlinks."""
    return Path(os.path.abspath(os.fspath(path)))


def check_output(out: Path, inputs: Iterable[str | Path], *, extra: Iterable[Path] = ()) -> None:
    """Refuse an output (or a path gstore creates next to it, `extra`) that equals or contains an
    input, or lies inside an input directory: replacing it would delete or change that input."""
    outs = [Path(os.path.realpath(p)) for p in (out, *extra)]
    for given in inputs:
        inp = Path(os.path.realpath(os.fspath(given)))
        for o in outs:
            if inp == o or o in inp.parents:
                raise OptionError(f"output would contain the input {given}, which replacing the "
                                  "output would delete", path=o,
                                  hint="choose an -o outside the input's directory")
            if inp.is_dir() and inp in o.parents:
                raise OptionError(f"output lies inside the input directory {given}", path=o,
                                  hint="choose an -o outside the input")


def check_replaceable(out: Path, force: bool) -> None:
    """An existing `out` may be replaced only with `force`, and only when it is a gstore store."""
    if not os.path.lexists(out):
        return
    if not force:
        raise StoreExistsError("output already exists", path=out,
                               hint="pass --force to replace it, or choose another -o")
    if out.is_symlink():
        raise StoreError("output is a symlink; a store is replaced by rename, which would replace the "
                         "link, not the store it points to", path=out,
                         hint=f"give the real path, {os.path.realpath(out)}")
    if not out.is_dir():
        raise StoreError("output exists and is not a directory; --force replaces only a gstore store",
                         path=out, hint="move it away or choose another -o")
    if not is_store(out):
        raise StoreError("output exists and is not a gstore store (no gstore manifest in its "
                         "zarr.json); --force replaces only a store", path=out,
                         hint="choose another -o, e.g. a new directory, or move this one away")
    # a partition or reorder of this store still running would write into the replaced copy, or
    # swap its own rebuild over this one: either way one run's result is lost
    scratch.refuse_if_in_use(out / scratch.STORE_LOCK, "this store")


class StoreBuilder:
    """Builds the store `out` in a marked `out.tmp` (see module doc).

    Args:
        out: the store directory to build.
        force: replace an existing `out` (only a gstore store; anything else is refused).
        inputs: paths the build reads (edge files, node table, features, labels): an output equal to
            or containing one of them is refused, since replacing it would delete that input.
    """

    def __init__(self, out: str | Path, *, force: bool = False, inputs: Iterable[str | Path] = ()) -> None:
        self.out = absolute(out)
        if self.out.parent == self.out:
            raise OptionError("cannot build a store at the filesystem root", path=self.out,
                              hint="choose a new directory for -o")
        self.force = force
        self.tmp = temp_path_for(self.out)
        check_output(self.out, inputs, extra=[self.tmp])
        check_replaceable(self.out, force)
        self._reclaim_aside_dirs()
        self.records: dict[str, ArrayRecord] = {}
        self._committed = False
        self._tmp_is_ours = False
        scratch.create(self.tmp, BUILD_PURPOSE, self.out)
        self._tmp_is_ours = True

    @property
    def spill_dir(self) -> Path:
        d = self.tmp / "_spill"
        d.mkdir(exist_ok=True)
        return d

    def array_writer(self, name: str, shape: tuple[int, ...], dtype: str | np.dtype,
                     chunk_rows: int | None = None) -> ShardArrayWriter:
        """A writer for array `name`; call `add(writer.finish())` when done."""
        return ShardArrayWriter(self.tmp, name, shape, dtype, chunk_rows)

    def write_array(self, name: str, arr: np.ndarray, chunk_rows: int | None = None) -> ArrayRecord:
        """Write a whole array and register it."""
        rec = write_array(self.tmp, name, arr, chunk_rows)
        self.add(rec)
        return rec

    def add(self, rec: ArrayRecord) -> None:
        self.records[rec.name] = rec

    def commit(self, manifest: StoreManifest, *, check: bool = True) -> Path:
        """Write group metadata and the manifest (last), then move the store into place.

        `check`: run the structural check first (StoreError, nothing replaced, when it fails);
        False only for tests that build damaged stores on purpose.

        The marker leaves `STORE.tmp` just before the rename (a committed store is not scratch); the
        replaced store, once out of the way, is marked as ours and only then deleted."""
        shutil.rmtree(self.tmp / "_spill", ignore_errors=True)
        manifest.arrays = dict(self.records)
        # kernels trust the structure (gstore/store_invariants.py): a build bug stops here, before
        # anything is replaced, and the passed checks are recorded in the store, so the first
        # training process starts without its own pass (8 GiB of indices at 10^9 edges)
        if check:
            check_structure(self.tmp, manifest, record=True)
        for name in self.records:
            parent = Path(name).parent
            while str(parent) not in ("", "."):
                if not (self.tmp / parent / ZARR_JSON).exists():
                    write_group_metadata(self.tmp / parent)
                parent = parent.parent
        write_manifest(self.tmp, manifest)
        _fsync_dir(self.tmp)
        # re-checked here: the build may have run for hours, and `out` may have appeared meanwhile
        check_replaceable(self.out, self.force)
        scratch.unmark(self.tmp)
        try:
            if os.path.lexists(self.out):
                self._replace_existing()
            else:
                os.replace(self.tmp, self.out)
                self._tmp_is_ours = False
        except BaseException:
            if self._tmp_is_ours:       # still this build's scratch: marked again, so abort may delete it
                try:
                    scratch.mark(self.tmp, BUILD_PURPOSE, self.out)
                except OSError as exc:
                    log.warning("could not mark %s again (%s); it is left for you to remove", self.tmp, exc)
            raise
        self._committed = True
        _fsync_dir(self.out.parent)
        return self.out

    def _replace_existing(self) -> None:
        if _exchange(self.tmp, self.out):
            # STORE.tmp now holds the replaced store: the new one is in place whatever happens next
            self._tmp_is_ours = False
            self._committed = True
            self._delete_replaced(self.tmp)
            return
        old = aside_path_for(self.out)
        scratch.reclaim(old, f"place for the replaced store {self.out}")
        os.replace(self.out, old)
        try:
            os.replace(self.tmp, self.out)
        except BaseException:
            os.replace(old, self.out)          # put the old store back: never leave `out` missing
            raise
        self._tmp_is_ours = False
        self._committed = True
        self._delete_replaced(old)

    def _delete_replaced(self, path: Path) -> None:
        """Delete the store that --force replaced (checked to be a store, moved by this build). The
        marker makes a kill mid-delete reclaimable; on a disk too full for it, delete unmarked."""
        try:
            scratch.mark(path, REPLACED_PURPOSE, self.out)
        except OSError as exc:
            log.info("could not mark %s (%s); deleting it unmarked", path, exc)
        shutil.rmtree(path, ignore_errors=True)
        if os.path.lexists(path):     # the new store is committed; a leftover is logged, not fatal
            log.warning("could not remove the replaced store at %s; remove it yourself", path)

    def _reclaim_aside_dirs(self) -> None:
        """Remove `out.old<pid>` dirs of swaps killed after the new store took its name (marked, owner
        gone, and `out` is a store). Without `out` one may be the only copy: leave it, and say so."""
        parent = self.out.parent
        if not parent.is_dir():
            return
        prefix = self.out.name + ".old"
        for child in parent.iterdir():
            if not (child.name.startswith(prefix) and child.name[len(prefix):].isdigit()):
                continue
            marker = scratch.read_marker(child)
            if marker is None or marker.purpose != REPLACED_PURPOSE or marker.owner.state() != "gone":
                continue
            if is_store(self.out):
                scratch.reclaim(child, f"replaced copy of {self.out}")
            else:
                log.warning("%s holds the store that was replaced when a build of %s was killed; "
                            "rename it back to %s to recover it", child, self.out, self.out.name)

    def abort(self) -> None:
        """Remove `STORE.tmp` if it is still this build's (never a replaced store swapped into it)."""
        if self._tmp_is_ours and not self._committed:
            scratch.remove(self.tmp)        # deletes only while its marker names this process
            self._tmp_is_ours = False

    def __enter__(self) -> "StoreBuilder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if isinstance(exc, OSError):
            scratch.name_path_in(exc, self.out)
        if not self._committed:
            self.abort()


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directory entries (Linux renameat2 RENAME_EXCHANGE), so a replaced store
    is never absent, even for an instant. False where the platform or filesystem lacks it."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
