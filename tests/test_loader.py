import gc
import threading
import time
import traceback

import numpy as np
import pytest
import torch

import gstore
from gstore.errors import LoaderError, OptionError
from gstore.pipeline.loader import ClusterLoader, NeighborLoader
from gstore.pipeline.loader.seeds import batch_seed
from gstore.pipeline.sampling.neighbor import NeighborSampler
from gstore.pipeline.sampling.subgraph import ClusterSubgraph
from store_factory import build_store, random_graph

N = 400


@pytest.fixture(scope="module", params=["float32", "float16"])
def store(request, tmp_path_factory):
    rng = np.random.default_rng(7)
    src, dst = random_graph(N, 3000, seed=11)
    feats = rng.standard_normal((N, 6)).astype(request.param)
    labels = rng.integers(0, 4, N)
    train = rng.choice(N, 230, replace=False)
    path = build_store(tmp_path_factory.mktemp("ld") / "s", src, dst, N, features=feats, labels=labels,
                       splits={"train": train, "val": np.setdiff1d(np.arange(N), train)[:50]})
    return gstore.open(path)


def batches_of(loader, limit=None):
    out = []
    for i, b in enumerate(loader):
        if limit is not None and i >= limit:
            break
        out.append(b)
    return out


def same_batches(a, b):
    assert len(a) == len(b)
    for p, q in zip(a, b):
        assert (p.epoch, p.index, p.num_seeds) == (q.epoch, q.index, q.num_seeds)
        assert torch.equal(p.nodes, q.nodes) and torch.equal(p.x, q.x) and torch.equal(p.y, q.y)
        assert len(p.blocks) == len(q.blocks)
        for bp, bq in zip(p.blocks, q.blocks):
            assert torch.equal(bp.edge_index, bq.edge_index) and bp.size == bq.size


def check_batch_rules(store, b):
    nodes = b.nodes.numpy()
    assert len(np.unique(nodes)) == len(nodes) and nodes.min() >= 0 and nodes.max() < N
    np.testing.assert_array_equal(b.x.numpy(), np.asarray(store.features, dtype=np.float32)[nodes])
    assert b.x.dtype == torch.float32
    np.testing.assert_array_equal(b.y.numpy(), np.asarray(store.labels)[nodes])
    assert b.blocks[-1].num_dst == b.num_seeds
    for blk in b.blocks:
        src, dst = blk.edge_index.numpy()
        assert src.max(initial=-1) < blk.num_src and dst.max(initial=-1) < blk.num_dst
        for s, d in zip(nodes[src], nodes[dst]):
            assert s in store.neighbors(int(d))  # message flows along a stored in-edge


def test_order_content_and_len(store):
    train = store.split("train")
    loader = NeighborLoader(store, [4, 3], batch_size=32, shuffle=False, num_workers=2, prefetch=2)
    assert len(loader) == 8  # ceil(230 / 32)
    got = batches_of(loader)
    assert [b.index for b in got] == list(range(8))
    np.testing.assert_array_equal(np.concatenate([b.seeds.numpy() for b in got]), train)
    for b in got:
        check_batch_rules(store, b)
        assert b.stats.num_nodes == b.num_nodes and b.stats.num_edges == b.num_edges > 0
    assert loader.epoch == 1


def test_drop_last_and_explicit_seeds(store):
    ids = np.arange(0, N, 3)
    loader = NeighborLoader(store, [2], batch_size=25, split=ids, drop_last=True, seed=3)
    assert len(loader) == len(ids) // 25
    got = batches_of(loader)
    assert len(got) == len(loader) and all(b.num_seeds == 25 for b in got)
    seen = np.concatenate([b.seeds.numpy() for b in got])
    assert len(np.unique(seen)) == len(seen) and np.isin(seen, ids).all()
    with pytest.raises(OptionError):
        NeighborLoader(store, [2], 8, split=np.array([1, 1]))
    with pytest.raises(OptionError):
        NeighborLoader(store, [2], 8, split="test")  # no such split in this store


def test_deterministic_for_any_worker_count(store):
    ref = batches_of(NeighborLoader(store, [5, 5], 40, seed=9, num_workers=1))
    for workers in (2, 4):
        same_batches(ref, batches_of(NeighborLoader(store, [5, 5], 40, seed=9, num_workers=workers,
                                                    prefetch=1)))
    other = batches_of(NeighborLoader(store, [5, 5], 40, seed=10))
    assert not all(torch.equal(a.nodes, b.nodes) for a, b in zip(ref, other))


