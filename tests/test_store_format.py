"""The store format: single-shard zarr arrays, manifest, atomic builds, integrity checks on open."""
from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

import gstore
from gstore.builder import StoreBuilder
from gstore.errors import FormatVersionError, StoreError, StoreExistsError
from gstore.manifest import StoreManifest
from gstore.shard_array import ShardArrayWriter, open_array, shard_path, write_array
from safety_helpers import mark_as_dead_owner


def _tiny_store(path, *, force=False, features=True):
    indptr = np.array([0, 2, 3, 3, 5], dtype=np.int64)
    indices = np.array([1, 3, 0, 0, 1], dtype=np.int32)
    with StoreBuilder(path, force=force) as b:
        b.write_array("indptr", indptr)
        b.write_array("indices", indices, chunk_rows=2)
        b.write_array("node_ids", np.array([10, 20, 30, 40], dtype=np.int64))
        if features:
            b.write_array("features", np.arange(12, dtype=np.float32).reshape(4, 3), chunk_rows=3)
        b.write_array("labels", np.array([0, 1, -1, 1], dtype=np.int64))
        b.write_array("splits/train", np.array([0, 1], dtype=np.int64))
        b.commit(StoreManifest(num_nodes=4, num_edges=5, directed=True, label_names=["a", "b"]))
    return indptr, indices


@pytest.mark.parametrize("dtype", ["int32", "int64", "float32", "float16", "uint8"])
@pytest.mark.parametrize("n,chunk", [(1, 1), (10, 3), (12, 4), (1000, 64)])
def test_shard_array_roundtrips_through_zarr_and_memmap(tmp_path, dtype, n, chunk):
    rng = np.random.default_rng(n)
    arr = (rng.random((n, 3)) * 100).astype(dtype)
    rec = write_array(tmp_path, "a", arr, chunk_rows=chunk)
    np.testing.assert_array_equal(open_array(tmp_path, rec), arr)
    z = zarr.open_array(str(tmp_path / "a"), mode="r")
    np.testing.assert_array_equal(z[:], arr)
    np.testing.assert_array_equal(z[n // 2:n], arr[n // 2:])


def test_shard_writer_random_order_and_empty(tmp_path):
    w = ShardArrayWriter(tmp_path, "x", (10,), np.int64, chunk_rows=4)
    w.write_rows(6, np.arange(6, 10))
    w.write_rows(0, np.arange(0, 6))
    rec = w.finish()
    assert list(zarr.open_array(str(tmp_path / "x"), mode="r")[:]) == list(range(10))
    rec0 = write_array(tmp_path, "empty", np.zeros(0, dtype=np.int64))
    assert open_array(tmp_path, rec0).shape == (0,)
    assert zarr.open_array(str(tmp_path / "empty"), mode="r").shape == (0,)
    with pytest.raises(StoreError):
        ShardArrayWriter(tmp_path, "y", (3,), np.int64).write_rows(2, np.arange(2))
    assert rec.data_bytes == 12 * 8  # padded to whole chunks


def test_open_store_api_and_zarr_group(tmp_path):
    path = tmp_path / "s"
    indptr, indices = _tiny_store(path)
    g = gstore.open(path)
    assert (g.num_nodes, g.num_edges, g.directed) == (4, 5, True)
    assert isinstance(g.indices, np.memmap)
    np.testing.assert_array_equal(g.indptr, indptr)
    np.testing.assert_array_equal(g.neighbors(0), [1, 3])
    np.testing.assert_array_equal(g.degrees(), [2, 1, 0, 2])
    np.testing.assert_array_equal(g.split("train"), [0, 1])
    assert g.split("test").size == 0
    assert g.label_names == ["a", "b"]
    root = zarr.open_group(str(path), mode="r")
    np.testing.assert_array_equal(root["indices"][:], indices)
    np.testing.assert_array_equal(root["splits"]["train"][:], [0, 1])
    assert root.attrs["gstore"]["num_nodes"] == 4
    with pytest.raises(gstore.OptionError):
        g.neighbors(4)


def test_existing_store_needs_force_and_stale_tmp_is_removed(tmp_path):
    path = tmp_path / "s"
    _tiny_store(path)
    with pytest.raises(StoreExistsError):
        _tiny_store(path)
    stale = tmp_path / "s.tmp"
    stale.mkdir()
    (stale / "junk").write_text("x")
    with pytest.raises(StoreError, match="not made by gstore"):   # unmarked: a user's own dir
        _tiny_store(path, force=True, features=False)
    assert (stale / "junk").exists()
    mark_as_dead_owner(stale)                  # scratch of a gstore build that was killed
    _tiny_store(path, force=True, features=False)
    assert not stale.exists()
    assert gstore.open(path).features is None


def test_failed_build_leaves_no_store(tmp_path):
    path = tmp_path / "s"
    with pytest.raises(RuntimeError):
        with StoreBuilder(path) as b:
            b.write_array("indptr", np.zeros(3, dtype=np.int64))
            raise RuntimeError("boom")
    assert not path.exists() and not (tmp_path / "s.tmp").exists()
    with pytest.raises(StoreError, match="no such store"):
        gstore.open(path)


def test_truncated_missing_and_versioned_stores_fail_clearly(tmp_path):
    path = tmp_path / "s"
    _tiny_store(path)
    f = shard_path(path / "indices", 1)
    data = f.read_bytes()
    f.write_bytes(data[:-3])
    with pytest.raises(StoreError, match="truncated"):
        gstore.open(path)
    f.unlink()
    with pytest.raises(StoreError, match="no data file"):
        gstore.open(path)
    _tiny_store(path, force=True)
    f = shard_path(path / "features", 2)
    raw = bytearray(f.read_bytes())
    raw[0] ^= 0xFF
    f.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="checksum"):
        gstore.open(path)
    _tiny_store(path, force=True)
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["gstore"]["format_version"] = 99
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(FormatVersionError):
        gstore.open(path)
    (path / "zarr.json").unlink()
    with pytest.raises(StoreError, match="manifest"):
        gstore.open(path)


def test_force_rebuild_swaps_atomically(tmp_path, monkeypatch):
    from gstore import builder

    path = tmp_path / "s"
    _tiny_store(path)
    calls = []
    real = builder._exchange
    monkeypatch.setattr(builder, "_exchange", lambda a, b: calls.append(real(a, b)) or calls[-1])
    _tiny_store(path, force=True, features=False)
    assert calls == [True]                      # renameat2 exchange used on Linux
    assert gstore.open(path).features is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
    monkeypatch.setattr(builder, "_exchange", lambda a, b: False)   # fallback: two renames
    _tiny_store(path, force=True)
    assert gstore.open(path).features is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
