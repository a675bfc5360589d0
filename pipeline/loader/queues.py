"""Bounded queues and worker threads for the loader's stages.

Every blocking call waits in short slices and checks the run's stop Event between them, so a stage
blocked on a full or empty queue notices shutdown within `POLL_S` seconds. A stage thread that raises
hands its exception to the run (`PipelineControl.fail`) instead of dying silently; the consumer
re-raises it chained (`LoaderError(...) from exc`, so the worker's traceback is kept).
"""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable

log = logging.getLogger(__name__)

POLL_S = 0.05


class Stopped(Exception):
    """Raised inside a stage when the run is shutting down; ends the stage quietly."""


@dataclass
class StageFailure:
    """An exception raised by a stage, travelling downstream in place of the batch it concerns."""

    seq: int | None       # sequence number of the batch, None when the stage itself broke
    stage: str
    exc: BaseException


class PipelineControl:
    """Shared by all stages of one run: the stop Event and the first failure outside any batch."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self.failure: StageFailure | None = None

    def fail(self, stage: str, exc: BaseException) -> None:
        with self._lock:
            if self.failure is None:
                self.failure = StageFailure(None, stage, exc)
        self.stop.set()

    def check(self) -> None:
        if self.stop.is_set():
            raise Stopped()


class StageQueue:
    """queue.Queue(maxsize) whose put/get give up with `Stopped` once the run stops."""

    def __init__(self, maxsize: int, control: PipelineControl) -> None:
        self._q: queue.Queue = queue.Queue(maxsize=max(1, maxsize))
        self._control = control

    def put(self, item: Any) -> None:
        while True:
            self._control.check()
            try:
                self._q.put(item, timeout=POLL_S)
                return
            except queue.Full:
                continue

    def get(self) -> Any:
        while True:
            self._control.check()
            try:
                return self._q.get(timeout=POLL_S)
            except queue.Empty:
                continue

    def poll(self, timeout: float = POLL_S) -> Any:
        """One get attempt that ignores the stop flag (the consumer checks failures itself);
        raises queue.Empty after `timeout` seconds."""
        return self._q.get(timeout=timeout)

    def drain(self) -> None:
        """Drop queued items (releases the buffers they hold) after the run stopped."""
        while True:
            try:
                self._q.get_nowait()
            except queue.Empty:
                return


class InFlightLimit:
    """Caps the batches dispatched but not yet taken by the consumer (bounds memory)."""

    def __init__(self, limit: int, control: PipelineControl, start: int | None = None) -> None:
        """start: permits at first (default: all `limit`); `widen()` grants the rest once."""
        limit = max(1, limit)
        first = limit if start is None else min(limit, max(1, start))
        self._sem = threading.Semaphore(first)
        self._held_back = limit - first
        self._control = control

    def widen(self) -> None:
        """Grant the permits held back by `start` (idempotent)."""
        n, self._held_back = self._held_back, 0
        for _ in range(n):
            self._sem.release()

    def acquire(self) -> None:
        while not self._sem.acquire(timeout=POLL_S):
            self._control.check()
        if self._control.stop.is_set():
            self._sem.release()
            raise Stopped()

    def release(self) -> None:
        self._sem.release()


class StageThread(threading.Thread):
    """Runs `body()` once in a daemon thread; `Stopped` ends it quietly, anything else fails the run."""

    def __init__(self, name: str, body: Callable[[], None], control: PipelineControl) -> None:
        super().__init__(name=f"gstore-{name}", daemon=True)
        self.stage = name
        self._body = body
        self._control = control

    def run(self) -> None:
        try:
            self._body()
        except Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, never swallowed
            log.debug("stage %s failed: %r", self.stage, exc)
            self._control.fail(self.stage, exc)
        finally:
            self._body = None  # drop references to the run's objects promptly
