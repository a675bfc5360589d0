"""Snapshots of a run's history files next to its checkpoint, so `--resume` restores them exactly.

    RUN_DIR/checkpoints/history-<tag>/emb_<l>, grad_<l>      copies of RUN_DIR/history/* at a checkpoint

`take_snapshot` copies every file (streamed in 16 MiB blocks, crc32 computed on the way) into a
temp directory, fsyncs, renames it into place and returns the record the checkpoint keeps (names,
sizes, crcs). The checkpoint is written after the snapshot, and older snapshots are deleted after
the checkpoint, so a kill anywhere leaves the last checkpoint's snapshot intact. `restore_snapshot`
checks sizes and crcs while copying the files back (a damaged snapshot: one-line InputError).
Every snapshot directory gets the marker file `.gstore-history-snapshot` before anything else, and
only directories that carry it are ever deleted (a same-named directory a user made is left alone).
"""
from __future__ import annotations

import os
import re
import shutil
import zlib
from pathlib import Path

from gstore.errors import InputError

PREFIX = "history-"
BLOCK = 16 << 20
_NAME = re.compile(r"^\.?history-[A-Za-z0-9]+(\.tmp)?$")
MARKER = ".gstore-history-snapshot"


def _ours(d: Path) -> bool:
    """Whether d is a snapshot directory this module made (name pattern, real dir, marker inside)."""
    return (_NAME.match(d.name) is not None and d.is_dir() and not d.is_symlink()
            and (d / MARKER).is_file())


def _remove(d: Path) -> None:
    """Delete snapshot dir d if it is ours; a foreign directory in the way is a one-line error."""
    if not (d.exists() or d.is_symlink()):
        return
    if not _ours(d):
        raise InputError(f"{d} is in the way of a history snapshot and was not made by gstore",
                         hint="move it out of the run's checkpoints directory")
    shutil.rmtree(d)


def _copy(src: Path, dst: Path, buf: bytearray) -> tuple[int, int]:
    """Copy src to dst, fsynced; returns (bytes, crc32)."""
    crc, total = 0, 0
    view = memoryview(buf)
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        while True:
            n = fi.readinto(buf)
            if not n:
                break
            crc = zlib.crc32(view[:n], crc)
            fo.write(view[:n])
            total += n
        fo.flush()
        os.fsync(fo.fileno())
    return total, crc


def take_snapshot(paths: list[Path], ckpt_dir: Path, tag: str) -> dict:
    """Copy `paths` into ckpt_dir/history-<tag>; returns {"dir", "files": [{name, bytes, crc32}]}."""
    final = ckpt_dir / f"{PREFIX}{tag}"
    tmp = ckpt_dir / f".{PREFIX}{tag}.tmp"
    for d in (tmp, final):
        _remove(d)
    tmp.mkdir(parents=True)
    (tmp / MARKER).write_bytes(b"")
    buf = bytearray(BLOCK)
    files = []
    try:
        for p in paths:
            size, crc = _copy(p, tmp / p.name, buf)
            files.append({"name": p.name, "bytes": size, "crc32": f"{crc:08x}"})
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"dir": final.name, "files": files}


def prune_snapshots(ckpt_dir: Path, keep: str | None) -> None:
    """Delete every snapshot dir (and temp) in ckpt_dir but `keep` (only names this module makes)."""
    if not ckpt_dir.is_dir():
        return
    for d in ckpt_dir.iterdir():
        if d.name != keep and _ours(d):
            shutil.rmtree(d, ignore_errors=True)


def restore_snapshot(record: dict, ckpt_dir: Path, root: Path) -> None:
    """Copy the snapshot `record` (from take_snapshot) back into root/, checking sizes and crcs."""
    hint = "the run's checkpoint and its history snapshot do not match: start the run again with --force"
    if not isinstance(record, dict) or "dir" not in record or "files" not in record:
        raise InputError(f"checkpoint in {ckpt_dir} has no history snapshot record", hint=hint)
    src_dir = ckpt_dir / str(record["dir"])
    if not _NAME.match(src_dir.name) or not src_dir.is_dir():
        raise InputError(f"history snapshot {src_dir} is missing", hint=hint)
    root.mkdir(parents=True, exist_ok=True)
    buf = bytearray(BLOCK)
    for f in record["files"]:
        src, dst = src_dir / f["name"], root / f["name"]
        if not src.is_file():
            raise InputError(f"history snapshot file {src} is missing", hint=hint)
        size, crc = _copy(src, dst, buf)
        if size != int(f["bytes"]) or f"{crc:08x}" != f["crc32"]:
            raise InputError(f"history snapshot file {src} is damaged ({size} bytes, crc32 {crc:08x}; "
                             f"the checkpoint says {f['bytes']} bytes, crc32 {f['crc32']})", hint=hint)
