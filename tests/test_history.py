"""--method history: the threaded pull/write pipeline equals the serial twin (tests/reference_history.py)."""
from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import gstore
from gstore.pipeline.history.arrays import HistoryArrays, HistoryLayout
from gstore.pipeline.history.batches import gas_loader, scalable_loader
from gstore.pipeline.history.stage import HistoryBatch, HistoryLoader, HistoryWrites, overlay
from gstore.train.history import HistoryStep, history_widths
from gstore.train.loop import Amp, EpochProgress, train_epoch
from gstore.train.metrics import SplitMetrics
from gstore.train.models import GNN
from reference_history import serial_epoch
from train_graphs import community_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return gstore.open(community_store(tmp_path_factory.mktemp("hist") / "g.gstore", n=160, dim=8))


def partition_of(store, k: int = 6):
    parts = (np.arange(store.num_nodes) * k // store.num_nodes)[np.random.default_rng(1).permutation(store.num_nodes)]
    return SimpleNamespace(parts=parts, num_parts=k, perm=None, partptr=None, contiguous=False, pos=None)


def inner_loader(store, variant: str, workers: int = 1, sweep: int = 1):
    if variant == "gas":
        return gas_loader(store, partition_of(store), 2, seed=3, prefetch=2, num_workers=workers)
    return scalable_loader(store, 4, 16, seed=3, prefetch=2, num_workers=workers, sweep=sweep)


def model_for(store, layers: int, conv: str = "sage") -> GNN:
    torch.manual_seed(7)
    return GNN(conv, store.features.shape[1], 8, len(store.label_names), layers, dropout=0.3)


def random_histories(store, model, gradients: bool, dtype: str):
    rng = np.random.default_rng(5)
    widths = history_widths(model)
    emb = [rng.standard_normal((store.num_nodes, w)).astype(dtype) for w in widths]
    grad = [np.zeros((store.num_nodes, w), np.float32) for w in widths] if gradients else None
    return HistoryLayout(store.num_nodes, widths, dtype, gradients), emb, grad


class Recorder(HistoryStep):
    """HistoryStep that records what the serial twin records."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.losses, self.pulled, self.grad_pulled, self.batch_ids = [], [], [], []

    def forward(self, model, batch):
        out = super().forward(model, batch)        # overlay happens first
        self.batch_ids.append(batch.batch_ids.copy())
        self.pulled.append([r.copy() for r in batch.halo_rows])
        self.grad_pulled.append([g.copy() for g in batch.grad_rows])
        return out

    def objective(self, batch, loss):
        self.losses.append(float(loss.detach()))
        return super().objective(batch, loss)


def run_threaded(store, variant, model, layout, emb, grad, tmp_path, *, epochs=2, workers=2, slow=0.0,
                 sweep=1):
    arrays = HistoryArrays.create(tmp_path / "history", layout)
    for l, e in enumerate(emb):
        arrays.emb[l][:] = e
    loader = HistoryLoader(inner_loader(store, variant, workers, sweep), loss_mask=True,
                           gradients=grad is not None)
    loader.arrays = arrays
    if slow:
        write = arrays.write_emb

        def slow_write(*a):
            time.sleep(slow)
            write(*a)
        arrays.write_emb = slow_write
    step = Recorder(loader, grad is not None, torch.device("cpu"), layout.dtype)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        train_epoch(model, loader, opt, epoch=epoch, seed=11, amp=Amp(False, torch.device("cpu")),
                    progress=EpochProgress(SplitMetrics(binary=False)), step=step)
    return step, arrays


def run_serial(store, variant, model, emb, grad, dtype, *, epochs=2, sweep=1):
    inner = inner_loader(store, variant, 1, sweep)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    emb, grad = [e.copy() for e in emb], None if grad is None else [g.copy() for g in grad]
    rec = {"losses": [], "pulled": [], "grad_pulled": []}
    for epoch in range(epochs):
        inner.set_epoch(epoch)
        r = serial_epoch(model, inner, opt, emb, grad, dtype=dtype, seed=11, epoch=epoch)
        for k in rec:
            rec[k] += r[k]
    return rec, emb, grad


@pytest.mark.parametrize("variant,dtype,layers,slow,sweep", [("gas", "float16", 3, 0.0, 1),
                                                             ("scalable-gcn", "float32", 3, 0.0, 1),
                                                             ("scalable-gcn", "float16", 2, 0.01, 1),
                                                             ("scalable-gcn", "float32", 2, 0.0, 3),
                                                             ("scalable-gcn", "float32", 2, 0.0, 0),
                                                             ("gas", "float32", 2, 0.01, 1)])
def test_threaded_pipeline_equals_the_serial_twin(store, tmp_path, variant, dtype, layers, slow, sweep):
    """Pulled halo rows, pulled gradient rows, losses and the final history and gradient stores
    equal the serial semantics bit for bit, with two loader workers and a writer slowed down so the
    pull of batch k+1 really waits for it."""
    m1, m2 = model_for(store, layers), model_for(store, layers)
    layout, emb, grad = random_histories(store, m1, variant == "scalable-gcn", dtype)
    step, arrays = run_threaded(store, variant, m1, layout, emb, grad, tmp_path, slow=slow, sweep=sweep)
    ref, emb_ref, grad_ref = run_serial(store, variant, m2, emb, grad, dtype, sweep=sweep)
    assert step.losses == ref["losses"]
    assert len(step.pulled) == len(ref["pulled"]) > 4
    for got, want in zip(step.pulled, ref["pulled"]):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    for got, want in zip(step.grad_pulled, ref["grad_pulled"]):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    for l in range(len(emb)):
        np.testing.assert_array_equal(np.asarray(arrays.emb[l]), emb_ref[l])
        if grad is not None:
            np.testing.assert_array_equal(np.asarray(arrays.grad[l]), grad_ref[l])
    if grad is not None:       # the gradient store really collected something, and was read back
        assert any(np.abs(g).sum() > 0 for g in grad_ref)
        assert any(np.abs(g).sum() > 0 for rows in ref["grad_pulled"] for g in rows)
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)


def test_overlay_applies_pushes_resets_and_adds():
    prev = HistoryWrites(seq=0, batch_ids=np.array([7, 2, 5]), pushes=[np.array([[1.], [2.], [3.]], np.float16)],
                         halo_ids=np.array([9, 4]), grads=[np.array([[10.], [20.]], np.float32)])
    b = HistoryBatch(kind="neighbor", epoch=0, index=1, nodes=torch.zeros(0), num_seeds=0, x=None, y=None,
                     seq=1, batch_ids=np.array([4, 5, 8]), halo_ids=np.array([2, 3, 7]),
                     halo_rows=[np.zeros((3, 1), np.float32)], grad_rows=[np.ones((3, 1), np.float32)])
    overlay(b, prev)
    np.testing.assert_array_equal(b.halo_rows[0][:, 0], [2., 0., 1.])      # 2 and 7 were pushed
    np.testing.assert_array_equal(b.grad_rows[0][:, 0], [21., 0., 1.])    # 4 += 20, 5 reset, 8 as read


def test_a_failing_writer_reaches_the_trainer(store, tmp_path):
    from gstore.errors import LoaderError

    model = model_for(store, 2)
    layout, emb, grad = random_histories(store, model, False, "float32")
    arrays = HistoryArrays.create(tmp_path / "h", layout)
    loader = HistoryLoader(inner_loader(store, "gas"), loss_mask=True, gradients=False)
    loader.arrays = arrays

    def broken(*a):
        raise OSError(28, "No space left on device")
    arrays.write_emb = broken
    step = HistoryStep(loader, False, torch.device("cpu"), "float32")
    with pytest.raises(LoaderError, match="history-write.*No space"):
        train_epoch(model, loader, torch.optim.Adam(model.parameters()), epoch=0, seed=0,
                    amp=Amp(False, torch.device("cpu")), progress=EpochProgress(SplitMetrics(binary=False)),
                    step=step)


def test_pulled_and_written_pages_are_released(tmp_path):
    """Once release_bytes of rows were touched, release() unmaps the pages: the process keeps no
    mapped history pages (a history larger than RAM stays page cache, not resident memory); below
    that it keeps them (releasing after every batch re-faulted every page)."""
    from gstore.memory import _proc_kib

    layout = HistoryLayout(1 << 16, (256,), "float32", True)        # 64 MiB per file
    arrays = HistoryArrays.create(tmp_path / "h", layout)
    ids = np.arange(0, 1 << 16, 2, dtype=np.int64)
    arrays.read_emb(0, ids[:4])                   # loads the kernels (shared libraries are file pages too)
    arrays.release(force=True)
    # _touch counts a page per written row of under a page, 64 KiB (fault-around) per read row
    arrays.released.every = (128 << 20) + (2 << 30) + (1 << 20)
    before = _proc_kib("/proc/self/status", "RssFile:")
    arrays.write_emb(0, ids, np.ones((len(ids), 256), np.float32))
    arrays.add_grad(0, ids, np.ones((len(ids), 256), np.float32))
    arrays.release()                              # 32k rows x 4 KiB + 32k x 64 KiB (an add reads)
    kept = _proc_kib("/proc/self/status", "RssFile:")
    rows = arrays.read_emb(0, ids)
    touched = _proc_kib("/proc/self/status", "RssFile:")
    arrays.release()                              # another 32k x 64 KiB: past it
    after = _proc_kib("/proc/self/status", "RssFile:")
    assert rows.sum() == len(ids) * 256
    assert kept - before > 48 << 20 and touched - before > 48 << 20   # mapped while in use
    assert arrays.released.touched == 0
    assert after - before < 8 << 20               # and are not any more
    arrays.close()
    again = HistoryArrays(tmp_path / "h", layout)    # the writes reached the files
    assert float(np.asarray(again.grad[0][2])[0]) == 1.0 and float(np.asarray(again.emb[0][1])[0]) == 0.0


def test_sweep_plan_puts_every_node_in_the_batches(store):
    """sweep 1: every node once per epoch; sweep 3: the train nodes every epoch and each other node
    in one epoch of every 3 (at most 2 for the top-up), never twice in an epoch, the same batch count
    every epoch; sweep 0: exactly SeedPlan's batches of the train nodes (the old scalable-gcn)."""
    from gstore.pipeline.history.batches import SweepPlan
    from gstore.pipeline.loader.seeds import SeedPlan

    train = np.asarray(store.split("train"), dtype=np.int64)
    others = np.setdiff1d(np.arange(store.num_nodes), train)
    assert 0 < len(train) <= store.num_nodes // 2
    one = SweepPlan(train, store.num_nodes, 1, 16, seed=3)
    for epoch in range(2):
        ids = np.concatenate(one.batches(epoch))
        np.testing.assert_array_equal(np.sort(ids), np.arange(store.num_nodes))
        assert len(one.batches(epoch)) == one.num_batches == -(-store.num_nodes // 16)
    three = SweepPlan(train, store.num_nodes, 3, 16, seed=3)
    for cycle in range(2):
        seen = np.zeros(store.num_nodes, int)
        for epoch in range(3 * cycle, 3 * cycle + 3):
            b = three.batches(epoch)
            ids = np.concatenate(b)
            assert len(b) == three.num_batches and len(ids) == len(train) + -(-len(others) // 3)
            assert len(np.unique(ids)) == len(ids)
            assert np.isin(train, ids).all()
            seen[ids] += 1
        assert (seen[train] == 3).all() and (seen[others] >= 1).all() and (seen[others] <= 2).all()
    zero, plain = SweepPlan(train, store.num_nodes, 0, 16, seed=3), SeedPlan(train, 16, True, False, 3)
    for epoch in range(2):
        for a, b in zip(zero.batches(epoch), plain.batches(epoch), strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("sweep", [1, 0])
def test_scalable_gcn_pushes_the_rows_of_nodes_outside_the_train_split(store, tmp_path, sweep):
    """With --history-sweep 1 an epoch rewrites every node's history rows and reads back the
    gradient rows of non-train nodes (the old train-seed batches left the other nodes' rows at their
    fill values for good); with 0 the rows of nodes outside the train split stay as filled."""
    model = model_for(store, 3)
    layout, emb, grad = random_histories(store, model, True, "float32")
    step, arrays = run_threaded(store, "scalable-gcn", model, layout, emb, grad, tmp_path, epochs=1,
                                sweep=sweep)
    train = np.zeros(store.num_nodes, bool)
    train[np.asarray(store.split("train"))] = True
    for l in range(len(emb)):
        changed = (np.asarray(arrays.emb[l]) != emb[l]).any(axis=1)
        assert changed[train].all()
        assert changed[~train].all() if sweep else not changed[~train].any()
    non_train_grads = [np.abs(g).sum() for rows, b in zip(step.grad_pulled, step.batch_ids)
                       for g in [r[~train[b]] for r in rows]]
    assert (sum(non_train_grads) > 0) == bool(sweep)


def test_the_scalable_gcn_loader_sorts_the_train_ids_without_np_unique(store, monkeypatch):
    """np.unique of the train split (20M ids at the 10^9-edge chain's 33.5M nodes) is a hash or a
    sort; the loader takes them through a bitmap pass."""
    want = np.unique(np.asarray(store.split("train"), dtype=np.int64))
    monkeypatch.setattr(np, "unique", lambda *a, **k: pytest.fail("np.unique over the train ids"))
    loader = scalable_loader(store, 4, 16, seed=3, prefetch=2, num_workers=1, sweep=1)
    assert np.array_equal(loader.gatherer.mask_ids, want)
