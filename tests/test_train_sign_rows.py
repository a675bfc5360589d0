"""Row batches (pipeline/loader/rows.py) and the row models (train/row_models.py): what sgc / sign
train on, checked against plain numpy on small stores."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import gstore
from gstore.errors import OptionError
from gstore.pipeline.features.gather import gather_features
from gstore.pipeline.loader import NeighborLoader, RowLoader
from gstore.pipeline.loader.staging import PinnedBudget
from gstore.train.loop import forward, loss_rows
from gstore.train.row_models import SGC, SIGN, hop_scales
from train_graphs import community_store

N = 240


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> gstore.GraphStore:
    return gstore.open(community_store(tmp_path_factory.mktemp("rows") / "g.gstore", n=N, dim=6))


@pytest.fixture(scope="module")
def arrays(store) -> list[np.ndarray]:
    """Three (N, F_i) arrays of different widths and dtypes (the store's features first)."""
    x = np.asarray(store.features)
    rng = np.random.default_rng(1)
    return [x, rng.standard_normal((N, 3)).astype(np.float16), rng.standard_normal((N, 5)).astype(np.float32)]


def expected_x(arrays, ids) -> np.ndarray:
    return np.concatenate([a[ids].astype(np.float32) for a in arrays], axis=1)


def batches(loader) -> list:
    return [b for b in loader]


@pytest.mark.parametrize("workers", [1, 3])
def test_row_batches_hold_the_arrays_side_by_side(store, arrays, workers):
    loader = RowLoader(store, arrays, 50, "train", seed=4, num_workers=workers)
    train = np.asarray(store.split("train"))
    got = batches(loader)
    assert len(got) == len(loader) == -(-len(train) // 50)
    seen = np.concatenate([b.nodes.numpy() for b in got])
    assert sorted(seen.tolist()) == sorted(train.tolist())         # every seed once per epoch
    assert not np.array_equal(seen, np.sort(train))                 # shuffled
    labels = np.asarray(store.labels)
    for i, b in enumerate(got):
        ids = b.nodes.numpy()
        assert b.kind == "rows" and b.index == i and b.num_seeds == len(ids)
        assert b.x.dtype == torch.float32 and b.x.shape == (len(ids), 6 + 3 + 5)
        assert np.array_equal(b.x.numpy(), expected_x(arrays, ids))
        assert np.array_equal(b.y.numpy(), labels[ids])
        assert b.layer_blocks(0) == [] and b.blocks == [] and b.degree is None
        logits, y = loss_rows(b, torch.zeros(len(ids), 4))          # the loop's rule: every row
        assert len(logits) == len(ids) and torch.equal(y, b.y)


def test_same_batches_for_any_worker_count_and_the_seeding_rule(store, arrays):
    one = [b.nodes.numpy() for b in RowLoader(store, arrays, 40, "train", seed=9)]
    three = [b.nodes.numpy() for b in RowLoader(store, arrays, 40, "train", seed=9, num_workers=3)]
    assert all(np.array_equal(a, b) for a, b in zip(one, three)) and len(one) == len(three)
    # the order NeighborLoader gives the same seeds, epoch and seed (seeds.SeedPlan)
    nb = NeighborLoader(store, [2], 40, "train", seed=9)
    assert all(np.array_equal(a, b.nodes.numpy()[:b.num_seeds]) for a, b in zip(one, nb))


def test_all_float16_arrays_are_upcast_after_the_gather(store, arrays):
    half = [a.astype(np.float16) for a in arrays]
    b = next(iter(RowLoader(store, half, 32, "val", shuffle=False)))
    assert b.x.dtype == torch.float32
    assert np.array_equal(b.x.numpy(), expected_x(half, b.nodes.numpy()))


def test_staged_gather_writes_the_same_rows(store, arrays):
    """The pinned-staging path (one Staging per batch; pageable here, no CUDA) fills the same x."""
    loader = RowLoader(store, arrays, 32, "train", seed=2)
    want = [(b.nodes.numpy(), b.x.numpy().copy()) for b in loader]
    staged = RowLoader(store, arrays, 32, "train", seed=2)
    staged.budget = staged.gatherer.budget = PinnedBudget(1 << 20)
    for (ids, x), b in zip(want, staged):
        assert np.array_equal(b.nodes.numpy(), ids) and np.array_equal(b.x.numpy(), x)


def test_a_pass_over_every_node_is_id_ranges(store, arrays):
    loader = RowLoader(store, arrays, 64, None, shuffle=False, labels=False)
    got = batches(loader)
    assert [len(b.nodes) for b in got] == [64, 64, 64, N - 192]
    assert np.array_equal(np.concatenate([b.nodes.numpy() for b in got]), np.arange(N))
    assert np.array_equal(np.concatenate([b.x.numpy() for b in got]), expected_x(arrays, np.arange(N)))
    assert got[0].y is None
    # the schedule is ranges, not an N-sized id array
    assert isinstance(loader.plan.batches(0)[1], range)
    with pytest.raises(OptionError, match="shuffle=False"):
        RowLoader(store, arrays, 64, None)


def test_resume_mid_epoch_and_refusal_of_other_arrays(store, arrays):
    full = RowLoader(store, arrays, 30, "train", seed=5, names=["x", "h1", "h2"])
    full.set_epoch(1)
    want = [b.nodes.numpy() for b in full]
    part = RowLoader(store, arrays, 30, "train", seed=5, names=["x", "h1", "h2"])
    part.set_epoch(1)
    it = iter(part)
    for _ in range(3):
        next(it)
    state = part.state_dict()
    del it
    again = RowLoader(store, arrays, 30, "train", seed=5, names=["x", "h1", "h2"])
    again.load_state_dict(state)
    rest = [b.nodes.numpy() for b in again]
    assert len(rest) == len(want) - 3 and all(np.array_equal(a, b) for a, b in zip(want[3:], rest))
    # saved over [x, h1, h2]; a loader over other hops (other arrays or names) must refuse it
    for other, names in ((arrays[:2], ["x", "h1"]), (arrays, ["x", "h1", "h3"])):
        with pytest.raises(OptionError, match="arrays: saved") as e:
            RowLoader(store, other, 30, "train", seed=5, names=names).load_state_dict(state)
        assert "h2" in str(e.value) and "\n" not in str(e.value)


def test_bad_row_arrays_are_refused(store, arrays):
    with pytest.raises(OptionError, match="one row per node"):
        RowLoader(store, [arrays[0][:10]], 8)
    with pytest.raises(OptionError, match="float32 or float16"):
        RowLoader(store, [arrays[0].astype(np.float64)], 8)
    with pytest.raises(OptionError, match="non-empty"):
        RowLoader(store, [], 8)
    with pytest.raises(OptionError, match="names"):
        RowLoader(store, arrays, 8, names=["a"])


def test_row_batches_refuse_graph_models_and_neighbor_batches_still_need_layers(store, arrays):
    b = next(iter(RowLoader(store, arrays, 16, "train")))
    with pytest.raises(OptionError, match="no graph"):
        b.layer_blocks(2)
    nb = next(iter(NeighborLoader(store, [2], 16, "train")))
    with pytest.raises(OptionError, match=">= 1"):
        nb.layer_blocks(0)


def test_gather_features_into_a_column_block():
    rng = np.random.default_rng(0)
    src = rng.standard_normal((50, 4)).astype(np.float32)
    ids = rng.integers(0, 50, 3000)                 # >= SORT_MIN_ROWS: the ordered kernel too
    for sort in (False, True):
        buf = np.full((3000, 10), -7.0, np.float32)
        gather_features(src, ids, buf[:, 3:7], sort=sort)
        assert np.array_equal(buf[:, 3:7], src[ids])
        assert (buf[:, :3] == -7).all() and (buf[:, 7:] == -7).all()


# ---- models ------------------------------------------------------------------------------------
def test_sgc_is_a_linear_map_of_the_rows():
    torch.manual_seed(0)
    m = SGC(6, 4, dropout=0.5)
    x = torch.randn(9, 6)
    m.eval()
    assert torch.allclose(m(x, [], None), x @ m.lin.weight.T + m.lin.bias)
    assert m.num_layers == 0
    with pytest.raises(OptionError, match="6 columns"):
        m(torch.randn(9, 7), [], None)


@pytest.mark.parametrize("layers,bn", [(1, False), (2, True), (3, True)])
def test_sign_shapes_and_its_branches(layers, bn):
    torch.manual_seed(0)
    f, hops, hidden, c = 5, 3, 8, 4
    m = SIGN(f, hops, hidden, c, layers, dropout=0.2, batch_norm=bn)
    assert len(m.branches) == hops + 1 and len(m.head) == layers - 1
    x = torch.randn(11, (hops + 1) * f)
    m.train()
    out = m(x, [], None)
    assert out.shape == (11, c)
    out.sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.eval()
    # hop k's branch reads columns [k f, (k + 1) f) only
    x2 = x.clone()
    x2[:, 2 * f:3 * f] += 1.0
    d = m.branches[2](x2[:, 2 * f:3 * f]) - m.branches[2](x[:, 2 * f:3 * f])
    assert d.abs().sum() > 0
    with torch.no_grad():
        assert not torch.allclose(m(x, [], None), m(x2, [], None))
    with pytest.raises(OptionError, match="20 columns"):
        m(torch.randn(3, 4 * f + 1), [], None)
    m.train()
    assert m(torch.randn(1, (hops + 1) * f), [], None).shape == (1, c)   # a one-row last batch


def test_the_loop_runs_row_models_on_row_batches(store, arrays):
    loader = RowLoader(store, arrays[:1] * 3, 64, "train")
    b = next(iter(loader))
    m = SIGN(6, 2, 8, 4, 2)
    assert forward(m, b).shape == (len(b.nodes), 4)
    with pytest.raises(OptionError):
        SIGN(6, 0, 8, 4)


def test_mapped_pages_are_released_as_the_loader_reads(store, arrays, monkeypatch):
    import gstore.pipeline.loader.rows as rows

    released = []
    monkeypatch.setattr(rows, "RELEASE_EVERY_BYTES", 1000)
    monkeypatch.setattr(rows, "release_pages", lambda a: released.append(id(a)))
    got = [b.x.numpy().copy() for b in RowLoader(store, arrays, 40, "train", seed=1)]
    assert len(released) >= len(arrays) * (len(got) - 1) and set(released) == {id(a) for a in arrays}


# ---- SIGN's regularisation and input scaling (the accuracy search, docs/benchmarks.md) ----------------
def _sign(**kw) -> SIGN:
    torch.manual_seed(0)
    return SIGN(5, 2, 8, 3, 2, **kw)


def test_sign_input_dropout_is_apart_from_the_hidden_dropout():
    x = torch.rand(64, 15) + 0.5                      # no zero inputs: a dropped one is visible
    m = _sign(dropout=0.0, input_dropout=1.0)        # every input dropped, hidden kept
    m.train()
    # with every input zeroed, each branch sees only its bias: every row gives the same logits
    out = m(x, [], None)
    assert torch.allclose(out, out[:1].expand_as(out))
    m2 = _sign(dropout=0.0, input_dropout=0.0)
    m2.train()
    out2 = m2(x, [], None)
    assert not torch.allclose(out2, out2[:1].expand_as(out2))
    assert _sign(dropout=0.3).input_dropout == 0.3  # default: --dropout on the inputs too


@pytest.mark.parametrize("kw", [dict(dropout=0.5, input_dropout=0.8), dict(batch_norm=True, dropout=0.5)])
def test_sign_eval_is_deterministic_and_training_is_reproducible_under_a_seed(kw):
    x = torch.randn(32, 15)
    m = _sign(**kw)
    m.train()
    torch.manual_seed(5)
    a = m(x, [], None)
    torch.manual_seed(5)
    b = m(x, [], None)
    torch.manual_seed(6)
    c = m(x, [], None)
    assert torch.equal(a, b) and not torch.equal(a, c)            # dropout follows the seed
    m.eval()
    with torch.no_grad():
        assert torch.equal(m(x, [], None), m(x, [], None))       # no dropout in eval
    assert torch.equal(_sign(**kw).state_dict()["out.weight"], m.state_dict()["out.weight"])


def test_sign_hop_scales_multiply_each_hop_block_and_travel_in_the_state_dict():
    x = torch.randn(7, 15)
    plain, scaled = _sign(), _sign(hop_scales=[1.0, 2.0, 4.0])
    plain.eval(), scaled.eval()
    xs = x.clone()
    xs[:, 5:10] *= 2.0
    xs[:, 10:15] *= 4.0
    with torch.no_grad():
        assert torch.allclose(scaled(x, [], None), plain(xs, [], None), atol=1e-6)
    sd = scaled.state_dict()
    assert torch.equal(sd["hop_scales"], torch.tensor([1.0, 2.0, 4.0]))
    back = _sign()
    back.load_state_dict(sd)
    assert torch.equal(back.hop_scales, sd["hop_scales"])
    for bad in ([1.0, 2.0], [1.0, 0.0, 1.0], [1.0, float("nan"), 1.0]):
        with pytest.raises(OptionError, match="hop_scales"):
            _sign(hop_scales=bad)


def test_hop_scales_are_rms_ratios_to_the_raw_features():
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((50, 4)).astype(np.float32)
    hops = [x0, (x0 / 3).astype(np.float16), np.zeros((50, 4), np.float32)]
    rows = np.arange(0, 50, 2)
    got = hop_scales(hops, rows)
    rms = lambda a: np.sqrt(np.mean(np.square(a[rows].astype(np.float64))))   # noqa: E731
    assert got[0] == 1.0 and got[2] == 1.0            # hop 0 and an all-zero hop keep 1.0
    assert got[1] == pytest.approx(rms(x0) / rms(hops[1]), rel=1e-6)
    assert got[1] == pytest.approx(3.0, rel=1e-2)
    # a strided sample of at most max_rows rows, first and last included
    assert hop_scales(hops, np.arange(50), max_rows=10)[1] == pytest.approx(3.0, rel=2e-2)
    assert hop_scales(hops, np.array([], np.int64)) == [1.0, 1.0, 1.0]


def test_hop_scales_read_rows_in_chunks_with_the_same_result():
    from gstore.train.row_models import _rms

    rng = np.random.default_rng(3)
    a = rng.standard_normal((40, 3)).astype(np.float16)
    rows = np.array([0, 3, 4, 9, 17, 25, 39])
    want = np.sqrt(np.mean(np.square(a[rows].astype(np.float64))))
    for chunk in (1, 3, 7, 100):                     # chunks smaller than, equal to, above the rows
        assert _rms(a, rows, chunk=chunk) == pytest.approx(want, rel=1e-12)
