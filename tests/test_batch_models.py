"""What the models need from batches: Batch.degree from the loader, layer_blocks, the CSR view of
a block, to_pyg (and a PyG model trained on it)."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import gstore
from gstore.errors import OptionError
from gstore.pipeline.loader import ClusterLoader, NeighborLoader
from gstore.pipeline.loader.batch import Batch, LayerBlock
from gstore.train.models import GNN
from store_factory import build_store, random_graph

N = 300


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rng = np.random.default_rng(3)
    src, dst = random_graph(N, 4000, seed=5)
    labels = np.arange(N) % 3
    keep = (labels[src] == labels[dst]) | (rng.random(len(src)) < 0.2)   # communities = classes
    src, dst = src[keep], dst[keep]
    feats = (rng.standard_normal((N, 5)) + 0.5 * labels[:, None]).astype(np.float32)
    train = rng.choice(N, 200, replace=False)
    path = build_store(tmp_path_factory.mktemp("bm") / "s", src, dst, N, features=feats, labels=labels,
                       splits={"train": train})
    return gstore.open(path)


def neighbor(store, **kw):
    return NeighborLoader(store, [4, 3], 32, seed=2, **kw)


def cluster(store, **kw):
    return ClusterLoader(store, (np.arange(N) % 10).astype(np.int32), 10, 3, seed=2, **kw)


@pytest.mark.parametrize("make", [neighbor, cluster])
def test_batches_carry_the_full_graph_in_degree(store, make):
    deg = np.diff(np.asarray(store.indptr))
    for b in make(store):
        assert b.degree.dtype == torch.float32 and b.degree.shape == (b.num_nodes,)
        np.testing.assert_array_equal(b.degree.numpy(), deg[b.nodes.numpy()].astype(np.float32))
        assert any(t is b.degree for t in b.tensors())


def test_layer_blocks_of_neighbor_and_cluster_batches(store):
    b = next(iter(neighbor(store)))
    assert b.layer_blocks(2) == b.blocks
    with pytest.raises(OptionError, match="2 sampled layers but the model has 3"):
        b.layer_blocks(3)
    with pytest.raises(OptionError, match="num_layers"):
        b.layer_blocks(0)
    c = next(iter(cluster(store)))
    blocks = c.layer_blocks(3)
    assert len(blocks) == 3 and all(x is blocks[0] for x in blocks)   # one csr() for all layers
    assert blocks[0].edge_index is c.edge_index and blocks[0].edge_weight is c.edge_weight
    assert blocks[0].size == (c.num_nodes, c.num_nodes)
    assert c.layer_blocks(2)[0] is blocks[0]


def test_block_csr_is_cached_per_edge_index_and_sorts_other_orders():
    blk = LayerBlock(torch.tensor([[0, 1, 2, 3], [1, 0, 1, 0]]), 4, 3)
    csr = blk.csr()
    assert csr is blk.csr()
    assert csr.crow.tolist() == [0, 2, 4, 4] and csr.col.tolist() == [1, 3, 0, 2]
    assert csr.perm.tolist() == [1, 3, 0, 2] and csr.count.tolist() == [2.0, 2.0, 0.0]
    blk.edge_index = torch.tensor([[0, 1], [0, 2]])   # a device move replaces the tensor
    assert blk.csr().crow.tolist() == [0, 1, 1, 2] and blk.csr().perm is None


@pytest.mark.parametrize("make,conv", [(neighbor, "gcn"), (cluster, "gcn"), (neighbor, "sage"),
                                       (cluster, "gat")])
def test_gnn_trains_on_loader_batches(store, make, conv):
    torch.manual_seed(0)
    model = GNN(conv, 5, 16, 3, 2, heads=2, dropout=0.1)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    epochs = []
    for epoch in range(4):
        epochs.append([])
        for b in make(store):
            out = model(b.x, b.layer_blocks(2), b.degree)
            y = b.y[:b.num_seeds] if b.kind == "neighbor" else b.y[b.mask]
            loss = torch.nn.functional.cross_entropy(out if b.kind == "neighbor" else out[b.mask], y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            epochs[-1].append(float(loss.detach()))
    assert np.mean(epochs[-1]) < 0.9 * np.mean(epochs[0])


def test_to_pyg_of_a_neighbor_batch(store):
    pytest.importorskip("torch_geometric")
    b = next(iter(neighbor(store)))
    d = b.to_pyg()
    assert d.batch_size == b.num_seeds and torch.equal(d.n_id, b.nodes) and d.num_nodes == b.num_nodes
    assert torch.equal(d.x, b.x) and torch.equal(d.y, b.y)
    pairs = {tuple(e) for blk in b.blocks for e in blk.edge_index.t().tolist()}
    got = [tuple(e) for e in d.edge_index.t().tolist()]
    assert len(got) == len(set(got)) and set(got) == pairs     # the union, each edge once
    first = next(tuple(e) for e in b.blocks[0].edge_index.t().tolist())
    assert got[0] == first                                     # first-occurrence order


def test_a_pyg_sage_model_trains_on_to_pyg_batches(store):
    pytest.importorskip("torch_geometric")
    from torch_geometric.nn import SAGEConv

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = SAGEConv(5, 16), SAGEConv(16, 3)

        def forward(self, x, edge_index):
            return self.c2(torch.relu(self.c1(x, edge_index)), edge_index)

    torch.manual_seed(0)
    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    losses = []
    for _ in range(2):
        for b in neighbor(store):
            d = b.to_pyg()
            out = net(d.x, d.edge_index)[:d.batch_size]
            loss = torch.nn.functional.cross_entropy(out, d.y[:d.batch_size])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    net.eval()
    c = next(iter(cluster(store))).to_pyg()
    with torch.no_grad():
        assert net(c.x, c.edge_index).shape == (c.num_nodes, 3)
    assert c.edge_weight is not None and c.train_mask.dtype == torch.bool and c.n_id.shape == (c.num_nodes,)


def test_to_pyg_without_pyg_is_a_one_line_error(store, monkeypatch):
    b = next(iter(neighbor(store)))
    monkeypatch.setitem(sys.modules, "torch_geometric", None)
    monkeypatch.setitem(sys.modules, "torch_geometric.data", None)
    with pytest.raises(OptionError, match="torch_geometric") as err:
        b.to_pyg()
    assert "\n" not in str(err.value)


def test_tensors_lists_block_weights_and_degree():
    blk = LayerBlock(torch.zeros((2, 0), dtype=torch.int64), 1, 1, edge_weight=torch.zeros(0))
    b = Batch(kind="neighbor", epoch=0, index=0, nodes=torch.zeros(1, dtype=torch.int64), num_seeds=1,
              x=None, y=None, blocks=[blk], degree=torch.zeros(1))
    ts = b.tensors()
    assert any(t is blk.edge_weight for t in ts) and any(t is b.degree for t in ts)
