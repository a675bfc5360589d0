"""StoreBuilder: builds a store in `STORE.tmp` and renames it into place only when complete.

    with StoreBuilder(out, force=False) as b:
        w = b.array_writer("indices", (E,), np.int32); ...; b.add(w.finish())
        b.add(b.write_array("splits/train", train_idx))
        b.commit(manifest)          # writes the manifest last, then renames STORE.tmp -> STORE

Leaving the `with` block by an exception (Ctrl-C included) removes `STORE.tmp`; a kill leaves it, and
the next build of the same STORE removes it first. Scratch files go in `b.spill_dir` (inside the temp
dir, so they share its fate and its filesystem).
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np

from gstore.errors import StoreError, StoreExistsError
from gstore.manifest import StoreManifest, write_manifest
from gstore.shard_array import ZARR_JSON, ArrayRecord, ShardArrayWriter, write_array, write_group_metadata

log = logging.getLogger(__name__)


def temp_path_for(out: Path) -> Path:
    return out.with_name(out.name + ".tmp")


class StoreBuilder:
    def __init__(self, out: str | Path, *, force: bool = False) -> None:
        self.out = Path(out).absolute()
        self.force = force
        if self.out.exists() and not force:
            raise StoreExistsError("output already exists", path=self.out,
                                   hint="pass --force to replace it, or choose another -o")
        if self.out.exists() and not self.out.is_dir():
            raise StoreError("output exists and is not a directory", path=self.out)
        self.tmp = temp_path_for(self.out)
        if self.tmp.exists():
            log.info("removing stale temp dir %s from an interrupted build", self.tmp)
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        self.records: dict[str, ArrayRecord] = {}
        self._committed = False

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

    def commit(self, manifest: StoreManifest) -> Path:
        """Write group metadata and the manifest (last), then move the store into place."""
        shutil.rmtree(self.tmp / "_spill", ignore_errors=True)
        manifest.arrays = dict(self.records)
        for name in self.records:
            parent = Path(name).parent
            while str(parent) not in ("", "."):
                if not (self.tmp / parent / ZARR_JSON).exists():
                    write_group_metadata(self.tmp / parent)
                parent = parent.parent
        write_manifest(self.tmp, manifest)
        _fsync_dir(self.tmp)
        if self.out.exists():
            if _exchange(self.tmp, self.out):
                shutil.rmtree(self.tmp, ignore_errors=True)   # now holds the replaced store
            else:
                old = self.out.with_name(self.out.name + f".old{os.getpid()}")
                os.replace(self.out, old)
                os.replace(self.tmp, self.out)
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp, self.out)
        _fsync_dir(self.out.parent)
        self._committed = True
        return self.out

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "StoreBuilder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
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
