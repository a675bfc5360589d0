"""train/models.py GNN: the training forward on sampled blocks equals full-batch inference through the
layer-wise protocol, the dense full-batch formulas, training reduces the loss, runs are
bit-identical, bad configs are one-line OptionErrors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gstore.errors import OptionError
from gstore.pipeline.loader.batch import LayerBlock
from gstore.pipeline.sampling.neighbor import NeighborSampler
from gstore.train.models import GNN, ModelConfig
from store_factory import reference_csr

N, F_IN, C = 40, 6, 3


@pytest.fixture(scope="module")
def graph():
    """An undirected graph (no self-loops, one isolated node) as the store's in-edge CSR."""
    rng = np.random.default_rng(7)
    src, dst = rng.integers(0, N - 1, 120), rng.integers(0, N - 1, 120)
    keep = src != dst
    indptr, indices = reference_csr(src[keep], dst[keep], N, directed=False)
    x = torch.from_numpy(rng.standard_normal((N, F_IN)).astype(np.float32))
    return indptr, indices, x


def full_block(indptr, indices) -> LayerBlock:
    dst = np.repeat(np.arange(N), np.diff(indptr))
    return LayerBlock(torch.from_numpy(np.stack([indices, dst]).astype(np.int64)), N, N)


def degree_of(indptr) -> torch.Tensor:
    return torch.from_numpy(np.diff(indptr).astype(np.float32))


VARIANTS = [dict(), dict(jk="cat"), dict(jk="max"), dict(residual=True), dict(batch_norm=True),
            dict(residual=True, batch_norm=True, jk="cat")]


def make_model(conv, num_layers=2, hidden=8, **kw) -> GNN:
    torch.manual_seed(11)
    m = GNN(conv, F_IN, hidden, C, num_layers, heads=2, **kw)
    if kw.get("batch_norm"):
        with torch.no_grad():   # eval mode uses running stats: make them non-trivial
            for bn in m.norms:
                bn.running_mean.normal_()
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.normal_()
                bn.bias.normal_()
    return m.eval()


def layerwise(model: GNN, block: LayerBlock, x, degree) -> torch.Tensor:
    """Full-batch inference the way pipeline/inference runs it: one layer for all nodes at a time,
    the read-out state folded row-wise."""
    h, state = x, None
    for layer in range(model.num_layers):
        h = model.forward_layer(layer, h, block, degree)
        assert h.shape == (N, model.layer_dim(layer))
        state = model.readout_step(layer, h, state)
    assert (state is None) == (model.readout_dim == 0)
    if state is not None:
        assert state.shape[1] == model.readout_dim
    return model.readout(state, h)


@pytest.mark.parametrize("conv", ["sage", "gcn", "gat"])
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items())
                         or "plain")
def test_sampled_full_neighborhoods_equal_layerwise_full_batch(graph, conv, variant):
    """Training forward over fanout -1 blocks (the real sampler) == layer-wise inference on the
    whole graph, at the seeds: the two paths share every step, and GCN's estimator is exact."""
    indptr, indices, x = graph
    model = make_model(conv, num_layers=3, **variant)
    full = layerwise(model, full_block(indptr, indices), x, degree_of(indptr))
    seeds = np.array([0, 5, 17, 33, N - 1], dtype=np.int64)   # N-1 is isolated
    sub = NeighborSampler(indptr, indices, [-1, -1, -1]).sample(seeds, 0)
    blocks = [LayerBlock(torch.from_numpy(b.edge_index()), b.num_src, b.num_dst) for b in sub.blocks]
    nodes = torch.from_numpy(sub.nodes)
    with torch.no_grad():
        out = model(x[nodes], blocks, degree_of(indptr)[nodes])
    torch.testing.assert_close(out, full[torch.from_numpy(seeds)], rtol=1e-5, atol=1e-5)


