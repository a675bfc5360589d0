"""`.npy` edge arrays: (E, 2) and PyG's (2, E) (transposed, and said so), (E, k > 2) only with
--columns, (2, 2) refused as ambiguous; C and Fortran order, any integer dtype and byte order; read
in bounded blocks by plain reads (never through the memory map, whose pages would count as RSS)."""
from __future__ import annotations

import numpy as np
import pytest

import gstore
from gstore.pipeline.ingest.chunks import EdgeReadOptions, ReadStats
from gstore.pipeline.ingest.ingest import IngestOptions, ingest
from gstore.pipeline.ingest.node_tables import iter_feature_chunks

from ingest_inputs import edges_of, error_of, read_all, ref_edges


def _save(tmp_path, arr, name="e.npy"):
    p = tmp_path / name
    np.save(p, arr)
    return p


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("block", [24, 1 << 20])
def test_pyg_edge_index_is_transposed_and_said_so(tmp_path, order, block):
    e = ref_edges(301)
    p = _save(tmp_path, np.asarray(e.T, order=order))
    stats = ReadStats()
    chunks = read_all([p], stats, block_bytes=block)
    np.testing.assert_array_equal(edges_of(chunks), e)
    assert [n.message for n in stats.notes if n.kind == "layout"] == [
        "shape (2, 301): read as (2, E), transposed (row 0 = sources, row 1 = targets)"]
    # streamed: no chunk is bigger than the block asks for (before: one 'row' of 301 values)
    assert max(len(c) for c in chunks) <= max(1, block // 16)
    assert [c.first_line for c in chunks] == sorted(c.first_line for c in chunks)
    assert chunks[-1].bytes_done == p.stat().st_size


@pytest.mark.parametrize("dtype", ["<i4", ">i8", "<u2", ">u4"])
@pytest.mark.parametrize("order", ["C", "F"])
def test_edge_rows_any_order_and_dtype(tmp_path, dtype, order):
    e = np.abs(ref_edges(123, hi=2**15))
    arr = np.asarray(e.astype(dtype), order=order)
    p = _save(tmp_path, arr)
    np.testing.assert_array_equal(edges_of(read_all([p], block_bytes=40)), e)
    t = _save(tmp_path, np.asarray(arr.T, order=order), "t.npy")
    np.testing.assert_array_equal(edges_of(read_all([t], block_bytes=40)), e)


@pytest.mark.parametrize("order", ["C", "F"])
def test_wide_arrays_need_columns(tmp_path, order):
    e = ref_edges(50)
    w = np.arange(50)
    arr = np.asarray(np.stack([e[:, 0], w, e[:, 1]], 1), order=order)
    p = _save(tmp_path, arr)
    err = error_of([p])
    assert "shape (50, 3)" in str(err) and "--columns" in str(err)
    chunks = read_all([p], columns=(0, 2), weight_col=1, block_bytes=64)
    np.testing.assert_array_equal(edges_of(chunks), e)
    np.testing.assert_array_equal(np.concatenate([c.weight for c in chunks]), w.astype(np.float32))
    # (3, E): neither layout without --columns
    q = _save(tmp_path, np.ascontiguousarray(arr.T), "t.npy")
    assert "--columns" in str(error_of([q]))


def test_two_by_two_is_ambiguous(tmp_path):
    p = _save(tmp_path, np.array([[0, 1], [2, 3]]))
    err = error_of([p])
    assert "(2, 2)" in str(err) and "--columns" in str(err) and "arr.T" in str(err)
    np.testing.assert_array_equal(edges_of(read_all([p], columns=(0, 1))), [[0, 1], [2, 3]])
    # a single PyG edge (2, 1) is not ambiguous
    q = _save(tmp_path, np.array([[4], [5]]), "one.npy")
    np.testing.assert_array_equal(edges_of(read_all([q])), [[4, 5]])


class _HeaderOnly:
    """What np.load(mmap_mode='r') may be used for: the header. Reading data through the map
    would pull the file's pages into RSS (a Fortran-order 60M-edge .npy peaked at 1.16 GiB under a
    1 GiB budget that way)."""

    def __init__(self, arr):
        self.shape, self.ndim, self.dtype, self.flags = arr.shape, arr.ndim, arr.dtype, arr.flags
        self.offset = getattr(arr, "offset", None)

    def __getitem__(self, item):
        raise AssertionError("data read through the memory map")

    def __array__(self, *a, **k):
        raise AssertionError("data read through the memory map")


def test_npy_is_never_read_through_the_memory_map(tmp_path, monkeypatch):
    real = np.load
    monkeypatch.setattr(np, "load", lambda *a, **k: _HeaderOnly(real(*a, **k)))
    e = ref_edges(200)
    for arr in (e, np.asfortranarray(e), np.ascontiguousarray(e.T), np.asfortranarray(e.T)):
        p = _save(tmp_path, arr)
        np.testing.assert_array_equal(edges_of(read_all([p], block_bytes=100)), e)
    x = np.random.default_rng(0).random((50, 3)).astype(np.float32)
    for arr in (x, np.asfortranarray(x)):
        p = _save(tmp_path, arr, "x.npy")
        got = np.concatenate([c.values for c in iter_feature_chunks(p, "int", 7)])
        np.testing.assert_array_equal(got, x)


def test_truncated_npy_is_an_input_error(tmp_path):
    p = _save(tmp_path, ref_edges(100).T.copy())
    p.write_bytes(p.read_bytes()[:-80])
    assert "truncated" in str(error_of([p])) or ".npy" in str(error_of([p]))


def test_ingest_summary_and_manifest_record_the_transpose(tmp_path):
    from click.testing import CliRunner

    from gstore.cli import main

    e = np.array([[0, 1], [1, 2], [2, 0], [0, 2]])
    p = _save(tmp_path, e.T.copy())
    r = CliRunner().invoke(main, ["ingest", str(p), "-o", str(tmp_path / "s"), "-q"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "read as (2, E), transposed" in r.output
    g = gstore.open(tmp_path / "s")
    assert g.num_edges == 4 and sorted(g.neighbors(0).tolist()) == [2]
    assert any("transposed" in d["message"] for d in g.manifest.build["decisions"])
    rep = ingest([p], tmp_path / "s2", IngestOptions(read=EdgeReadOptions()))
    assert rep.num_edges == 4
