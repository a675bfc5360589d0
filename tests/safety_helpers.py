"""Helpers for the safety tests: scratch left by a gstore process that is gone, snapshots of trees."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path



def mark_as_dead_owner(path: Path, purpose: str = "store build", target: str = "") -> None:
    """Mark `path` as scratch of a process that has exited: this pid with another start time, which
    is exactly what a reused pid looks like (so it also checks that the pid alone is not trusted)."""
    from gstore import scratch

    me = scratch.ScratchOwner.current()
    dead = replace(me, start_time=(me.start_time or 0) - 1)
    marker = scratch.ScratchMarker(purpose=purpose, target=target, owner=dead, created=0.0)
    (Path(path) / scratch.MARKER).write_text(json.dumps(marker.to_json()))


def mark_as_live_owner(path: Path, pid: int, purpose: str = "store build", target: str = "") -> None:
    """Mark `path` as scratch of the live process `pid` (e.g. a sleeping child)."""
    from gstore import scratch

    me = scratch.ScratchOwner.current()
    owner = replace(me, pid=pid, start_time=scratch._proc_start_time(pid))
    marker = scratch.ScratchMarker(purpose=purpose, target=target, owner=owner, created=0.0)
    (Path(path) / scratch.MARKER).write_text(json.dumps(marker.to_json()))


def tree_digest(root: Path) -> dict[str, str]:
    """{relative path: sha1 of contents ('<dir>' for directories)} of everything under `root`."""
    out: dict[str, str] = {}
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = "<dir>"
        for f in filenames:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha1(fh.read()).hexdigest()
    return out


class DiskFullAfter:
    """Monkeypatch os.write / os.pwrite / os.writev so that, after `n` successful writes to files (not
    stdin/out/err), every further one fails with ENOSPC the way a full disk does: no path on it."""

    def __init__(self, monkeypatch, n: int) -> None:
        import errno

        self.n, self.calls = n, 0
        for name in ("write", "pwrite", "writev"):
            real = getattr(os, name)

            def fake(fd, *args, _real=real):
                if fd > 2:
                    self.calls += 1
                    if self.calls > self.n:
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return _real(fd, *args)

            monkeypatch.setattr(os, name, fake)
