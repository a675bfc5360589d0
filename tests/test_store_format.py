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


def _reference_block_crcs(path, data_bytes, block):
    import google_crc32c

    data = open(path, "rb").read()[:data_bytes]
    return [google_crc32c.value(data[i:i + block]) for i in range(0, data_bytes, block)]


@pytest.mark.parametrize("mode", ["append", "in-order-rows", "out-of-order", "memmap", "external", "partial"])
def test_block_checksums_match_the_bytes_on_disk_for_every_write_mode(tmp_path, monkeypatch, mode):
    from gstore import shard_array
    from gstore.block_crc import decode_crcs

    monkeypatch.setattr(shard_array, "BLOCK_BYTES", 1000)       # blocks span writes and chunks
    readback = []
    real = shard_array.file_block_crcs
    monkeypatch.setattr(shard_array, "file_block_crcs", lambda *a: readback.append(a) or real(*a))
    rows = np.arange(3 * 700, dtype=np.int64).reshape(-1, 3) * 7 + 1
    w = ShardArrayWriter(tmp_path, "a", rows.shape, np.int64, chunk_rows=64)
    if mode == "append":
        for start in range(0, len(rows), 37):
            w.append(rows[start:start + 37])
    elif mode == "in-order-rows":
        w.write_rows(0, rows[:300])
        w.write_rows(300, rows[300:])
    elif mode == "out-of-order":
        w.write_rows(300, rows[300:])
        w.write_rows(0, rows[:300])
    elif mode == "memmap":
        w.append(rows[:10])
        mm = w.memmap()
        mm[10:] = rows[10:]
        mm.flush()
        del mm
    elif mode == "external":       # bytes written straight to w.path (ingest copies with copy_file_range)
        import os

        fd = os.open(w.path, os.O_WRONLY)
        os.pwrite(fd, rows.tobytes(), 0)
        os.close(fd)
    else:
        w.append(rows[:100])       # rows 100.. never written: zeros on disk
        rows[100:] = 0
    rec = w.finish()
    assert rec.block_bytes == 1000
    got = decode_crcs(rec.block_crc32c).tolist()
    assert got == _reference_block_crcs(w.path, rec.data_bytes, 1000)
    assert len(got) == -(-rec.data_bytes // 1000)
    assert bool(readback) == (mode not in ("append", "in-order-rows"))   # incremental when sequential
    np.testing.assert_array_equal(open_array(tmp_path, rec), rows)


def test_records_roundtrip_and_v1_records_have_no_block_checksums(tmp_path):
    from gstore.shard_array import ArrayRecord

    rec = write_array(tmp_path, "a", np.arange(10, dtype=np.int32))
    assert ArrayRecord.from_json(json.loads(json.dumps(rec.to_json()))) == rec
    old = rec.to_json()
    del old["block_bytes"], old["block_crc32c"]
    v1 = ArrayRecord.from_json(old)
    assert v1.block_crc32c is None and "block_crc32c" not in v1.to_json()
    empty = write_array(tmp_path, "e", np.zeros(0, dtype=np.int64))
    assert empty.block_crc32c == ""


def test_manifest_is_format_v2_and_v1_still_reads(tmp_path):
    from gstore.manifest import FORMAT_VERSION, read_manifest

    path = tmp_path / "s"
    _tiny_store(path)
    assert FORMAT_VERSION == 2 and read_manifest(path).format_version == 2
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["gstore"]["format_version"] = 1
    (path / "zarr.json").write_text(json.dumps(meta))
    assert gstore.open(path).manifest.format_version == 1


@pytest.mark.parametrize("size,block,nbytes", [(0, 8, 0), (5, 8, 5), (64, 8, 64), (100, 7, 100),
                                               (100, 7, 60), (50, 7, 100), (1000, 64, 1000)])
def test_read_blocks_yields_the_file_in_order_and_stops_at_a_short_file(tmp_path, size, block, nbytes):
    from gstore.block_crc import read_blocks

    data = np.random.default_rng(size).integers(0, 255, size, dtype=np.uint8).tobytes()
    path = tmp_path / "f"
    path.write_bytes(data)
    seen, offsets = [], []
    for offset, view in read_blocks(path, nbytes, block):
        offsets.append(offset)
        seen.append(view.tobytes())               # views are reused: copy before the next block
    assert b"".join(seen) == data[:nbytes]
    assert offsets == list(range(0, min(size, nbytes), block))
