"""Scratch directories gstore may delete: each carries a marker naming the process that made it.

gstore never deletes a path it did not create. Every directory it builds in and later removes
(`STORE.tmp`, a partition's scratch and new arrays, the replaced store set aside during a swap, the
demo's work directory) gets the marker file `.gstore-scratch` as the first thing after `mkdir`:

    {"gstore_scratch": 1, "purpose": "store build", "target": "/data/store",
     "pid": 4242, "start_time": 81234567, "boot_id": "...", "hostname": "node1", "created": 1.7e9}

`start_time` is field 22 of /proc/<pid>/stat (clock ticks since boot) and `boot_id` the kernel's
per-boot id, so a pid reused by another process (or after a reboot) is not mistaken for the owner.
A leftover directory is reclaimed only when its marker names an owner on this host that is gone;
an unmarked one (a user's own `OUT.tmp`), a file, a symlink, one whose owner still runs, or one made
on another host is refused with a one-line StoreError naming the path and the fix.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Literal

from gstore.errors import StoreError

log = logging.getLogger(__name__)

MARKER = ".gstore-scratch"
MARKER_VERSION = 1
# the lock every step that writes into an existing store holds (partition, reorder): a marked
# directory inside the store, so a second writer, or a rebuild that would replace the store, sees it
STORE_LOCK = "_partition_scratch"

OwnerState = Literal["self", "alive", "gone", "elsewhere"]

# scratch dirs this process has created and not yet removed: a marker of this process naming a path
# outside this set is a leftover of an earlier, failed step in the same process (a notebook), not a
# live build
_ACTIVE: set[str] = set()


def _proc_start_time(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot; None when the process does not exist
    (or /proc is unavailable)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return parse_start_time(fh.read())
    except OSError:
        return None


def parse_start_time(stat: bytes) -> int | None:
    """Field 22 (starttime) of a /proc/<pid>/stat line."""
    # the command name (field 2) may hold spaces and parentheses: fields resume after the last ')'
    fields = stat[stat.rfind(b")") + 2:].split()
    try:
        return int(fields[19])          # field 22 overall; fields[0] is field 3 (state)
    except (IndexError, ValueError):
        return None


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()
    except OSError:
        return None


@dataclass(frozen=True)
class ScratchOwner:
    """The process that made a scratch directory."""

    pid: int
    start_time: int | None
    boot_id: str | None
    hostname: str

    @staticmethod
    def current() -> "ScratchOwner":
        pid = os.getpid()
        return ScratchOwner(pid=pid, start_time=_proc_start_time(pid), boot_id=_boot_id(),
                            hostname=socket.gethostname())

    def state(self) -> OwnerState:
        """'self' (this process), 'alive' (another live process), 'gone', or 'elsewhere' (made on
        another host: its owner cannot be checked from here)."""
        me = ScratchOwner.current()
        if self.hostname != me.hostname:
            return "elsewhere"
        if self.boot_id and me.boot_id and self.boot_id != me.boot_id:
            return "gone"                       # made before the last reboot
        if self.pid == me.pid and self.start_time == me.start_time:
            return "self"
        if me.start_time is None:               # no /proc: the pid alone is all we can check
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return "gone"
            except PermissionError:
                return "alive"
            return "alive"
        started = _proc_start_time(self.pid)
        return "alive" if started is not None and started == self.start_time else "gone"


@dataclass(frozen=True)
class ScratchMarker:
    """Contents of a scratch directory's marker file."""

    purpose: str            # "store build", "partition scratch", "replaced store", ...
    target: str             # the path the scratch serves (the store being built or changed)
    owner: ScratchOwner
    created: float

    def to_json(self) -> dict:
        d = {"gstore_scratch": MARKER_VERSION, "purpose": self.purpose, "target": self.target,
             "created": self.created}
        d.update(asdict(self.owner))
        return d

    @staticmethod
    def from_json(d: dict) -> "ScratchMarker":
        """Parse a marker; anything but the exact fields and types `to_json` writes is a ValueError
        (a garbled or hand-made marker must not vouch for deleting a directory)."""
        def typed(key: str, kinds: tuple, optional: bool = False):
            v = d.get(key)
            if v is None and optional:
                return None
            if isinstance(v, bool) or not isinstance(v, kinds):
                raise ValueError(f"marker field {key!r} is not {kinds}")
            return v

        if not isinstance(d, dict) or typed("gstore_scratch", (int,)) != MARKER_VERSION:
            raise ValueError("not a gstore scratch marker")
        pid = typed("pid", (int,))
        if not 0 < pid < 2**31:                 # pid_max is at most 2^22 on Linux
            raise ValueError("marker pid out of range")
        owner = ScratchOwner(pid=pid, start_time=typed("start_time", (int,), optional=True),
                             boot_id=typed("boot_id", (str,), optional=True),
                             hostname=typed("hostname", (str,)))
        created = typed("created", (int, float), optional=True)
        return ScratchMarker(purpose=typed("purpose", (str,)), target=typed("target", (str,), optional=True) or "",
                             owner=owner, created=float(created or 0.0))


