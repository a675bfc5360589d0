"""Cold page cache handling (gstore/cold_pages.py): touch kernels against their twins, the mincore
probe, read-ahead, and loaders whose batches do not change with it."""
import gc
import os
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gstore
from gstore import cold_pages
from gstore.cold_page_kernels import touch_csr_rows, touch_rows
from gstore.cold_pages import (ColdPages, ColdStart, ReadAhead, missing_pages, random_access,
                               read_ahead)
from gstore.errors import OptionError
from gstore.memory import release_pages
from gstore.pipeline.loader import ClusterLoader, NeighborLoader
from gstore.pipeline.loader.queues import InFlightLimit, PipelineControl, Stopped
from gstore.pipeline.loader.seeds import EpochItems, SeedPlan, batch_seed
from gstore.pipeline.loader.throughput import drop_page_cache
from gstore.pipeline.sampling.neighbor import NeighborSampler
from gstore.store_invariants import is_checked
from reference_cold_pages import touch_csr_positions, touch_rows_positions
from store_factory import build_store, random_graph

PAGE = cold_pages.PAGE_BYTES


# ---- kernels against their twins ---------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 300), min_size=1, max_size=40), st.integers(1, 12),
       st.integers(1, 4), st.data())
def test_touch_csr_rows_reads_every_page_of_short_rows(degrees, page_items, max_pages, data):
    indptr = np.concatenate([[0], np.cumsum(degrees)]).astype(np.int64)
    indices = np.arange(1, indptr[-1] + 1, dtype=np.int32) * 3    # entry value = 3 * (pos + 1)
    nodes = np.array(data.draw(st.lists(st.integers(0, len(degrees) - 1), min_size=1, max_size=30)),
                     dtype=np.int64)
    lo = data.draw(st.integers(0, len(nodes)))
    hi = data.draw(st.integers(lo, len(nodes)))
    pos = touch_csr_positions(indptr, nodes, lo, hi, page_items, max_pages)
    got = touch_csr_rows(indptr, indices, nodes, np.int64(lo), np.int64(hi), np.int64(page_items),
                         np.int64(max_pages))
    assert got == sum(int(indices[p]) for p in pos)
    for v in nodes[lo:hi]:                          # the rule: every page of a short row is read
        a, b = int(indptr[v]), int(indptr[v + 1])
        read = {p for p in pos if a <= p < b}
        assert (b > a) == bool(read)
        if b > a and b - a <= page_items * max_pages:
            assert all(any(q <= p < q + page_items for p in read) for q in range(a, b, page_items))
        if b - a > page_items * max_pages:
            assert len(read) <= max_pages + 1       # long rows: a few places, not every page


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 50), st.integers(1, 5), st.data())
def test_touch_rows_reads_column_zero_of_each_row(n, f, data):
    rows = np.arange(n * f, dtype=np.uint16).reshape(n, f)
    ids = np.array(data.draw(st.lists(st.integers(0, n - 1), max_size=40)), dtype=np.int64)
    lo = data.draw(st.integers(0, len(ids)))
    hi = data.draw(st.integers(lo, len(ids)))
    want = sum(int(rows[r, c]) for r, c in touch_rows_positions(ids, lo, hi))
    assert touch_rows(rows, ids, np.int64(lo), np.int64(hi)) == want


# ---- the probe, the mappings, read-ahead -------------------------------------------------------

