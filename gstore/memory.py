"""Byte sizes and resident-memory measurement (peak RSS) for budgets and reports."""
from __future__ import annotations

import mmap
import re
import resource
import sys
import threading

import numpy as np

from gstore.errors import OptionError

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}

# The one default of every `--memory-budget` (ingest, partition, reorder, and the library calls behind
# them): a user who sets no budget gets the same peak target from every stage.
DEFAULT_MEMORY_BUDGET = "2GiB"


def parse_bytes(text: str | int) -> int:
    """Parse '2GiB', '512MB', '1.5g' or an int into a byte count (> 0)."""
    if isinstance(text, int):
        value = text
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
        unit = m.group(2).lower() if m else None
        if not m or unit not in _UNITS:
            raise OptionError(f"cannot read size {text!r}", hint="use e.g. 2GiB, 512MiB or 1000000000")
        value = int(float(m.group(1)) * _UNITS[unit])
    if value <= 0:
        raise OptionError(f"size must be positive, got {text!r}")
    return value


def format_bytes(n: float) -> str:
    """Human-readable binary size, e.g. '1.50 GiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"


def _proc_kib(path: str, key: str) -> int | None:
    """The `key:` field (in kB) of a /proc status-style file, in bytes; None where unavailable."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (VmHWM), in bytes."""
    peak = _proc_kib("/proc/self/status", "VmHWM:")
    if peak is not None:
        return peak
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def current_rss_bytes() -> int:
    """Current resident set size (VmRSS), in bytes; 0 where /proc is unavailable."""
    return _proc_kib("/proc/self/status", "VmRSS:") or 0


def anon_rss_bytes() -> int:
    """Anonymous resident memory (RssAnon), in bytes: what the process owns, without the pages of
    memory-mapped files (page cache the kernel can drop); 0 where /proc is unavailable."""
    return _proc_kib("/proc/self/status", "RssAnon:") or 0


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo, or None where unknown."""
    return _proc_kib("/proc/meminfo", "MemAvailable:")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so a stage can measure its own peak.

    Returns False where the kernel does not allow it.
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def release_pages(arr: np.ndarray | None) -> None:
    """Unmap the pages of a file mapping from this process (they stay in the page cache), so reading
    a memory-mapped array larger than RAM does not grow RSS (layer-wise inference, propagation).

    Only for np.memmap objects opened 'r' or 'r+' (MAP_SHARED): MADV_DONTNEED on private or
    anonymous memory would discard data, so anything else is left alone.
    """
    mm = getattr(arr, "_mmap", None) if isinstance(arr, np.memmap) else None
    if mm is None or getattr(arr, "mode", None) not in ("r", "r+"):
        return
    try:
        mm.madvise(mmap.MADV_DONTNEED)
    except (AttributeError, OSError, ValueError):
        pass


class ReleaseCounter:
    """Counts bytes touched through file mappings and says when to release them (release_pages).

    Releasing after every batch costs more than the rows themselves (every later touch faults its
    page in again, and each madvise walks the whole mapping), never releasing keeps every page ever
    touched in RSS: so callers release once `every` bytes were touched since the last release.
    Thread-safe: `add` is called from loader and writer threads; exactly one caller sees True per
    crossing, and the count restarts then.
    """

    def __init__(self, every: int) -> None:
        self.every = int(every)
        self.touched = 0          # bytes touched since the last release
        self._lock = threading.Lock()

    def add(self, nbytes: int) -> bool:
        """Count `nbytes`; True when the caller should release now."""
        with self._lock:
            self.touched += int(nbytes)
            if self.touched < self.every:
                return False
            self.touched = 0
            return True

    def reset(self) -> None:
        with self._lock:
            self.touched = 0
