"""History row I/O: the write kernels against their plain-Python twins, the mapping's advice, the
shared release counter, and pulls overlapping the writes of the batch two before (exactly)."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference_history_io as ref
from gstore.memory import ReleaseCounter
from gstore.pipeline.features.cache import bit_view
from gstore.pipeline.history import history_kernels as hk
from gstore.pipeline.history.arrays import HistoryArrays, HistoryLayout
from test_history import model_for, random_histories, run_serial, run_threaded, store  # noqa: F401


def unique_ids(draw, n_rows: int, n: int) -> np.ndarray:
    return np.array(draw(st.lists(st.integers(0, n_rows - 1), min_size=n, max_size=n, unique=True)),
                    dtype=np.int64)


@settings(max_examples=40, deadline=None)
@given(st.data(), st.sampled_from(["float16", "float32"]))
def test_write_kernels_equal_their_twins(data, dtype):
    n_rows, width = data.draw(st.integers(1, 40)), data.draw(st.integers(1, 6))
    n = data.draw(st.integers(0, n_rows))
    ids = unique_ids(data.draw, n_rows, n)
    order = np.argsort(ids, kind="stable")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    base = rng.standard_normal((n_rows, width)).astype(dtype)
    rows = rng.standard_normal((n, width)).astype(dtype)
    got, want = base.copy(), base.copy()
    cut = data.draw(st.integers(0, n))          # two slices, as two I/O threads run them
    for lo, hi in ((0, cut), (cut, n)):
        hk.scatter_rows(bit_view(got), ids, order, lo, hi, bit_view(rows))
    ref.scatter_rows(want, ids, order, rows)
    np.testing.assert_array_equal(got, want)
    back, back_ref = np.zeros_like(rows), np.zeros_like(rows)
    for lo, hi in ((0, cut), (cut, n)):
        hk.gather_rows_range(bit_view(got), ids, order, lo, hi, bit_view(back))
    ref.gather_rows(got, ids, order, back_ref)
    np.testing.assert_array_equal(back, back_ref)
    g32, w32 = base.astype(np.float32), base.astype(np.float32)
    add = rng.standard_normal((n, width)).astype(np.float32)
    for lo, hi in ((0, cut), (cut, n)):
        hk.add_rows(g32, ids, order, lo, hi, add)
    ref.add_rows(w32, ids, order, add)
    np.testing.assert_array_equal(g32, w32)
    for lo, hi in ((0, cut), (cut, n)):
        hk.zero_rows(g32, ids, order, lo, hi)
    ref.zero_rows(w32, ids, order)
    np.testing.assert_array_equal(g32, w32)
    assert not hk.has_repeats(ids, order)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 30), max_size=25), st.lists(st.integers(0, 30), max_size=25))
def test_member_mask_and_repeats_equal_their_twins(ids, keys):
    ids, keys = np.array(ids, np.int64), np.unique(np.array(keys, np.int64))
    got, want = np.empty(len(ids), bool), np.empty(len(ids), bool)
    assert hk.member_mask(ids, keys, got) == ref.member_mask(ids, keys, want)
    np.testing.assert_array_equal(got, want)
    order = np.argsort(ids, kind="stable")
    assert hk.has_repeats(ids, order) == ref.has_repeats(ids, order)


def test_repeated_ids_keep_numpy_semantics(tmp_path):
    """A repeated row (never from a batch, but the arrays are a public class): last write wins, the
    add is numpy's g[ids] + rows, as before the kernels."""
    arrays = HistoryArrays.create(tmp_path / "h", HistoryLayout(8, (3,), "float32", True))
    ids = np.array([5, 1, 5], np.int64)
    rows = np.arange(9, dtype=np.float32).reshape(3, 3)
    arrays.write_emb(0, ids, rows)
    arrays.add_grad(0, ids, rows)
    want = np.zeros((8, 3), np.float32)
    want[ids] = rows
    np.testing.assert_array_equal(np.asarray(arrays.emb[0]), want)
    np.testing.assert_array_equal(np.asarray(arrays.grad[0]), want)


def test_rows_split_over_the_io_threads_equal_one_thread(tmp_path):
    """Reads and writes of many rows run as slices on the pool; the files and the rows read are
    what one thread gives (and what numpy gives)."""
    layout = HistoryLayout(5000, (8,), "float16", True)
    rng = np.random.default_rng(3)
    ids = rng.permutation(5000)[:3000].astype(np.int64)
    rows = rng.standard_normal((3000, 8)).astype(np.float32)
    out = []
    for threads in (1, 8):
        a = HistoryArrays.create(tmp_path / f"h{threads}", layout, io_threads=threads)
        a.write_emb(0, ids, rows.astype(np.float16))
        a.add_grad(0, ids, rows)
        a.add_grad(0, ids[:1000], rows[:1000])
        a.reset_grad(0, ids[2000:])
        out.append((a.read_emb(0, ids), a.read_grad(0, ids), np.asarray(a.grad[0]).copy()))
        a.close()
    want_grad = np.zeros((5000, 8), np.float32)
    want_grad[ids] += rows
    want_grad[ids[:1000]] += rows[:1000]
    want_grad[ids[2000:]] = 0
    for emb, grad, whole in out:
        np.testing.assert_array_equal(emb, rows.astype(np.float16).astype(np.float32))
        np.testing.assert_array_equal(grad, want_grad[ids])
        np.testing.assert_array_equal(whole, want_grad)


