"""Cluster batches with their loss nodes first (ClusterLoader(seeds_first=True)): the relabel kernel
against its twin, the same batches as without it, and the same loss from a model whose last layer
runs on the loss rows only."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import gstore
from gstore.errors import OptionError
from gstore.pipeline.loader import ClusterLoader
from gstore.pipeline.sampling.subgraph import ClusterSubgraph
from gstore.train.loop import forward, loss_rows
from gstore.train.models import GNN
from reference_sampling import rows_first as rows_first_ref
from store_factory import build_store, random_graph

N = 240


@st.composite
def local_csr(draw):
    n = draw(st.integers(1, 12))
    lens = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    m = int(indptr[-1])
    indices = np.array(draw(st.lists(st.integers(0, n - 1), min_size=m, max_size=m)), dtype=np.int64)
    first = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    weighted = draw(st.booleans())
    weight = np.arange(m, dtype=np.float32) + 0.5 if weighted else None
    return indptr, indices, weight, first


@settings(max_examples=60, deadline=None)
@given(local_csr())
def test_rows_first_matches_its_twin(case):
    indptr, indices, weight, first = case
    n = len(first)
    nodes = np.arange(100, 100 + n, dtype=np.int64)
    sub = ClusterSubgraph(nodes, indptr, indices, np.arange(len(indices), dtype=np.int64), weight,
                          np.zeros(1, np.int64))
    out, k = sub.rows_first(first)
    order, ip, ix, w, k_ref = rows_first_ref(indptr, indices, weight, first)
    assert k == k_ref
    np.testing.assert_array_equal(out.nodes, nodes[order])
    np.testing.assert_array_equal(out.indptr, ip)
    np.testing.assert_array_equal(out.indices, ix)
    if weight is None:
        assert out.edge_weight is None
    else:
        np.testing.assert_array_equal(out.edge_weight, w)
    # rules: same edge multiset in store ids, loss rows first, edge ids follow their edges
    def edges(s):
        dst = np.repeat(np.arange(s.num_nodes), np.diff(s.indptr))
        return sorted(zip(s.nodes[s.indices].tolist(), s.nodes[dst].tolist(), s.edge_ids.tolist()))
    assert edges(out) == edges(sub)
    assert first[np.asarray(order[:k], dtype=int)].all() and not first[np.asarray(order[k:], dtype=int)].any()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rng = np.random.default_rng(4)
    src, dst = random_graph(N, 3000, seed=9)
    labels = np.arange(N) % 3
    labels[rng.choice(N, 20, replace=False)] = -1        # unlabelled rows stay out of the loss
    feats = (rng.standard_normal((N, 6)) + 0.4 * (np.arange(N) % 3)[:, None]).astype(np.float32)
    train = np.sort(rng.choice(N, 90, replace=False))
    path = build_store(tmp_path_factory.mktemp("sf") / "s", src, dst, N, features=feats, labels=labels,
                       splits={"train": train})
    return gstore.open(path)


def loader(store, first: bool, gcn: bool = False, **kw):
    return ClusterLoader(store, (np.arange(N) % 8).astype(np.int32), 8, 3, seed=5, seeds_first=first,
                         normalize=gcn, self_loops=gcn, **kw)


def global_edges(b):
    ei = b.edge_index.numpy()
    w = np.ones(ei.shape[1]) if b.edge_weight is None else b.edge_weight.numpy()
    nodes = b.nodes.numpy()
    return sorted(zip(nodes[ei[0]].tolist(), nodes[ei[1]].tolist(), np.round(w, 6).tolist()))


def test_seeds_first_batches_hold_the_same_graph_with_loss_nodes_first(store):
    """(The pinned-staging path is compared with this one in test_loader_cuda_path.)"""
    train = set(np.asarray(store.split("train")).tolist())
    feats = np.asarray(store.features)
    for a, b in zip(loader(store, False, gcn=True), loader(store, True, gcn=True)):
        assert b.seeds_first and not a.seeds_first
        assert sorted(a.nodes.tolist()) == sorted(b.nodes.tolist())
        assert global_edges(a) == global_edges(b)
        k = b.num_seeds
        assert k == int(a.mask.sum())
        assert b.mask[:k].all() and not b.mask[k:].any()
        assert set(b.nodes[:k].tolist()) <= train and not set(b.nodes[k:].tolist()) & train
        np.testing.assert_array_equal(b.x.numpy(), feats[b.nodes.numpy()])
        np.testing.assert_array_equal(b.degree.numpy(), np.diff(np.asarray(store.indptr))[b.nodes.numpy()])
        blocks = b.layer_blocks(3)
        assert blocks[0] is blocks[1] and blocks[0].num_dst == b.num_nodes
        last = blocks[2]
        assert last.num_dst == k and last.num_src == b.num_nodes
        dst = b.edge_index[1]
        assert torch.equal(last.edge_index, b.edge_index[:, dst < k])   # the prefix is every edge into them


@pytest.mark.parametrize("conv,kw", [("sage", {}), ("gcn", {}), ("gat", {"heads": 2}),
                                     ("sage", {"jk": "cat", "residual": True, "batch_norm": True}),
                                     ("gcn", {"jk": "max"})])
def test_the_loss_is_the_same_with_the_last_layer_on_loss_rows_only(store, conv, kw):
    torch.manual_seed(0)
    model = GNN(conv, 6, 8, 3, 3, dropout=0.0, **kw)
    model.train()
    gcn = conv == "gcn"
    for a, b in zip(loader(store, False, gcn=gcn), loader(store, True, gcn=gcn)):
        la, ya = loss_rows(a, forward(model, a))
        out = forward(model, b)
        rows = b.num_seeds if model.row_local_output else b.num_nodes
        assert out.shape[0] == rows and b.num_seeds < b.num_nodes
        assert model.row_local_output == (not (kw.get("batch_norm") and "jk" in kw))
        lb, yb = loss_rows(b, out)
        # the same rows, in another order: compare per store node
        ia = a.nodes[a.mask & (a.y >= 0)].argsort()
        ib = b.nodes[:b.num_seeds][b.y[:b.num_seeds] >= 0].argsort()
        torch.testing.assert_close(la[ia], lb[ib], rtol=1e-4, atol=1e-5)
        assert torch.equal(ya[ia], yb[ib])
        ga = torch.autograd.grad(torch.nn.functional.cross_entropy(la, ya), model.convs[0].parameters().__next__())
        gb = torch.autograd.grad(torch.nn.functional.cross_entropy(lb, yb), model.convs[0].parameters().__next__())
        torch.testing.assert_close(ga[0], gb[0], rtol=1e-4, atol=1e-5)


def test_a_state_saved_without_seeds_first_is_refused(store):
    plain = loader(store, False)
    it = iter(plain)
    next(it)
    state = plain.state_dict()
    with pytest.raises(OptionError, match="seeds_first"):
        loader(store, True).load_state_dict(state)
    with pytest.raises(OptionError, match="needs a split"):
        ClusterLoader(store, (np.arange(N) % 8).astype(np.int32), 8, 3, split=None, seeds_first=True)


@pytest.mark.parametrize("conv", ["sage", "gcn", "gat"])
def test_a_cluster_batch_without_loss_nodes_gives_no_rows_and_a_zero_gradient(conv):
    """seeds_first batch with no split node: the last block has no destinations (GAT's reshape
    of an empty head tensor raised)."""
    from gstore.pipeline.loader.batch import LayerBlock

    torch.manual_seed(1)
    ei = torch.tensor([[0, 1, 2], [1, 2, 0]])
    w = torch.ones(3) if conv == "gcn" else None
    model = GNN(conv, 4, 8, 3, 2, heads=2)
    out = model(torch.randn(3, 4), [LayerBlock(ei, 3, 3, edge_weight=w),
                                    LayerBlock(ei[:, :0], 3, 0, edge_weight=None if w is None else w[:0])],
                torch.ones(3))
    assert out.shape == (0, 3)
    out.sum().backward()
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
