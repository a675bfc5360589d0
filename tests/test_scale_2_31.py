"""Stores past 2^31: more than 2^31 stored entries (int64 offsets) and more than 2^31 feature
elements, built as sparse files (the holes read as zeros and take no disk), so every test stays
fast and small on disk. The real chain past 2^31 (2.15e9 entries) is in docs/scale.md."""
from __future__ import annotations

import numpy as np
import pytest

import gstore
from gstore.block_crc import BLOCK_BYTES, BlockHasher, crc32c
from gstore.builder import StoreBuilder
from gstore.manifest import StoreManifest
from gstore.shard_array import ShardArrayWriter

HUB = 2**31 + 5                 # entries of one hub row (all holes: source 0)
N = 2**25 + 16                  # nodes: N * 64 feature elements > 2^31
F = 64


def sparse_store(path):
    """N nodes; node N-4 holds HUB in-edges from node 0 (a hole), rows N-3 and N-2 hold real
    entries at offsets past 2^31, every other row is empty. float16 features: rows N-3..N-1 are
    written (element offsets past 2^31), the rest are zero holes."""
    e = HUB + 5
    tail_indices = np.array([1, 2, N - 1, 3, 4], dtype=np.int32)
    tail_rows = np.arange(1, 4 * F + 1, dtype=np.float16).reshape(4, F)   # rows N-4..N-1
    with StoreBuilder(path) as b:
        w = b.array_writer("indptr", (N + 1,), np.int64)
        w.skip_rows(N - 3)                               # indptr[0..N-4] = 0: empty rows
        w.append(np.array([HUB, HUB + 3, e, e], dtype=np.int64))
        b.add(w.finish())
        w = b.array_writer("indices", (e,), np.int32)
        w.skip_rows(HUB)
        w.append(tail_indices)
        b.add(w.finish())
        w = b.array_writer("features", (N, F), np.float16)
        w.skip_rows(N - 4)
        w.append(tail_rows)
        b.add(w.finish())
        # check=False: the structural check would read the 8 GiB hole (the tests mark the CSR checked)
        b.commit(StoreManifest(num_nodes=N, num_edges=e, directed=True, feature_dim=F,
                               feature_dtype="float16"), check=False)
    return tail_rows


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "g.gstore"
    rows = sparse_store(path)
    return path, rows


def test_sparse_store_takes_no_disk(big):
    path, _ = big
    used = sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())
    assert used < 64 << 20, used          # the logical size is 8.6 GB of indices + 4.3 GB of features


def test_open_past_2_31_entries(big):
    path, _ = big
    s = gstore.open(path)                 # sizes and the checksums of every array's ends
    assert s.num_edges == HUB + 5 and s.indptr.dtype == np.int64
    assert s.neighbors(N - 3).tolist() == [1, 2, N - 1]
    assert s.neighbors(N - 2).tolist() == [3, 4]
    assert len(s.neighbors(N - 4)) == HUB
    assert np.diff(s.indptr[-5:]).tolist() == [HUB, 3, 2, 0]


def test_gather_rows_past_2_31_elements(big):
    """Rows whose element offset row * F exceeds 2^31 (int32 row * dim would wrap)."""
    from gstore.pipeline.features.gather import FeatureSource, gather_features

    path, rows = big
    s = gstore.open(path)
    ids = np.array([N - 1, 7, N - 3, N - 4, N - 2], dtype=np.int64)
    want = np.zeros((5, F), np.float16)
    want[0], want[2], want[3], want[4] = rows[3], rows[1], rows[0], rows[2]
    for sort in (False, True):
        got = gather_features(s.features, ids, sort=sort)
        assert np.array_equal(got.rows, want)
    assert (N - 1) * F > 2**31
    src = FeatureSource(s)
    got = src.gather(ids)
    assert np.array_equal(got.rows, want)


def test_sampler_on_the_store_past_2_31(big):
    from gstore.pipeline.sampling.neighbor import NeighborSampler

    from gstore.store_invariants import mark_checked

    path, _ = big
    s = gstore.open(path)
    mark_checked(s.indptr, s.indices)     # the structure pass reads all 2^31 entries: not tested here
    sub = NeighborSampler(s.indptr, s.indices, [-1]).sample(np.array([N - 3, N - 2]))
    b = sub.blocks[0]
    assert sorted(b.edge_ids.tolist()) == [HUB, HUB + 1, HUB + 2, HUB + 3, HUB + 4]
    assert sorted(sub.nodes[b.src].tolist()) == sorted([1, 2, N - 1, 3, 4])


def test_zero_holes_checksum_like_written_zeros():
    """BlockHasher.feed_zeros reuses one CRC per whole zero block: equal to feeding the bytes."""
    for lead, nbytes in ((0, 3 * BLOCK_BYTES), (17, 2 * BLOCK_BYTES + 5), (BLOCK_BYTES - 1, BLOCK_BYTES + 2)):
        a, b = BlockHasher(), BlockHasher()
        head = np.arange(lead, dtype=np.uint8)
        a.feed(head)
        b.feed(head)
        a.feed_zeros(nbytes)
        b.feed(np.zeros(nbytes, np.uint8))
        a.feed(np.ones(9, np.uint8))
        b.feed(np.ones(9, np.uint8))
        assert a.finish() == b.finish()
    assert crc32c(np.zeros(4, np.uint8)) == crc32c(bytes(4))


def test_skip_rows_then_append_checksums_match_a_dense_write(tmp_path):
    rows = np.arange(12, dtype=np.int64).reshape(6, 2)
    full = np.zeros((BLOCK_BYTES // 16 * 3 + 6, 2), np.int64)
    full[-6:] = rows
    a = ShardArrayWriter(tmp_path / "a", "x", full.shape, np.int64)
    a.skip_rows(len(full) - 6)
    a.append(rows)
    b = ShardArrayWriter(tmp_path / "b", "x", full.shape, np.int64)
    b.append(full)
    ra, rb = a.finish(), b.finish()
    assert ra.block_crc32c == rb.block_crc32c and ra.checksum == rb.checksum
    with pytest.raises(Exception, match="cannot skip"):
        ShardArrayWriter(tmp_path / "c", "x", (4,), np.int64).skip_rows(5)