def dense_adjacency(indptr, indices) -> torch.Tensor:
    a = torch.zeros(N, N)
    dst = np.repeat(np.arange(N), np.diff(indptr))
    a[torch.from_numpy(dst), torch.from_numpy(indices.astype(np.int64))] = 1.0   # a[v, u]: u -> v
    return a


def test_gcn_equals_the_dense_symmetric_formula(graph):
    """GCN = D^-1/2 (A+I) D^-1/2 X W + b (d = degree + 1), two layers, ReLU between."""
    indptr, indices, x = graph
    model = make_model("gcn", dropout=0.0)
    a = dense_adjacency(indptr, indices)
    d = a.sum(1) + 1
    norm = (a + torch.eye(N)) / torch.sqrt(d[:, None] * d[None, :])
    c1, c2 = model.convs
    ref = norm @ torch.relu(norm @ x @ c1.lin.weight.T + c1.bias) @ c2.lin.weight.T + c2.bias
    with torch.no_grad():
        got = model(x, [full_block(indptr, indices)] * 2, degree_of(indptr))
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_sage_equals_the_dense_mean_formula(graph):
    indptr, indices, x = graph
    model = make_model("sage")
    a = dense_adjacency(indptr, indices)
    mean = a / a.sum(1, keepdim=True).clamp(min=1)
    c1, c2 = model.convs

    def layer(c, h):
        return h @ c.lin_self.weight.T + c.lin_self.bias + mean @ h @ c.lin_neigh.weight.T

    with torch.no_grad():
        got = model(x, [full_block(indptr, indices)] * 2)
    torch.testing.assert_close(got, layer(c2, torch.relu(layer(c1, x))), rtol=1e-5, atol=1e-5)


def test_cluster_batches_use_the_edge_weight(graph):
    """A block with edge_weight (Cluster-GCN's gcn_norm, self-loops as edges) gives W(sum w h) + b."""
    indptr, indices, x = graph
    blk = full_block(indptr, indices)
    loops = torch.arange(N).repeat(2, 1)
    ei = torch.cat([blk.edge_index, loops], 1)
    w = torch.rand(ei.shape[1], generator=torch.Generator().manual_seed(0))
    wblock = LayerBlock(ei, N, N, edge_weight=w)
    model = make_model("gcn", num_layers=1)
    dense = torch.zeros(N, N).index_put_((ei[1], ei[0]), w, accumulate=True)
    c = model.convs[0]
    with torch.no_grad():
        got = model(x, [wblock], None)
    torch.testing.assert_close(got, dense @ x @ c.lin.weight.T + c.bias, rtol=1e-5, atol=1e-5)


def toy_problem(seed=0):
    """Two communities, labels = community, features barely informative: the graph must help."""
    rng = np.random.default_rng(seed)
    comm = np.arange(N) % 2
    src, dst = rng.integers(0, N, 400), rng.integers(0, N, 400)
    keep = (comm[src] == comm[dst]) | (rng.random(400) < 0.1)
    indptr, indices = reference_csr(src[keep], dst[keep], N, directed=False)
    x = torch.from_numpy((rng.standard_normal((N, F_IN)) + 0.3 * comm[:, None]).astype(np.float32))
    return full_block(indptr, indices), x, degree_of(indptr), torch.from_numpy(comm)


@pytest.mark.parametrize("conv", ["sage", "gcn", "gat"])
def test_a_few_steps_reduce_the_loss(conv):
    block, x, deg, y = toy_problem()
    torch.manual_seed(0)
    model = GNN(conv, F_IN, 16, 2, 2, dropout=0.1, heads=2, batch_norm=True, residual=True)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(x, [block] * 2, deg), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]
    assert all(p.grad is not None for p in model.parameters())