def test_epochs_shuffle_by_the_one_seeding_rule(store):
    loader = NeighborLoader(store, [2], 50, seed=5)
    e0 = np.concatenate([b.seeds.numpy() for b in loader])
    e1 = np.concatenate([b.seeds.numpy() for b in loader])
    train = store.split("train")
    np.testing.assert_array_equal(e0, np.random.default_rng([5, 0]).permutation(train))
    np.testing.assert_array_equal(e1, np.random.default_rng([5, 1]).permutation(train))
    assert batch_seed(5, 0, 1) != batch_seed(5, 1, 0)
    # seed 5 / epoch 1 was seed 6 / epoch 0 under default_rng(seed + epoch)
    e6 = np.concatenate([b.seeds.numpy() for b in NeighborLoader(store, [2], 50, seed=6)])
    assert not np.array_equal(e1, e6)


def test_resume_mid_epoch(store):
    full = NeighborLoader(store, [3, 2], 30, seed=2)
    batches_of(full)  # epoch 0
    expected = batches_of(full)  # epoch 1
    first = NeighborLoader(store, [3, 2], 30, seed=2)
    first.set_epoch(1)
    taken = []
    for b in first:
        taken.append(b)
        if len(taken) == 3:
            state = first.state_dict()
            break
    assert state["epoch"] == 1 and state["batches_consumed"] == 3
    resumed = NeighborLoader(store, [3, 2], 30, seed=2)
    resumed.load_state_dict(state)
    same_batches(expected, taken + batches_of(resumed))
    with pytest.raises(OptionError):
        NeighborLoader(store, [3, 2], 30, seed=99).load_state_dict(state)


def test_cluster_loader_resume_mid_epoch(store):
    parts = (np.arange(N) * 7 % 16).astype(np.int32)

    def make():
        return ClusterLoader(store, parts=parts, num_parts=16, clusters_per_batch=3, seed=5)

    full = make()
    batches_of(full)  # epoch 0
    expected = batches_of(full)  # epoch 1: a different cluster order
    taken = []
    first = make()
    first.set_epoch(1)
    for b in first:
        taken.append(b)
        if len(taken) == 2:
            state = first.state_dict()
            break
    resumed = make()
    resumed.load_state_dict(state)
    rest = batches_of(resumed)
    assert len(taken) + len(rest) == len(expected) == 6
    for p, q in zip(expected, taken + rest):
        assert (p.epoch, p.index) == (q.epoch, q.index)
        assert torch.equal(p.nodes, q.nodes) and torch.equal(p.edge_index, q.edge_index)
        assert torch.equal(p.x, q.x) and torch.equal(p.mask, q.mask)


class FailingSampler:
    """Delegates to a real sampler but raises on the batch containing `bad`."""

    def __init__(self, store, bad, delay=0.0):
        self.inner = NeighborSampler.from_store(store, [3])
        self.bad = bad
        self.delay = delay

    def sample(self, seeds, seed):
        time.sleep(self.delay)
        if self.bad in seeds:
            self.explode(seeds)
        return self.inner.sample(seeds, seed)

    def explode(self, seeds):
        raise ValueError(f"boom on {len(seeds)} seeds")


@pytest.mark.parametrize("workers", [1, 3])
def test_worker_error_reaches_consumer_in_order(store, workers):
    baseline = threading.active_count()
    ids = np.arange(100)
    loader = NeighborLoader(store, [3], 10, split=ids, shuffle=False, num_workers=workers,
                            sampler=FailingSampler(store, bad=57))
    got = []
    with pytest.raises(LoaderError) as info:
        for b in loader:
            got.append(b.index)
    assert got == [0, 1, 2, 3, 4]  # the batches before the failing one (index 5) all arrive
    cause = info.value.__cause__
    assert isinstance(cause, ValueError) and "boom" in str(cause)
    frames = [f.name for f in traceback.extract_tb(cause.__traceback__)]
    assert "explode" in frames  # the worker's traceback is preserved
    assert "batch 5" in str(info.value)
    assert threading.active_count() == baseline


