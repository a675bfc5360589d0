"""read_ahead: order kept, producer errors re-raised, abandoning it stops the thread and closes the source."""
from __future__ import annotations

import threading

import pytest

from gstore.pipeline.ingest.read_ahead import read_ahead


def test_order_and_exception():
    assert list(read_ahead(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield 1
        raise ValueError("bad block")

    it = read_ahead(failing())
    assert next(it) == 1
    with pytest.raises(ValueError, match="bad block"):
        next(it)


def test_abandoned_consumer_stops_thread_and_closes_source():
    before = threading.active_count()
    closed = []

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.append(threading.current_thread().name)

    it = read_ahead(endless(), depth=2, name="t-read")
    assert [next(it) for _ in range(5)] == [0, 1, 2, 3, 4]
    it.close()
    assert closed == ["t-read"]                 # closed in the producer thread
    assert threading.active_count() == before
