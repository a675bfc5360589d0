"""The training models (train/models.py GNN) through layer-wise inference equal their own
full-neighborhood forward on the whole graph, hubs split over chunks included."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from store_factory import build_store, random_graph

import gstore
from gstore.pipeline.inference.layerwise import layerwise_inference
from gstore.pipeline.loader.batch import LayerBlock

models = pytest.importorskip("gstore.train.models", reason="train/models.py (GNN) is not in this tree")

TINY = 8000


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    """50 nodes: random edges, a hub (node 3 is every node's out-neighbor), a self-loop, isolated nodes."""
    n = 50
    src, dst = random_graph(n - 6, 200, seed=2)
    src = np.r_[src, np.arange(n - 6), 9]
    dst = np.r_[dst, np.full(n - 6, 3), 9]
    x = np.random.default_rng(5).standard_normal((n, 5)).astype(np.float32)
    path = tmp_path_factory.mktemp("gnn") / "s"
    build_store(path, src, dst, n, features=x, directed=True)
    return gstore.open(path), x


def _full_forward(model, store, x) -> np.ndarray:
    """model(x, L copies of the whole graph's block, degree): full-batch inference."""
    indptr = np.asarray(store.indptr)
    n = store.num_nodes
    dst = np.repeat(np.arange(n), np.diff(indptr))
    ei = torch.from_numpy(np.stack([np.asarray(store.indices, dtype=np.int64), dst]))
    block = LayerBlock(ei, n, n)
    degree = torch.from_numpy(np.diff(indptr).astype(np.float32))
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x), [block] * model.num_layers, degree).numpy()


def _randomise_norms(model) -> None:
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


@pytest.mark.parametrize("conv", ["sage", "gcn", "gat"])
@pytest.mark.parametrize("extras", [dict(jk="none"), dict(jk="cat", batch_norm=True, residual=True),
                                    dict(jk="max", residual=True)])
def test_gnn_layerwise_equals_its_full_forward(graph, tmp_path, conv, extras):
    store, x = graph
    torch.manual_seed(1)
    model = models.GNN(conv, in_dim=5, hidden=8, out_dim=3, num_layers=3, dropout=0.5, heads=2, **extras)
    _randomise_norms(model)
    ref = _full_forward(model, store, x)
    model.train()      # inference must switch to eval itself (dropout off) and back
    res = layerwise_inference(store, model, tmp_path / "o", memory_budget=TINY)
    assert model.training
    assert res.layers[0].hubs >= 1 and min(s.chunks for s in res.layers) > 3
    np.testing.assert_allclose(np.asarray(res.open_output()), ref, rtol=1e-4, atol=1e-5)
    big = layerwise_inference(store, model, tmp_path / "big", memory_budget=1 << 30, dtype="float16")
    assert [s.chunks for s in big.layers] == [1, 1, 1]
    np.testing.assert_allclose(np.asarray(big.open_output()), ref, rtol=2e-2, atol=2e-2)