def test_gather_error_propagates(store, monkeypatch):
    baseline = threading.active_count()
    loader = NeighborLoader(store, [2], 20)

    def broken(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(loader.source, "gather", broken)
    with pytest.raises(LoaderError, match="gather") as info:
        batches_of(loader)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert threading.active_count() == baseline


@pytest.mark.parametrize("how", ["break", "del", "gc"])
def test_clean_shutdown(store, how):
    baseline = threading.active_count()
    # a slow sampler and prefetch 1: producers are blocked on full queues when the consumer leaves
    loader = NeighborLoader(store, [3], 5, num_workers=3, prefetch=1,
                            sampler=FailingSampler(store, bad=-1, delay=0.01))
    if how == "break":
        for i, _ in enumerate(loader):
            if i == 2:
                break
    else:
        it = iter(loader)
        next(it)
        assert threading.active_count() > baseline
        if how == "del":
            del it
        else:
            cycle = [it]
            cycle.append(cycle)
            del it, cycle
            gc.collect()
    for _ in range(100):  # joins are synchronous; this only absorbs thread bookkeeping
        if threading.active_count() == baseline:
            break
        time.sleep(0.01)
    assert threading.active_count() == baseline


def test_close_from_inside_a_stage_thread(store, monkeypatch):
    """The garbage collector may finalise an abandoned loop inside one of the loader's own threads;
    the shutdown it runs there must neither join that thread nor hang: it stops the run, and every
    thread exits by itself."""
    from gstore.pipeline.loader import loader as loader_mod

    runs = []
    real_start = loader_mod.PipelineRun.start
    monkeypatch.setattr(loader_mod.PipelineRun, "start", lambda self: (runs.append(self), real_start(self)))
    close_now = threading.Event()
    errors = []

    class ClosingSampler:
        def __init__(self):
            self.inner = NeighborSampler.from_store(store, [2])

        def sample(self, seeds, seed):
            if close_now.is_set() and not errors:
                try:
                    runs[0].close()
                    errors.append(None)
                except Exception as exc:  # noqa: BLE001 - what the test looks for
                    errors.append(exc)
            return self.inner.sample(seeds, seed)

    baseline = threading.active_count()
    it = iter(NeighborLoader(store, [2], 5, num_workers=2, prefetch=1, sampler=ClosingSampler()))
    next(it)
    close_now.set()
    for _ in range(300):
        if errors and threading.active_count() == baseline:
            break
        time.sleep(0.01)
    assert errors == [None]
    assert threading.active_count() == baseline
    it.close()  # the consumer's own shutdown afterwards is a no-op


def test_cache_in_loader(store):
    row = 6 * store.features.dtype.itemsize + 8
    plain = batches_of(NeighborLoader(store, [4, 4], 64, seed=1))
    cached_loader = NeighborLoader(store, [4, 4], 64, seed=1, cache_bytes=100 * row)
    cached = batches_of(cached_loader)
    same_batches(plain, cached)
    c = cached_loader.cache
    assert c.num_rows == 100 and c.hits > 0 and c.misses > 0
    assert c.hits + c.misses == sum(b.num_nodes for b in cached)
    assert c.hits == sum(b.stats.cache_hits for b in cached)


def test_batches_stay_valid_when_kept(store):
    # buffers are recycled only when no batch references them: kept batches must not change
    loader = NeighborLoader(store, [5, 5], 16, prefetch=1)
    kept = batches_of(loader)
    snapshot = [b.x.clone() for b in kept]
    batches_of(loader)  # another epoch reuses whatever buffers are free
    for b, x in zip(kept, snapshot):
        assert torch.equal(b.x, x)
    assert len(loader.pool._entries) <= loader.pool.max_buffers


def test_buffers_recycled_when_dropped(store):
    loader = NeighborLoader(store, [5, 5], 16, prefetch=1)
    count = 0
    for _ in range(3):
        for b in loader:
            count += 1
            del b
    assert count == 45 and loader.pool.allocations < 15


class FakeClusterSampler:
    """Minimal ClusterSampler stand-in: induced subgraph of the chosen parts, no weights."""

    def __init__(self, store, parts, num_parts, q, seed=0):
        self.store, self.parts, self.num_parts, self.q, self.seed = store, parts, num_parts, q, seed
        self.num_batches = -(-num_parts // q)

    def epoch_batches(self, epoch):
        perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_parts)
        return [perm[i:i + self.q] for i in range(0, self.num_parts, self.q)]

    def sample(self, clusters, seed):
        nodes = np.flatnonzero(np.isin(self.parts, clusters)).astype(np.int64)
        local = {int(v): i for i, v in enumerate(nodes)}
        indptr, indices, eids = [0], [], []
        for v in nodes:
            lo, hi = self.store.indptr[v], self.store.indptr[v + 1]
            for e in range(lo, hi):
                u = int(self.store.indices[e])
                if u in local:
                    indices.append(local[u])
                    eids.append(e)
            indptr.append(len(indices))
        return ClusterSubgraph(nodes, np.array(indptr, np.int64), np.array(indices, np.int64),
                               np.array(eids, np.int64), None, np.asarray(clusters, np.int64))


@pytest.mark.parametrize("workers", [1, 2])
def test_cluster_loader_with_injected_sampler(store, workers):
    parts = np.random.default_rng(0).integers(0, 10, N)
    sampler = FakeClusterSampler(store, parts, 10, 3)
    loader = ClusterLoader(store, clusters_per_batch=3, sampler=sampler, num_workers=workers)
    assert len(loader) == 4
    got = batches_of(loader)
    assert [b.kind for b in got] == ["cluster"] * 4
    seen = np.concatenate([b.nodes.numpy() for b in got])
    np.testing.assert_array_equal(np.sort(seen), np.arange(N))  # every node in exactly one batch
    train = store.split("train")
    for b in got:
        nodes = b.nodes.numpy()
        np.testing.assert_array_equal(b.mask.numpy(), np.isin(nodes, train))
        assert b.num_seeds == int(b.mask.sum())
        np.testing.assert_array_equal(b.seeds.numpy(), nodes[np.isin(nodes, train)])
        np.testing.assert_array_equal(b.x.numpy(), np.asarray(store.features, np.float32)[nodes])
        for s, d in b.edge_index.numpy().T:
            assert nodes[s] in store.neighbors(int(nodes[d]))
    dropped = ClusterLoader(store, clusters_per_batch=3, sampler=sampler, drop_last=True)
    assert len(dropped) == 3 and len(batches_of(dropped)) == 3


def test_bad_options(store):
    with pytest.raises(OptionError):
        NeighborLoader(store, [2], 8, prefetch=0)
    with pytest.raises(OptionError):
        NeighborLoader(store, [2], 8, num_workers=0)
    if not torch.cuda.is_available():
        with pytest.raises(OptionError):
            NeighborLoader(store, [2], 8, device="cuda")
    with pytest.raises(OptionError):
        ClusterLoader(store)  # no partition, no parts


def test_cluster_loader_real_sampler(store):
    parts = np.random.default_rng(1).integers(0, 12, N).astype(np.int32)
    a = batches_of(ClusterLoader(store, parts=parts, num_parts=12, clusters_per_batch=5, seed=4))
    b = batches_of(ClusterLoader(store, parts=parts, num_parts=12, clusters_per_batch=5, seed=4,
                                 num_workers=3))
    assert len(a) == 3
    for p, q in zip(a, b):
        assert torch.equal(p.nodes, q.nodes) and torch.equal(p.edge_index, q.edge_index)
        assert torch.equal(p.edge_weight, q.edge_weight) and torch.equal(p.x, q.x)
    seen = np.sort(np.concatenate([p.nodes.numpy() for p in a]))
    np.testing.assert_array_equal(seen, np.arange(N))


def test_pool_replaces_small_free_buffers():
    from gstore.pipeline.loader.pin import HostBufferPool

    pool = HostBufferPool(3, np.float32, max_buffers=2)
    a = pool.acquire(10)
    b = pool.acquire(20)
    del a, b
    big = pool.acquire(100)  # both free buffers too small: the larger one is replaced
    assert big.shape[0] >= 100 and len(pool._entries) == 2
    held = [pool.acquire(5), big]
    extra = pool.acquire(5)  # every pooled buffer in use: an unpooled one
    assert all(extra is not h for h in held) and len(pool._entries) == 2


@pytest.mark.parametrize("sort_ids", [False, True])
def test_sorted_and_unsorted_reads_same_batches(store, sort_ids, monkeypatch):
    monkeypatch.setattr("gstore.pipeline.features.gather.SORT_MIN_ROWS", 1)
    ref = batches_of(NeighborLoader(store, [4, 4], 64, seed=1, sort_ids=None))
    got = batches_of(NeighborLoader(store, [4, 4], 64, seed=1, sort_ids=sort_ids))
    same_batches(ref, got)