def run_steps(conv: str, **kw) -> tuple[torch.Tensor, list[torch.Tensor]]:
    block, x, deg, y = toy_problem()
    torch.manual_seed(5)
    model = GNN(conv, F_IN, 16, 2, 2, heads=2, **kw)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(3):
        out = model(x, [block] * 2, deg)
        loss = torch.nn.functional.cross_entropy(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return out.detach(), [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("conv", ["sage", "gcn", "gat"])
def test_training_is_bit_identical_from_run_to_run(conv):
    """Resume exactness needs it: same seed and inputs -> the same bits (dropout included)."""
    a, pa = run_steps(conv, batch_norm=True, jk="cat")
    b, pb = run_steps(conv, batch_norm=True, jk="cat")
    assert torch.equal(a, b)
    assert all(torch.equal(p, q) for p, q in zip(pa, pb))


@pytest.mark.parametrize("kw,match", [
    (dict(conv="gin"), "unknown model 'gin'"), (dict(num_layers=0), "num_layers"),
    (dict(hidden=0), "hidden"), (dict(in_dim=-3), "in_dim"), (dict(out_dim=2.0), "out_dim"),
    (dict(jk="sum"), "jumping knowledge"), (dict(dropout=1.0), "dropout"),
    (dict(dropout="0.1"), "dropout"), (dict(batch_norm=1), "batch_norm"),
    (dict(conv="gat", hidden=10, heads=4), "multiple of heads"), (dict(heads=0), "heads"),
])
def test_bad_config_is_a_one_line_option_error(kw, match):
    args = dict(conv="sage", in_dim=4, hidden=8, out_dim=2, num_layers=2) | kw
    with pytest.raises(OptionError, match=match) as err:
        GNN(**args)
    assert "\n" not in str(err.value)


def test_any_depth_and_the_config_round_trip(graph):
    indptr, indices, x = graph
    for depth in (1, 4):
        m = make_model("sage", num_layers=depth, jk="max")
        assert m.num_layers == depth and m.in_dim == F_IN and m.out_dim == C
        assert [m.layer_dim(i) for i in range(depth)] == [8] * depth
        assert m(x, [full_block(indptr, indices)] * depth).shape == (N, C)
    m = make_model("gat", num_layers=3)
    assert [m.layer_dim(i) for i in range(3)] == [8, 8, C] and m.readout_dim == 0
    cfg = ModelConfig.from_json(m.config.to_json())
    assert cfg == m.config and GNN.from_config(cfg).config == cfg
    with pytest.raises(OptionError, match="unknown fields"):
        ModelConfig.from_json(cfg.to_json() | {"extra": 1})
    with pytest.raises(OptionError, match="blocks"):
        m(x, [full_block(indptr, indices)] * 2)


def test_batch_norm_trains_on_a_last_batch_of_one_seed(graph):
    indptr, indices, x = graph
    model = GNN("sage", F_IN, 8, C, 2, batch_norm=True, jk="cat").train()
    one = LayerBlock(torch.tensor([[1, 2], [0, 0]]), 3, 1)
    out = model(x[:3], [LayerBlock(torch.tensor([[1, 2], [0, 1]]), 3, 3), one])
    assert out.shape == (1, C) and torch.isfinite(out).all()
    out.sum().backward()


@pytest.mark.parametrize("conv", ["sage", "gcn", "gat"])
def test_model_level_split_aggregation_equals_forward_layer(graph, conv):
    """What chunked inference does with a hub: each layer's in-edges in three parts, merged, then
    finished (residual and batch norm included) == forward_layer on the whole block."""
    indptr, indices, x = graph
    model = make_model(conv, num_layers=2, residual=True, batch_norm=True, jk="cat")
    full, deg = full_block(indptr, indices), degree_of(indptr)
    parts = np.random.default_rng(0).integers(0, 3, full.num_edges)
    pieces = [LayerBlock(full.edge_index[:, torch.from_numpy(np.flatnonzero(parts == i))], N, N)
              for i in range(3)]
    h = x
    with torch.no_grad():
        for layer in range(2):
            agg = model.aggregate(layer, h, pieces[0], deg)
            for p in pieces[1:]:
                agg = model.merge(layer, agg, model.aggregate(layer, h, p, deg))
            got = model.finish(layer, h, agg, deg)
            want = model.forward_layer(layer, h, full, deg)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
            h = want