def test_history_mappings_are_advised_random(tmp_path):
    """MADV_RANDOM ("rr" in smaps): a fault reads its own page, not 128 KiB of read-around (on a
    history that is not in the page cache, 32x the bytes of a 1 KiB row)."""
    arrays = HistoryArrays.create(tmp_path / "h", HistoryLayout(4096, (256,), "float32", False))
    path = str(arrays.paths()[0])
    flags, current = None, None
    with open("/proc/self/smaps") as fh:
        for line in fh:
            if "-" in line.split()[0] and not line.startswith("VmFlags"):
                current = line.rstrip().endswith(path)
            elif line.startswith("VmFlags") and current:
                flags = line.split()[1:]
    assert flags is not None and "rr" in flags


def test_release_counter_says_release_once_per_crossing():
    c = ReleaseCounter(1000)
    hits = []

    def work() -> None:
        hits.extend(c.add(10) for _ in range(500))
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(hits) == 20 and c.touched == 0          # 4 x 500 x 10 bytes = 20 crossings


@pytest.mark.parametrize("variant,dtype", [("scalable-gcn", "float32"), ("gas", "float16")])
def test_pulls_overlap_the_writes_two_batches_back_exactly(store, tmp_path, variant, dtype):  # noqa: F811
    """With a slow writer, pulls read while the writes of the batch two before still run (and read
    the rows those writes touch after them); every pulled row, loss and weight still equals the
    serial twin's."""
    m1, m2 = model_for(store, 3), model_for(store, 3)
    layout, emb, grad = random_histories(store, m1, variant == "scalable-gcn", dtype)
    step, arrays = run_threaded(store, variant, m1, layout, emb, grad, tmp_path, epochs=1, slow=0.005)
    io = step.loader.io_stats
    assert io.overlapped_pulls > 0 and io.late_rows > 0
    ref_rec, emb_ref, grad_ref = run_serial(store, variant, m2, emb, grad, dtype, epochs=1)
    assert step.losses == ref_rec["losses"]
    for got, want in zip(step.pulled + step.grad_pulled, ref_rec["pulled"] + ref_rec["grad_pulled"]):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    for l in range(len(emb)):
        np.testing.assert_array_equal(np.asarray(arrays.emb[l]), emb_ref[l])
        if grad is not None:
            np.testing.assert_array_equal(np.asarray(arrays.grad[l]), grad_ref[l])


def test_prefetch_reads_files_that_fit_and_skips_larger_ones(tmp_path, monkeypatch):
    """Histories within PREFETCH_SHARE of MemAvailable are read ahead (WILLNEED per chunk, every
    byte of every file); larger ones are left to the random reads."""
    import os

    import gstore.memory as memory
    from gstore.pipeline.history import arrays as arrays_mod

    layout = HistoryLayout(3000, (16,), "float32", True)
    a = HistoryArrays.create(tmp_path / "h", layout)
    calls = []
    monkeypatch.setattr(arrays_mod, "PREFETCH_CHUNK", 50_000)
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, off, n, advice: calls.append((off, n, advice)))
    monkeypatch.setattr(memory, "available_memory_bytes", lambda: 10 * layout.nbytes)
    assert a.prefetch()
    assert sum(n for _, n, _ in calls) == layout.nbytes
    assert {adv for _, _, adv in calls} == {os.POSIX_FADV_WILLNEED}
    calls.clear()
    monkeypatch.setattr(memory, "available_memory_bytes", lambda: layout.nbytes)
    assert not a.prefetch() and not calls


def test_release_counter_covers_what_read_faults_map(tmp_path):
    """A read fault maps the cached pages around it too (fault-around): the counter must count at
    least what the reads left mapped, or many times the budgeted pages stay in RSS."""
    from gstore.memory import _proc_kib

    layout = HistoryLayout(1 << 16, (256,), "float32", False)        # 64 MiB, in the page cache
    arrays = HistoryArrays.create(tmp_path / "h", layout, io_threads=1)
    arrays.write_emb(0, np.arange(1 << 16, dtype=np.int64), np.ones((1 << 16, 256), np.float32))
    arrays.release(force=True)
    arrays.released.every = 1 << 40
    ids = np.arange(0, 1 << 16, 64, dtype=np.int64)     # one row per 64 KiB
    before = _proc_kib("/proc/self/status", "RssFile:")
    arrays.read_emb(0, ids)
    mapped = _proc_kib("/proc/self/status", "RssFile:") - before
    assert mapped > 0 and arrays.released.touched >= mapped
    arrays.close()
