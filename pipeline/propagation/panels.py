"""Panels of a hop's input: source rows [c0, c1) of an (N, F) store array, read with pread.

The rows are read into reused buffers (never memory-mapped: a random gather over a mapped file
larger than the budget would map page after page into the process), upcast to float32 and
multiplied by the source scale. With one panel (the input fits the plan) it is read once and
served to every block; otherwise a reader thread (pipeline/ingest/read_ahead.py: light, unlike
the loader's queues, whose package imports torch) fills the next buffer while the kernel consumes
the current one, in the order the blocks ask for them (panels 0..P-1, once per block).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from gstore.errors import StoreError
from gstore.pipeline.ingest.read_ahead import read_ahead
from gstore.pipeline.propagation.plan import HopPlan
from gstore.shard_array import ArrayRecord, shard_path


@dataclass(frozen=True)
class PanelSource:
    """An (N, F) float32/float16 store array as a file: `path` holds row r at byte r * row_bytes."""

    path: Path
    num_rows: int
    width: int
    dtype: np.dtype

    @staticmethod
    def of(store_path: Path, rec: ArrayRecord) -> "PanelSource":
        return PanelSource(path=shard_path(Path(store_path) / rec.name, len(rec.shape)), num_rows=int(rec.shape[0]),
                           width=int(rec.shape[1]), dtype=np.dtype(rec.dtype))

    @property
    def row_bytes(self) -> int:
        return self.width * self.dtype.itemsize


@dataclass
class Panel:
    """Scaled float32 rows [start, start + len(rows)) of the source; `buf` is the reused buffer."""

    start: int
    rows: np.ndarray
    buf: "_Buffer"


@dataclass
class _Buffer:
    rows: np.ndarray                # float32 (panel_rows, F)
    raw: np.ndarray | None          # (panel_rows, F) as stored, when not float32


def read_rows(fd: int, source: PanelSource, start: int, out: np.ndarray) -> None:
    """pread rows [start, start + len(out)) of `source` into `out` (C-contiguous, source dtype)."""
    view, offset, done = memoryview(out).cast("B"), start * source.row_bytes, 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if got == 0:
            raise StoreError(f"{source.path} ends at byte {offset + done}, before row {start + len(out)}",
                             path=source.path, hint="the store is truncated; run `gstore verify`")
        done += got


class _Stream:
    def __init__(self, source: PanelSource, plan: HopPlan, scale: np.ndarray | None) -> None:
        self.source, self.plan, self.scale = source, plan, scale
        self.read_bytes = 0
        self._fd = os.open(source.path, os.O_RDONLY)

    def _new_buffer(self) -> _Buffer:
        shape = (self.plan.panel_rows, self.source.width)
        raw = None if self.source.dtype == np.float32 else np.empty(shape, dtype=self.source.dtype)
        return _Buffer(rows=np.empty(shape, dtype=np.float32), raw=raw)

    def load(self, p: int, buf: _Buffer) -> Panel:
        start = p * self.plan.panel_rows
        n = min(self.plan.panel_rows, self.source.num_rows - start)
        rows = buf.rows[:n]
        if buf.raw is None:
            read_rows(self._fd, self.source, start, rows)
        else:
            read_rows(self._fd, self.source, start, buf.raw[:n])
            np.copyto(rows, buf.raw[:n])
        if self.scale is not None:
            # numpy, not a parallel kernel: this may run on the reader thread beside one
            np.multiply(rows, self.scale[start:start + n, None], out=rows)
        self.read_bytes += n * self.source.row_bytes
        return Panel(start=start, rows=rows, buf=buf)

    def close(self) -> None:
        os.close(self._fd)


class _OnePanel(_Stream):
    """The whole input as one panel, read on first use and served to every block."""

    def __init__(self, source, plan, scale) -> None:
        super().__init__(source, plan, scale)
        self._panel: Panel | None = None

    def next(self) -> Panel:
        if self._panel is None:
            self._panel = self.load(0, self._new_buffer())
        return self._panel

    def done(self, panel: Panel) -> None:
        pass


class _ReadAhead(_Stream):
    """Panels 0..P-1 once per block, read one ahead by a thread (pipeline/ingest/read_ahead.py).

    Three buffers in rotation: the consumer holds panel j-1 at most, the queue (depth 1) holds
    panel j, and the thread fills panel j+1 only after handing over j, i.e. after the consumer
    took j-1 and so finished j-2, whose buffer panel j+1 reuses.
    """

    def __init__(self, source, plan, scale, blocks: int) -> None:
        super().__init__(source, plan, scale)
        buffers = [self._new_buffer() for _ in range(plan.buffers)]
        total = blocks * plan.panels

        def produce() -> Iterator[Panel]:
            for j in range(total):
                yield self.load(j % plan.panels, buffers[j % len(buffers)])

        self._panels = read_ahead(produce(), depth=1, name="gstore-propagate-panels")

    def next(self) -> Panel:
        return next(self._panels)

    def done(self, panel: Panel) -> None:
        pass

    def close(self) -> None:
        self._panels.close()          # stops and joins the reader thread
        super().close()


@contextmanager
def panel_stream(source: PanelSource, plan: HopPlan, scale: np.ndarray | None, blocks: int) -> Iterator[_Stream]:
    """The panels `blocks` blocks ask for, in order: `next()` then `done(panel)` for each.
    scale: float32 (N,) source scale (None: rows as stored, upcast)."""
    stream = _OnePanel(source, plan, scale) if plan.panels == 1 else _ReadAhead(source, plan, scale, blocks)
    try:
        yield stream
    finally:
        stream.close()
