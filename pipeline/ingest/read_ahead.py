"""Run an iterator a few items ahead in a background thread (parsing overlaps the consumer's work;
pyarrow and the nogil numba kernels release the GIL)."""
from __future__ import annotations

import queue
import threading
from typing import Iterator, TypeVar

T = TypeVar("T")


def read_ahead(items: Iterator[T], depth: int = 1, name: str = "gstore-read-ahead") -> Iterator[T]:
    """Yield `items`, produced up to `depth` ahead in a thread. The producer's exceptions re-raise
    here; closing or abandoning this generator stops the thread, joins it and closes `items` (in
    the producer thread, so a generator's `with` blocks exit where they were entered)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, re-raised there
            q.put(e)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name=name, daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                worker.join(0.05)
