"""train/layers.py convs against their plain-Python twins (tests/reference_models.py), and the rules
of split aggregation that layer-wise inference relies on."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gstore.errors import OptionError
from gstore.pipeline.loader.batch import LayerBlock
from gstore.train.layers import GATConv, GCNConv, SAGEConv, edge_sum
from reference_models import ref_gat, ref_gcn, ref_sage

torch.set_default_dtype(torch.float32)


def make_conv(kind: str, d_in: int, d_out: int, heads: int = 2, concat: bool = True):
    torch.manual_seed(3)
    if kind == "sage":
        conv = SAGEConv(d_in, d_out)
    elif kind == "gcn":
        conv = GCNConv(d_in, d_out)
        with torch.no_grad():
            conv.bias.normal_()
    else:
        conv = GATConv(d_in, d_out, heads, concat=concat)
        with torch.no_grad():
            conv.bias.normal_()
    return conv.double().eval()


def reference(kind: str, conv, h, block: LayerBlock, degree, edge_weight=None):
    p = {k: v.detach().numpy() for k, v in conv.named_parameters()}
    hs = h.numpy()
    src, dst = block.edge_index.numpy()
    nd = block.num_dst
    if kind == "sage":
        return ref_sage(hs, src, dst, nd, p["lin_self.weight"], p["lin_self.bias"], p["lin_neigh.weight"])
    if kind == "gcn":
        ew = None if edge_weight is None else edge_weight.numpy()
        deg = None if degree is None else degree.numpy()
        return ref_gcn(hs, src, dst, nd, deg, p["lin.weight"], p["bias"], ew)
    return ref_gat(hs, src, dst, nd, p["lin.weight"], p["att_src"][0], p["att_dst"][0], p["bias"],
                   conv.heads, conv.channels, conv.concat)


# a hand-made block: 5 sources, 3 destinations; dst 2 has no edge, dst 0 a duplicate edge and a
# self-loop, edges not grouped by destination
HAND = LayerBlock(torch.tensor([[1, 3, 0, 4, 1, 2], [0, 1, 0, 1, 0, 1]]), 5, 3)
HAND_DEG = torch.tensor([3.0, 2.0, 0.0, 5.0, 1.0], dtype=torch.float64)


@pytest.mark.parametrize("kind", ["sage", "gcn", "gat"])
@pytest.mark.parametrize("d_in,d_out", [(3, 4), (6, 2)])   # both sides of SAGE/GCN's project-first
def test_conv_equals_reference_on_a_hand_made_block(kind, d_in, d_out):
    conv = make_conv(kind, d_in, d_out)
    h = torch.randn(5, d_in, dtype=torch.float64)
    with torch.no_grad():
        got = conv(h, HAND, HAND_DEG).numpy()
    np.testing.assert_allclose(got, reference(kind, conv, h, HAND, HAND_DEG), rtol=1e-10, atol=1e-10)


@st.composite
def blocks(draw):
    nd = draw(st.integers(1, 7))
    ns = draw(st.integers(nd, 12))
    e = draw(st.integers(0, 30))
    src = draw(st.lists(st.integers(0, ns - 1), min_size=e, max_size=e))
    dst = draw(st.lists(st.integers(0, nd - 1), min_size=e, max_size=e))
    if draw(st.booleans()):  # the samplers' order: grouped by ascending destination
        order = np.argsort(dst, kind="stable")
        src, dst = [src[i] for i in order], [dst[i] for i in order]
    ei = torch.tensor([src, dst], dtype=torch.int64).reshape(2, e)
    seed = draw(st.integers(0, 2**16))
    return LayerBlock(ei, ns, nd), seed


@settings(max_examples=25, deadline=None)
@given(blocks(), st.sampled_from(["sage", "gcn", "gat"]), st.booleans())
def test_conv_equals_reference_on_random_blocks(blk, kind, concat):
    block, seed = blk
    g = torch.Generator().manual_seed(seed)
    conv = make_conv(kind, 3, 4, heads=2, concat=concat)
    h = torch.randn(block.num_src, 3, generator=g, dtype=torch.float64)
    deg = torch.randint(0, 9, (block.num_src,), generator=g).double()
    with torch.no_grad():
        got = conv(h, block, deg).numpy()
    np.testing.assert_allclose(got, reference(kind, conv, h, block, deg), rtol=1e-9, atol=1e-9)


@settings(max_examples=15, deadline=None)
@given(blocks())
def test_gcn_with_edge_weight_equals_reference(blk):
    block, seed = blk
    g = torch.Generator().manual_seed(seed)
    ew = torch.rand(block.num_edges, generator=g, dtype=torch.float64)
    wblock = LayerBlock(block.edge_index, block.num_src, block.num_dst, edge_weight=ew)
    conv = make_conv("gcn", 3, 2)
    h = torch.randn(block.num_src, 3, generator=g, dtype=torch.float64)
    with torch.no_grad():
        got = conv(h, wblock, None).numpy()   # no degree needed with weights
    np.testing.assert_allclose(got, reference("gcn", conv, h, wblock, None, ew), rtol=1e-9, atol=1e-9)


def split(block: LayerBlock, parts: np.ndarray, k: int) -> list[LayerBlock]:
    ew = block.edge_weight
    out = []
    for i in range(k):
        sel = torch.from_numpy(np.flatnonzero(parts == i))
        out.append(LayerBlock(block.edge_index[:, sel], block.num_src, block.num_dst,
                              edge_weight=None if ew is None else ew[sel]))
    return out


@settings(max_examples=25, deadline=None)
@given(blocks(), st.sampled_from(["sage", "gcn", "gcn-weighted", "gat"]), st.integers(1, 3))
def test_aggregates_over_a_split_of_the_edges_merge_to_the_whole(blk, kind, k):
    """The protocol's rule: merge(aggregate(b1), aggregate(b2), ...) finished == forward(b), for
    any split of b's edges (some parts empty, a destination's edges across parts)."""
    block, seed = blk
    g = torch.Generator().manual_seed(seed)
    if kind == "gcn-weighted":
        block = LayerBlock(block.edge_index, block.num_src, block.num_dst,
                           edge_weight=torch.rand(block.num_edges, generator=g, dtype=torch.float64))
    conv = make_conv(kind.split("-")[0], 3, 4)
    h = torch.randn(block.num_src, 3, generator=g, dtype=torch.float64) * 4
    deg = torch.randint(0, 9, (block.num_src,), generator=g).double()
    parts = np.random.default_rng(seed).integers(0, k, block.num_edges)
    with torch.no_grad():
        whole = conv(h, block, deg)
        aggs = [conv.aggregate(h, b, deg) for b in split(block, parts, k)]
        agg = aggs[0]
        for a in aggs[1:]:
            agg = conv.merge(agg, a)
        got = conv.finish(h[:block.num_dst], agg, deg[:block.num_dst])
    torch.testing.assert_close(got, whole, rtol=1e-9, atol=1e-9)


def test_gat_merge_survives_scores_far_apart():
    """Online softmax: partials whose peaks differ by hundreds must not under- or overflow."""
    conv = make_conv("gat", 2, 3, heads=1)
    h = torch.tensor([[0.0, 0.0], [300.0, -300.0], [-300.0, 300.0], [1.0, 1.0]], dtype=torch.float64)
    block = LayerBlock(torch.tensor([[1, 2, 3], [0, 0, 0]]), 4, 1)
    with torch.no_grad():
        whole = conv(h, block)
        parts = split(block, np.array([0, 1, 1]), 2)
        agg = conv.merge(conv.aggregate(h, parts[0]), conv.aggregate(h, parts[1]))
        got = conv.finish(h[:1], agg)
    assert torch.isfinite(whole).all()
    torch.testing.assert_close(got, whole)
    np.testing.assert_allclose(whole.numpy(), reference("gat", conv, h, block, None), rtol=1e-9)


def test_edge_sum_on_an_empty_block_and_on_unsorted_edges():
    h = torch.arange(12.0).reshape(4, 3)
    empty = LayerBlock(torch.zeros((2, 0), dtype=torch.int64), 4, 2)
    assert torch.equal(edge_sum(empty, h), torch.zeros(2, 3))
    unsorted = LayerBlock(torch.tensor([[3, 0, 2], [1, 0, 1]]), 4, 2)
    w = torch.tensor([1.0, 2.0, 3.0])
    assert torch.equal(edge_sum(unsorted, h, w), torch.stack([2 * h[0], h[3] + 3 * h[2]]))


def test_gradients_of_the_segment_sum_match_index_add():
    torch.manual_seed(0)
    block = LayerBlock(torch.stack([torch.randint(0, 40, (300,)), torch.randint(0, 15, (300,))]), 40, 15)
    h1 = torch.randn(40, 5, dtype=torch.float64, requires_grad=True)
    h2 = h1.detach().clone().requires_grad_()
    w = torch.rand(300, dtype=torch.float64)
    g = torch.randn(15, 5, dtype=torch.float64)
    (edge_sum(block, h1, w) * g).sum().backward()
    src, dst = block.edge_index
    ref = torch.zeros(15, 5, dtype=torch.float64).index_add(0, dst, h2[src] * w[:, None])
    (ref * g).sum().backward()
    torch.testing.assert_close(h1.grad, h2.grad)


def test_gcn_without_degree_on_an_unweighted_block_is_a_one_line_error():
    with pytest.raises(OptionError, match="degree"):
        GCNConv(3, 2)(torch.randn(5, 3), LayerBlock(HAND.edge_index, 5, 3), None)
    with pytest.raises(OptionError, match="4 degrees for 5 source rows"):
        GCNConv(3, 2)(torch.randn(5, 3), LayerBlock(HAND.edge_index, 5, 3), torch.ones(4))


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "4"])
def test_bad_conv_dims_are_option_errors(bad):
    for cls in (SAGEConv, GCNConv):
        with pytest.raises(OptionError):
            cls(bad, 4)
    with pytest.raises(OptionError):
        GATConv(3, 4, heads=bad)


def test_cpu_dropout_keeps_one_minus_p_scaled_and_is_seeded():
    from gstore.train.layers import dropout

    x = torch.ones(200_000, requires_grad=True)
    for p in (0.1, 0.5, 0.9):
        torch.manual_seed(1)
        out = dropout(x, p, True)
        kept = out != 0
        assert abs(float(kept.float().mean()) - (1 - p)) < 0.01
        torch.testing.assert_close(out[kept], torch.full((int(kept.sum()),), 1 / (1 - p)))
        out.sum().backward()
        assert torch.equal(x.grad, out.detach())   # d out / d x is the same scaled mask
        x.grad = None
        torch.manual_seed(1)
        assert torch.equal(dropout(x, p, True), out)
    assert dropout(x, 0.5, False) is x and dropout(x, 0.0, True) is x
    # every 16-bit lane of the random words is used: no position is kept more often than others
    torch.manual_seed(2)
    lanes = torch.stack([dropout(torch.ones(4000), 0.5, True) != 0 for _ in range(50)]).float()
    per_lane = lanes.view(50, -1, 4).mean((0, 1))
    assert ((per_lane - 0.5).abs() < 0.02).all()


def test_out_of_range_block_ids_are_refused_before_any_sparse_product():
    h = torch.randn(4, 3)
    for ei in ([[4], [0]], [[0], [2]], [[-1], [0]], [[0], [-1]]):
        with pytest.raises(OptionError, match="outside|>= num_dst"):
            edge_sum(LayerBlock(torch.tensor(ei), 4, 2), h)
    with pytest.raises(OptionError, match="4 sources but only 3 rows"):
        edge_sum(LayerBlock(torch.tensor([[0], [0]]), 4, 2), h[:3])


def test_half_precision_rows_are_summed_in_float32():
    h = torch.full((1001, 2), 0.1, dtype=torch.float16)
    block = LayerBlock(torch.stack([torch.arange(1001), torch.zeros(1001, dtype=torch.int64)]), 1001, 1)
    out = edge_sum(block, h)
    assert out.dtype == torch.float16
    assert abs(float(out[0, 0]) - 1001 * float(h[0, 0])) < 0.5   # a float16 running sum drifts by ~10
