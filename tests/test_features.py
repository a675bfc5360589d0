import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gstore
from gstore.errors import OptionError
from gstore.pipeline.features import cache as cache_mod
from gstore.pipeline.features.cache import FeatureCache, top_degree_nodes
from gstore.pipeline.features.gather import FeatureSource, gather_features, gather_labels
from reference_features import ref_cache_hits, ref_gather_rows, ref_top_degree_nodes
from store_factory import build_store, random_graph


@pytest.fixture(scope="module", params=["float32", "float16"])
def store(request, tmp_path_factory):
    rng = np.random.default_rng(1)
    n = 300
    src, dst = random_graph(n, 2000, seed=3)
    # a few hubs so degree ranking is meaningful
    src = np.concatenate([src, np.zeros(200, np.int64), np.full(100, 7)])
    dst = np.concatenate([dst, rng.integers(0, n, 300)])
    feats = rng.standard_normal((n, 13)).astype(request.param)
    labels = rng.integers(0, 5, n)
    path = build_store(tmp_path_factory.mktemp("feat") / "s", src, dst, n, features=feats, labels=labels)
    return gstore.open(path)


@pytest.mark.parametrize("sort", [False, True])
def test_gather_matches_fancy_indexing(store, sort, monkeypatch):
    monkeypatch.setattr("gstore.pipeline.features.gather.SORT_MIN_ROWS", 1)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, store.num_nodes, 5000)
    out = np.full((6000, 13), 99, dtype=store.features.dtype)
    res = gather_features(store.features, ids, out, sort=sort)
    np.testing.assert_array_equal(res.rows, ref_gather_rows(store.features, ids))
    assert res.rows.base is out or res.rows.base is out.base  # a view into the caller's buffer
    assert np.all(out[5000:] == 99)  # rows past n untouched
    assert res.nbytes == 5000 * 13 * store.features.dtype.itemsize


def test_labels_and_empty(store):
    ids = np.array([5, 0, 299, 5], dtype=np.int64)
    np.testing.assert_array_equal(gather_labels(store.labels, ids), np.asarray(store.labels)[ids])
    assert gather_features(store.features, np.zeros(0, np.int64)).rows.shape == (0, 13)


def test_bad_ids_and_buffers(store):
    src = FeatureSource(store)
    with pytest.raises(OptionError):
        src.gather(np.array([0, store.num_nodes]))
    with pytest.raises(OptionError):
        src.gather(np.array([-1]))
    with pytest.raises(OptionError):
        src.gather(np.array([1, 2, 3]), out=np.empty((2, 13), dtype=store.features.dtype))
    with pytest.raises(OptionError):
        src.gather(np.array([1]), out=np.empty((2, 13), dtype=np.float64))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=2, max_size=60), st.integers(0, 70))
def test_top_degree_matches_reference(degrees, k):
    indptr = np.concatenate([[0], np.cumsum(degrees)]).astype(np.int64)
    np.testing.assert_array_equal(top_degree_nodes(indptr, k), ref_top_degree_nodes(indptr, k))


def test_top_degree_chunked(monkeypatch):
    monkeypatch.setattr(cache_mod, "_DEGREE_CHUNK", 7)
    rng = np.random.default_rng(5)
    indptr = np.concatenate([[0], np.cumsum(rng.integers(0, 6, 100))]).astype(np.int64)
    for k in (1, 3, 10, 50, 100, 150):
        np.testing.assert_array_equal(top_degree_nodes(indptr, k), ref_top_degree_nodes(indptr, k))


@pytest.mark.parametrize("budget_rows", [0, 1, 17, 300, 10_000])
def test_cache_correct_and_counts(store, budget_rows, monkeypatch):
    monkeypatch.setattr("gstore.pipeline.features.gather.SORT_MIN_ROWS", 1)
    row = 13 * store.features.dtype.itemsize + 8
    cache = FeatureCache(store, budget_rows * row)
    assert cache.num_rows == min(budget_rows, store.num_nodes)
    assert cache.nbytes <= max(budget_rows * row, 0)
    np.testing.assert_array_equal(cache.hot_ids, ref_top_degree_nodes(store.indptr, cache.num_rows))
    np.testing.assert_array_equal(cache.hot_rows, ref_gather_rows(store.features, cache.hot_ids))
    src = FeatureSource(store)
    src.cache = cache
    rng = np.random.default_rng(2)
    expected_hits = 0
    for n in (1, 50, 4000):
        ids = rng.integers(0, store.num_nodes, n)
        res = src.gather(ids)
        np.testing.assert_array_equal(res.rows, ref_gather_rows(store.features, ids))
        assert res.cache_hits == ref_cache_hits(cache.hot_ids, ids)
        expected_hits += res.cache_hits
    assert cache.hits == expected_hits
    assert cache.hits + cache.misses == 4051
    if cache.num_rows == store.num_nodes:
        assert cache.hit_rate == 1.0
    if budget_rows == 0:
        assert cache.hits == 0


def test_cache_prefers_hubs(store):
    cache = FeatureCache(store, 2 * (13 * store.features.dtype.itemsize + 8))
    deg = store.degrees()
    assert set(cache.hot_ids) == set(np.argsort(-deg, kind="stable")[:2])
    assert cache.contains(np.array([cache.hot_ids[0], -5 % store.num_nodes])).tolist()[0]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 999), min_size=0, max_size=300), st.integers(1, 1000))
def test_read_order_is_a_bucketed_permutation(ids, extra):
    from gstore.pipeline.features.gather import read_order

    num_nodes = max(ids, default=0) + extra
    ids = np.asarray(ids, dtype=np.int64)
    order = read_order(ids, num_nodes)
    np.testing.assert_array_equal(np.sort(order), np.arange(len(ids)))
    shift = max(0, (num_nodes - 1).bit_length() - max(1, len(ids)).bit_length())
    keys = ids[order] >> shift
    assert np.all(np.diff(keys) >= 0)  # buckets visited in ascending order
    assert (((num_nodes - 1) >> shift) + 1) <= 2 * max(1, len(ids)) + 1  # about one bucket per row