def read_marker(path: Path) -> ScratchMarker | None:
    """The marker of directory `path`, or None when it has none (or an unreadable one)."""
    try:
        return ScratchMarker.from_json(json.loads((Path(path) / MARKER).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def mark(path: Path, purpose: str, target: Path | str) -> None:
    """Write this process's marker into the existing directory `path` (which it made or moved aside)."""
    marker = ScratchMarker(purpose=purpose, target=str(target), owner=ScratchOwner.current(),
                           created=time.time())
    tmp = Path(path) / (MARKER + ".partial")
    # a kill mid-write leaves only the .partial, and a dir holding nothing else is reclaimed as empty
    with open(tmp, "w") as fh:
        json.dump(marker.to_json(), fh)
    os.replace(tmp, Path(path) / MARKER)


def unmark(path: Path) -> None:
    """Drop the marker (the directory becomes a real output, e.g. a committed store)."""
    (Path(path) / MARKER).unlink(missing_ok=True)
    release(path)


def release(path: Path) -> None:
    """Forget `path` as this process's scratch in use (it was removed or became an output)."""
    _ACTIVE.discard(os.path.abspath(path))


def owned_by_me(path: Path) -> bool:
    marker = read_marker(path)
    return marker is not None and marker.owner.state() == "self"


def reclaim(path: Path, what: str) -> None:
    """Make sure nothing is at `path`: remove it if it is gstore scratch whose owner is gone (logged),
    else raise a StoreError saying why it stays and what to do. `what` says what gstore wants the
    path for, e.g. "temp dir of store /data/s"."""
    path = Path(path)
    if not os.path.lexists(path):
        return
    if path.is_symlink() or not path.is_dir():
        kind = "a symlink" if path.is_symlink() else "a file"
        raise StoreError(f"exists and is {kind}, not gstore scratch; gstore needs this path as the {what}",
                         path=path, hint="move or remove it, or choose another output")
    marker = read_marker(path)
    if marker is None:
        if _only_partial_marker(path):
            shutil.rmtree(path)          # a kill between mkdir and the marker's rename: ours, empty
            return
        raise StoreError(f"exists and was not made by gstore (no {MARKER} marker), so gstore will not "
                         f"delete it; gstore needs this path as the {what}", path=path,
                         hint="move or rename it, or choose another output")
    state = marker.owner.state()
    if state == "alive":
        raise StoreError(f"another gstore process (pid {marker.owner.pid}) is using it as the "
                         f"{marker.purpose} of {marker.target}", path=path,
                         hint="wait for that process to finish, or stop it")
    if state == "elsewhere":
        raise StoreError(f"made by gstore on host {marker.owner.hostname} (pid {marker.owner.pid}), "
                         "whose process cannot be checked from here", path=path,
                         hint="if no gstore runs there, remove it")
    if state == "self" and os.path.abspath(path) in _ACTIVE:
        raise StoreError(f"this process already uses it as the {marker.purpose} of {marker.target}",
                         path=path, hint="run one build per output at a time")
    log.warning("removing %s: stale %s of %s left by gstore pid %d (%s)", path, marker.purpose,
                marker.target, marker.owner.pid, "an earlier failed step" if state == "self" else "exited")
    shutil.rmtree(path)


def refuse_if_in_use(path: Path, what: str) -> None:
    """Raise a StoreError when `path` is scratch of another live gstore process: `what` (the store,
    say) is being written by it, and replacing or changing it now would lose that run's work."""
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        return
    marker = read_marker(path)
    if marker is not None and marker.owner.state() == "alive":
        raise StoreError(f"another gstore process (pid {marker.owner.pid}) is writing {what} "
                         f"({marker.purpose} at {path})", path=path,
                         hint="wait for that process to finish, or stop it")


def _only_partial_marker(path: Path) -> bool:
    try:
        names = os.listdir(path)
    except OSError:
        return False
    return set(names) <= {MARKER + ".partial"}


def create(path: Path, purpose: str, target: Path | str) -> Path:
    """Reclaim stale scratch at `path`, make the directory (and its parents) and mark it at once."""
    path = Path(path)
    what = f"{purpose} dir for {target}"
    reclaim(path, what)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir()
    except FileExistsError:
        reclaim(path, what)    # raced with another process: say who it is
        raise
    try:
        mark(path, purpose, target)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    _ACTIVE.add(os.path.abspath(path))
    return path


def remove(path: Path) -> bool:
    """Delete scratch `path` if this process owns it (its marker says so); else leave it, and say
    so in the log. True when it was removed (or is already gone)."""
    path = Path(path)
    if not os.path.lexists(path):
        release(path)           # e.g. a lock inside a store that a swap replaced meanwhile
        return True
    if not owned_by_me(path):
        log.warning("not removing %s: it is not scratch made by this process", path)
        return False
    shutil.rmtree(path, ignore_errors=True)
    release(path)
    return not os.path.lexists(path)


def name_path_in(exc: OSError, path: Path) -> None:
    """Give a path-less OSError (a failed write(2) on a descriptor, e.g. ENOSPC) the path it was
    writing under, so the CLI's one-line error can name it."""
    if exc.filename is None:
        exc.filename = str(path)


@contextmanager
def scratch_dir(path: Path, purpose: str, target: Path | str) -> Iterator[Path]:
    """`create` the scratch dir, yield it, `remove` it however the block ends. A path-less OSError
    from inside is given `target`'s path (the store being worked on)."""
    create(path, purpose, target)
    try:
        yield path
    except OSError as exc:
        name_path_in(exc, Path(target))
        raise
    finally:
        remove(path)


def claim_output_dir(path: Path, purpose: str, option: str) -> None:
    """Make directory `path` an output this process may write into: new or empty (then marked), or
    marked with `purpose` by an earlier run whose process is gone. Anything else (a user's directory
    with files in it, a file, a symlink, another purpose's dir, a live run's) is refused with one
    line, so `-o ~` can never overwrite a user's files. `option` names the flag in the message."""
    from gstore.errors import OptionError

    path = Path(path)
    if os.path.lexists(path) and (path.is_symlink() or not path.is_dir()):
        raise OptionError(f"{option} exists and is not a directory", path=path, hint=f"choose another {option}")
    marker = read_marker(path) if path.is_dir() else None
    if marker is None:
        if path.is_dir() and os.listdir(path):
            raise OptionError(f"{option} exists, is not empty and was not made by gstore ({purpose}); "
                              "gstore will not write over its files", path=path,
                              hint=f"choose a new or empty {option}")
        path.mkdir(parents=True, exist_ok=True)
    elif marker.purpose != purpose:
        raise OptionError(f"{option} is gstore's {marker.purpose} dir, not a {purpose} dir", path=path,
                          hint=f"choose another {option}")
    elif marker.owner.state() == "alive":
        raise OptionError(f"another gstore process (pid {marker.owner.pid}) is writing this {option}",
                          path=path, hint=f"wait for it, or choose another {option}")
    mark(path, purpose, path)