def _file(tmp_path, nbytes=64 * PAGE, name="f.bin"):
    path = tmp_path / name
    data = (np.arange(nbytes // 8, dtype=np.int64) * 7)
    data.tofile(path)
    os.sync()
    return path, data


def _evictable(path) -> bool:
    """Whether DONTNEED drops this file's pages here (not on tmpfs, for one)."""
    arr = np.memmap(path, dtype=np.uint8, mode="r")
    drop_page_cache(path.parent)
    lost = missing_pages(arr, np.arange(0, arr.nbytes, PAGE))
    del arr
    return lost > 0


def test_missing_pages_sees_eviction_and_reads(tmp_path):
    path, _ = _file(tmp_path)
    if cold_pages._MINCORE is None or not _evictable(path):
        pytest.skip("no mincore, or a file system whose pages cannot be dropped")
    arr = np.memmap(path, dtype=np.int64, mode="r")
    offs = np.arange(0, arr.nbytes, PAGE)
    drop_page_cache(tmp_path)
    assert missing_pages(arr, offs) == len(offs)
    int(arr[::PAGE // 8].sum())                       # read one item per page
    assert missing_pages(arr, offs) == 0
    release_pages(arr)
    drop_page_cache(tmp_path)
    assert read_ahead([path, tmp_path / "absent"], chunk=4 * PAGE, depth=2) == arr.nbytes
    assert missing_pages(arr, offs) == 0               # read ahead without touching a page


def test_missing_pages_without_mincore_counts_all(tmp_path, monkeypatch):
    path, _ = _file(tmp_path)
    arr = np.memmap(path, dtype=np.int64, mode="r")
    monkeypatch.setattr(cold_pages, "_MINCORE", None)
    assert missing_pages(arr, np.array([0, PAGE, 2 * PAGE])) == 3
    assert missing_pages(arr, np.array([], dtype=np.int64)) == 0


def test_read_ahead_stops_on_request(tmp_path):
    path, data = _file(tmp_path, 32 * PAGE)
    stop = threading.Event()
    stop.set()
    assert read_ahead([path], stop, chunk=PAGE) == 0
    ahead = ReadAhead([path])
    ahead.start()
    ahead.join(10)
    assert ahead.advised == data.nbytes


def test_random_access_same_bytes_and_checked_state(tmp_path):
    path = build_store(tmp_path / "s", *random_graph(50, 200, seed=1), 50)
    s = gstore.open(path)
    csr = s.csr()
    fresh = random_access(csr.indices)
    assert fresh is not csr.indices and isinstance(fresh, np.memmap)
    np.testing.assert_array_equal(fresh, csr.indices)
    assert is_checked(csr.indices) and is_checked(fresh)   # same file, same bytes
    plain = np.arange(5)
    assert random_access(plain) is plain
    with pytest.raises(ValueError):
        fresh[0] = 1                                       # read-only


class _Calls(ColdPages):
    """ColdPages that records its touches instead of running them."""

    def __init__(self, threads):
        super().__init__(threads)
        self.ran = []

    def _run(self, n, slices, body):
        self.ran.append((n, slices))
        super()._run(n, slices, body)


@pytest.mark.parametrize("lost, touched", [(0, False), (1, False), (2, True), (64, True)])
def test_touch_only_when_the_probe_finds_cold_pages(monkeypatch, lost, touched):
    # feature rows and indptr report `lost` missing pages, the int32 indices none
    monkeypatch.setattr(cold_pages, "missing_pages",
                        lambda arr, offs: 0 if arr.dtype == np.int32 else lost)
    cold = ColdStart(4)
    cp = _Calls(cold)
    rows = np.zeros((1000, 3), dtype=np.uint16)
    cp.rows(rows, np.arange(1000, dtype=np.int64))
    indptr = np.arange(0, 2001, 2, dtype=np.int64)
    cp.csr_rows(indptr, np.zeros(2000, dtype=np.int32), np.arange(1000, dtype=np.int64))
    assert (cp.probes, cp.touches) == (2, 2 if touched else 0)
    assert bool(cp.ran) == touched and all(s == 4 for _, s in cp.ran)
    cp.rows(rows, np.arange(10, dtype=np.int64))       # too few rows to hand to threads
    assert cp.probes == 2
    cold.close()
    cp.rows(rows, np.arange(1000, dtype=np.int64))     # closed: nothing more
    assert cp.probes == 2


def test_csr_probe_adds_offsets_and_rows(monkeypatch):
    # one page of indptr and one of the rows missing: cold together
    monkeypatch.setattr(cold_pages, "missing_pages", lambda arr, offs: 1)
    cp = _Calls(ColdStart(2))
    indptr = np.arange(0, 2001, 2, dtype=np.int64)
    cp.csr_rows(indptr, np.zeros(2000, dtype=np.int32), np.arange(1000, dtype=np.int64))
    assert cp.touches == 1 and cp.ran == [(1000, 2)]


def test_cold_start_reads_what_fits_and_stops_when_collected(tmp_path, monkeypatch):
    big, _ = _file(tmp_path, 64 * PAGE, "big.bin")
    small, _ = _file(tmp_path, 4 * PAGE, "small.bin")
    monkeypatch.setattr(cold_pages, "fits_page_cache", lambda n: n <= 10 * PAGE)
    cold = ColdStart(2)
    cold.start([small, big, small])
    ahead = cold._read_ahead
    ahead.join(10)
    assert ahead.paths == [str(small)] and ahead.depth == 1
    cold.first_batch_out()
    assert ahead.depth == cold_pages.READ_AHEAD_DEPTH
    cold.start([big])                                  # once only
    assert cold._read_ahead is ahead
    stopped = []
    monkeypatch.setattr(ReadAhead, "stop", lambda self: stopped.append(self))
    del cold
    gc.collect()
    assert stopped == [ahead]


# ---- loaders: same batches with and without, first batch alone ---------------------------------

N = 600


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rng = np.random.default_rng(3)
    src, dst = random_graph(N, 6000, seed=4)
    path = build_store(tmp_path_factory.mktemp("cold") / "s", src, dst, N,
                       features=rng.standard_normal((N, 8)).astype(np.float16),
                       labels=rng.integers(0, 3, N), splits={"train": np.arange(0, N, 2)})
    return gstore.open(path)


def _digest(loader, limit=6):
    out = []
    for i, b in enumerate(loader):
        if i >= limit:
            break
        out.append((b.nodes.numpy().copy(), b.x.numpy().copy(), b.y.numpy().copy()))
    return out


@pytest.mark.parametrize("kind", ["neighbor", "cluster"])
def test_batches_do_not_depend_on_cold_page_handling(store, kind, monkeypatch):
    # every probe says cold, so every batch is touched through the threads
    monkeypatch.setattr(cold_pages, "missing_pages", lambda arr, offs: len(offs))

    def make(ft):
        if kind == "neighbor":
            return NeighborLoader(store, [4, 3], 40, "train", num_workers=2, seed=3, fault_threads=ft)
        return ClusterLoader(store, parts=(np.arange(N) % 6).astype(np.int32), num_parts=6,
                             clusters_per_batch=2, num_workers=2, seed=3, fault_threads=ft)

    off, on = make(0), make(8)
    want, got = _digest(off), _digest(on)
    assert len(want) == len(got) > 1
    for (n0, x0, y0), (n1, x1, y1) in zip(want, got):
        np.testing.assert_array_equal(n0, n1)
        np.testing.assert_array_equal(x0, x1)
        np.testing.assert_array_equal(y0, y1)
    assert on.source.cold_pages.touches > 0
    if kind == "neighbor":
        assert on.sampler.cold_pages.touches > 0
        assert not np.shares_memory(on.sampler.indices, store.indices)   # its own mapping
    on.close()
    assert off.cold_start is None and off.source.cold_pages is None


def test_fault_threads_option_is_checked(store):
    for bad in (-1, 1.5, True):
        with pytest.raises(OptionError, match="fault_threads"):
            NeighborLoader(store, [2], 10, fault_threads=bad)


def test_sampler_pickles_without_its_threads(store):
    import pickle

    s = NeighborSampler.from_store(store, [3], cold_start=ColdStart(2))
    assert s.cold_pages is not None
    s2 = pickle.loads(pickle.dumps(s))
    assert s2.cold_pages is None
    seeds = np.arange(0, 40, dtype=np.int64)
    np.testing.assert_array_equal(s.sample(seeds, 1).nodes, s2.sample(seeds, 1).nodes)


def test_in_flight_limit_holds_back_until_widened():
    limit = InFlightLimit(3, PipelineControl(), start=1)
    limit.acquire()
    got = []
    t = threading.Thread(target=lambda: (limit.acquire(), got.append(1)), daemon=True)
    t.start()
    t.join(0.3)
    assert not got                        # the second batch waits for the first
    limit.widen()
    t.join(5)
    assert got == [1]
    limit.acquire()                       # the third permit
    limit.widen()                         # idempotent: no more permits appear
    c = PipelineControl()
    one = InFlightLimit(1, c)
    one.acquire()
    c.stop.set()
    with pytest.raises(Stopped):
        one.acquire()


def test_epoch_items_made_on_demand_match_the_rule():
    plan = SeedPlan(np.arange(100, dtype=np.int64), 16, True, False, 9)
    items = EpochItems(plan, 2, 3, seed=9)
    batches = plan.batches(2)
    assert len(items) == len(batches) - 3 == 4
    for k in range(len(items)):
        it = items[k]
        assert (it.seq, it.epoch, it.index) == (k, 2, 3 + k)
        assert it.seed == batch_seed(9, 2, 3 + k)
        np.testing.assert_array_equal(it.payload, batches[3 + k])
        assert items.where(k) == (2, 3 + k)
    assert items[-1].index == items[3].index and [i.index for i in items[1:3]] == [4, 5]
    with pytest.raises(IndexError):
        items[4]
    assert len(EpochItems(plan, 0, 99, seed=9)) == 0


class _SlowFirst:
    """Sampler that takes 0.3 s on its first call and records when each call starts."""

    def __init__(self, inner):
        self.inner, self.starts, self._lock = inner, [], threading.Lock()

    def sample(self, seeds, seed=0):
        import time

        with self._lock:
            self.starts.append(time.perf_counter())
            first = len(self.starts) == 1
        if first:
            time.sleep(0.3)
        return self.inner.sample(seeds, seed)


@pytest.mark.parametrize("ft", [0, 4])
def test_first_batch_is_made_alone_then_the_pipeline_widens(store, ft):
    import time

    sampler = _SlowFirst(NeighborSampler.from_store(store, [3, 2]))
    loader = NeighborLoader(store, [3, 2], 20, "train", num_workers=2, sampler=sampler, fault_threads=ft)
    it = iter(loader)
    next(it)
    got_first = time.perf_counter()
    for _ in range(4):
        next(it)
    it.close()
    loader.close()
    if ft:      # nothing else was sampled while the first batch was made
        assert min(sampler.starts[1:]) >= got_first - 0.05
    else:       # the second worker started at once
        assert min(sampler.starts[1:]) < sampler.starts[0] + 0.25
    again = iter(loader)                       # later runs are not held back
    next(again)
    again.close()
