"""Graph convolutions over the loader's blocks in plain torch: SAGEConv, GCNConv, GATConv.

Every conv is split the way layer-wise inference needs it (pipeline/inference/protocol.py):
`aggregate(h_src, block, degree_src)` -> a partial `Aggregate` over the block's edges, `merge(a, b)`
of partials over disjoint edge sets of the same destinations, `finish(h_dst, agg, degree_dst)` ->
the conv's output rows. `forward(h_src, block, degree_src)` is finish(aggregate(...)), so training and
layer-wise inference run the same arithmetic.

Neighborhood sums run as a CSR sparse-dense product (`edge_sum`). Measured on 2 CPU cores, forward +
backward of a 93k-source -> 33k-destination sum at fanout 15, 256 columns (torch 2.13, medians of 5):
index_add_ over h[src] 1376 ms, torch.segment_reduce 1742 ms, COO torch.sparse.mm 613 ms,
torch.sparse_csr_tensor @ h 329 ms (its backward is the transposed product; no (E, d) message
tensor is ever built). All four are bit-identical from run to run on the CPU.

Conventions (docs/training.md): message flow src -> dst; destinations are the first num_dst rows of
h_src; degree = full-graph in-degree (Batch.degree) as float32.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from gstore.errors import OptionError
from gstore.pipeline.inference.protocol import GCN_SUM, NO_NEIGHBORS, SUM, Aggregate
from gstore.pipeline.loader.batch import LayerBlock

# torch warns once per process that sparse CSR is "beta"; the one op used here (CSR @ dense and
# its backward) is stable since torch 1.13 and checked by tests/test_layers.py
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")

GAT_NEGATIVE_SLOPE = 0.2


class _CPUDropout(torch.autograd.Function):
    """Inverted dropout whose mask comes from 16-bit lanes of full-range random int64 words.

    torch's CPU dropout draws one bernoulli per element (a single-threaded generator): on the
    93k x 100 input of a products batch it took 43% of a SAGE training step (139 ms of 0.96 s),
    random int64 words take ~10 ms for the same mask. p is applied to 1/65536 resolution.
    Deterministic: the words come from torch's default CPU generator."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        n = x.numel()
        words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-2**63, None)  # all 64 bits
        lanes = words.view(torch.int16)[:n].view(x.shape)
        keep = (lanes >= int(round(p * 65536)) - 32768).to(x.dtype).mul_(1.0 / (1.0 - p))
        ctx.save_for_backward(keep)
        return x * keep

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return grad * keep, None


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """F.dropout, with a faster mask on the CPU (see _CPUDropout)."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or not x.is_floating_point() or x.numel() == 0:
        return F.dropout(x, p, True)
    return _CPUDropout.apply(x, float(p))


def prefix(t: torch.Tensor, n: int) -> torch.Tensor:
    """t[:n], or t itself when it has n rows: a full slice would still cost its backward a zero
    fill and a copy of the whole tensor."""
    return t if t.shape[0] == n else t[:n]


# torch flags every CSR tensor as beta once per process; gstore's use (crow/col/values @ dense) is
# covered by the tests, so the notice would only alarm users of `gstore train`
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)


def edge_sum(block: LayerBlock, h_src: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """(num_dst, d): out[v] = sum over the block's edges u -> v of weight_e * h_src[u] (weight 1 when
    None). h_src: (>= num_src, d); weight: (E,) in the block's edge order. Differentiable in h_src."""
    csr = block.csr()
    if h_src.shape[0] < block.num_src:
        raise OptionError(f"block has {block.num_src} sources but only {h_src.shape[0]} rows were given")
    # half-precision rows (autocast) are summed in float32: sparse half kernels are not on every
    # device, and a sum of hundreds of float16 terms loses the digits the mean needs
    dtype = torch.float32 if h_src.dtype in (torch.float16, torch.bfloat16) else h_src.dtype
    if weight is None:
        values = torch.ones(csr.col.shape[0], dtype=dtype, device=h_src.device)
    else:
        values = (weight if csr.perm is None else weight[csr.perm]).to(dtype)
    a = torch.sparse_csr_tensor(csr.crow, csr.col, values, (block.num_dst, h_src.shape[0]),
                                check_invariants=False)
    # autocast would cast the sparse product back to half, which has no CPU kernel (bfloat16)
    with torch.autocast(device_type=h_src.device.type, enabled=False):
        out = a @ h_src.to(dtype)
    return out if out.dtype == h_src.dtype else out.to(h_src.dtype)


def _edge_count(block: LayerBlock, device: torch.device) -> torch.Tensor:
    return block.csr().count.to(device)


def sum_merge(a: Aggregate, b: Aggregate) -> Aggregate:
    """Partial sums over disjoint edge sets add up (SAGE and GCN)."""
    return type(a)(a.total + b.total, a.count + b.count)


@dataclass
class WeightedAggregate(Aggregate):
    """GCN's partial over a block with edge_weight (cluster batches): total is sum_e w_e h_u, the
    self-loops are edges, and finish adds no self term."""


def _check_dims(name: str, **dims: int) -> None:
    for key, value in dims.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise OptionError(f"{name}: {key} must be an integer >= 1, got {value!r}")


class MLPLayer(nn.Module):
    """The features-only baseline's layer: h_v' = W h_v + b, the neighborhood ignored (its
    aggregate is empty), so a `GNN("mlp", ...)` is an MLP that runs wherever the GNNs run."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        _check_dims("MLPLayer", in_dim=in_dim, out_dim=out_dim)
        self.lin = nn.Linear(in_dim, out_dim)

    def aggregate(self, h_src: torch.Tensor, block: LayerBlock,
                  degree_src: torch.Tensor | None = None) -> Aggregate:
        return Aggregate(h_src.new_zeros(block.num_dst, 0), h_src.new_zeros(block.num_dst))

    def merge(self, a: Aggregate, b: Aggregate) -> Aggregate:
        return a

    sum_aggregation = NO_NEIGHBORS

    def aggregate_sum(self, total: torch.Tensor, count: torch.Tensor) -> Aggregate:
        return Aggregate(total.new_zeros(total.shape[0], 0), count)

    def finish(self, h_dst: torch.Tensor, agg: Aggregate,
               degree_dst: torch.Tensor | None = None) -> torch.Tensor:
        return self.lin(h_dst)

    def forward(self, h_src: torch.Tensor, block: LayerBlock,
                degree_src: torch.Tensor | None = None) -> torch.Tensor:
        return self.lin(prefix(h_src, block.num_dst))


class SAGEConv(nn.Module):
    """GraphSAGE, mean aggregator with root weight: h_v' = W_self h_v + W_neigh mean_{u->v} h_u + b.

    A destination without block edges gets mean 0. When in_dim > out_dim the neighbor rows are
    projected before the sum (mean is linear, and summing fewer columns is cheaper)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        _check_dims("SAGEConv", in_dim=in_dim, out_dim=out_dim)
        self.lin_self = nn.Linear(in_dim, out_dim)
        self.lin_neigh = nn.Linear(in_dim, out_dim, bias=False)
        self.project_first = in_dim > out_dim

    def aggregate(self, h_src: torch.Tensor, block: LayerBlock,
                  degree_src: torch.Tensor | None = None) -> Aggregate:
        x = self.lin_neigh(h_src) if self.project_first else h_src
        return Aggregate(edge_sum(block, x), _edge_count(block, h_src.device))

    def merge(self, a: Aggregate, b: Aggregate) -> Aggregate:
        return sum_merge(a, b)

    sum_aggregation = SUM

    def aggregate_sum(self, total: torch.Tensor, count: torch.Tensor) -> Aggregate:
        """total: sum_u h_u over every in-edge (lin_neigh has no bias: it commutes with the sum)."""
        return Aggregate(self.lin_neigh(total) if self.project_first else total, count)

    def finish(self, h_dst: torch.Tensor, agg: Aggregate,
               degree_dst: torch.Tensor | None = None) -> torch.Tensor:
        mean = agg.total / agg.count.clamp(min=1).unsqueeze(1).to(agg.total.dtype)
        neigh = mean if self.project_first else self.lin_neigh(mean)
        return self.lin_self(h_dst) + neigh

    def forward(self, h_src: torch.Tensor, block: LayerBlock,
                degree_src: torch.Tensor | None = None) -> torch.Tensor:
        return self.finish(prefix(h_src, block.num_dst), self.aggregate(h_src, block, degree_src))


class GCNConv(nn.Module):
    """GCN (symmetric normalisation, self-loop), h_v' = W(...) + b.

    Blocks without edge_weight (neighbor batches, layer-wise inference), with d the full in-degree
    and s_v the block's edges into v: the unbiased estimator of D^-1/2 (A+I) D^-1/2 h,
        h_v/(d_v+1) + (d_v/s_v) * sum_{u->v} h_u / sqrt((d_u+1)(d_v+1)),
    exact when the block holds every in-edge. The 1/sqrt(d_u+1) factor belongs to the source, so
    rows are scaled once and the edges sum unweighted. Blocks with edge_weight (cluster batches,
    the sampler's gcn_norm with self-loops as edges): sum_e w_e h_u.
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        _check_dims("GCNConv", in_dim=in_dim, out_dim=out_dim)
        self.lin = nn.Linear(in_dim, out_dim, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.project_first = in_dim > out_dim

    def aggregate(self, h_src: torch.Tensor, block: LayerBlock,
                  degree_src: torch.Tensor | None = None) -> Aggregate:
        x = self.lin(h_src) if self.project_first else h_src
        count = _edge_count(block, h_src.device)
        if block.edge_weight is not None:
            return WeightedAggregate(edge_sum(block, x, block.edge_weight), count)
        if degree_src is None:
            raise OptionError("GCNConv on a block without edge_weight needs the full in-degree of its "
                              "sources", hint="pass Batch.degree (the loader fills it)")
        if degree_src.shape[0] < x.shape[0]:
            raise OptionError(f"GCNConv got {degree_src.shape[0]} degrees for {x.shape[0]} source rows",
                              hint="pass Batch.degree (one entry per batch node)")
        scale = torch.rsqrt(degree_src[:x.shape[0]].to(x.dtype) + 1).unsqueeze(1)
        return Aggregate(edge_sum(block, x * scale), count)

    sum_aggregation = GCN_SUM

    def aggregate_sum(self, total: torch.Tensor, count: torch.Tensor) -> Aggregate:
        """total: sum_u h_u / sqrt(d_u + 1) over every in-edge (lin has no bias)."""
        return Aggregate(self.lin(total) if self.project_first else total, count)

    def merge(self, a: Aggregate, b: Aggregate) -> Aggregate:
        if type(a) is not type(b):
            raise OptionError("GCNConv cannot merge aggregates of weighted and unweighted blocks")
        return sum_merge(a, b)

    def finish(self, h_dst: torch.Tensor, agg: Aggregate,
               degree_dst: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(agg, WeightedAggregate):
            z = agg.total
        else:
            if degree_dst is None:
                raise OptionError("GCNConv needs the full in-degree of its destinations",
                                  hint="pass Batch.degree (the loader fills it)")
            d = degree_dst[:h_dst.shape[0]].to(agg.total.dtype)
            s = agg.count.to(agg.total.dtype)
            # s_v = 0: no sampled neighbor, no neighbor term (the factor would be 0 * inf)
            factor = torch.where(s > 0, d / s.clamp(min=1), torch.zeros_like(s)) * torch.rsqrt(d + 1)
            x_dst = self.lin(h_dst) if self.project_first else h_dst
            z = x_dst / (d + 1).unsqueeze(1) + factor.unsqueeze(1) * agg.total
        out = z if self.project_first else self.lin(z)
        return out + self.bias

    def forward(self, h_src: torch.Tensor, block: LayerBlock,
                degree_src: torch.Tensor | None = None) -> torch.Tensor:
        deg_dst = None if degree_src is None else prefix(degree_src, block.num_dst)
        return self.finish(prefix(h_src, block.num_dst), self.aggregate(h_src, block, degree_src), deg_dst)


class GATConv(nn.Module):
    """GAT (Velickovic et al.) with `heads` heads of `channels` each, a self-loop per destination.

    alpha_uv = softmax over u in {v} U S(v) of LeakyReLU_0.2(a_src . W h_u + a_dst . W h_v),
    h_v' = concat_heads (or mean, concat=False) sum_u alpha_uv W h_u + b. Edges u -> u in the block
    are dropped (the self-loop is added once, in finish), as PyG's GATConv does. Attention dropout
    drops the normalised coefficients during training (numerators only, denominator intact).

    Partials are online-softmax triples (Aggregate.peak = running max score per head, weight =
    sum exp(score - peak), total = exp-weighted sum of W h_u), so a destination's in-edges can be
    split across chunks; merge rescales both to the larger peak. The peak is a constant shift of
    the softmax, so it is computed without gradient.
    """

    def __init__(self, in_dim: int, channels: int, heads: int = 1, concat: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__()
        _check_dims("GATConv", in_dim=in_dim, channels=channels, heads=heads)
        self.heads, self.channels, self.concat = heads, channels, bool(concat)
        self.dropout = float(dropout)
        self.lin = nn.Linear(in_dim, heads * channels, bias=False)
        self.att_src = nn.Parameter(torch.empty(1, heads, channels))
        self.att_dst = nn.Parameter(torch.empty(1, heads, channels))
        self.bias = nn.Parameter(torch.zeros(heads * channels if concat else channels))
        bound = math.sqrt(6.0 / (heads + channels))  # glorot over (heads, channels), as PyG
        nn.init.uniform_(self.att_src, -bound, bound)
        nn.init.uniform_(self.att_dst, -bound, bound)

    @property
    def out_dim(self) -> int:
        return self.heads * self.channels if self.concat else self.channels

    def _project(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(W h as (n, H, C), source score (n, H), destination score (n, H))."""
        xw = self.lin(h).view(-1, self.heads, self.channels)
        return xw, (xw * self.att_src).sum(-1), (xw * self.att_dst).sum(-1)

    def _partial(self, xw: torch.Tensor, s_src: torch.Tensor, s_dst: torch.Tensor,
                 block: LayerBlock) -> Aggregate:
        src, dst = block.edge_index[0], block.edge_index[1]
        loops = src == dst
        if bool(loops.any()):
            src, dst = src[~loops], dst[~loops]
        nd, heads = block.num_dst, self.heads
        score = F.leaky_relu(s_src[src] + s_dst[dst], GAT_NEGATIVE_SLOPE)          # (E, H)
        with torch.no_grad():
            peak = torch.full((nd, heads), -math.inf, dtype=score.dtype, device=score.device)
            peak.scatter_reduce_(0, dst.unsqueeze(1).expand(-1, heads), score, "amax")
        ex = torch.exp(score - peak[dst])
        weight = torch.zeros((nd, heads), dtype=ex.dtype, device=ex.device).index_add(0, dst, ex)
        num = dropout(ex, self.dropout, self.training)
        msg = (num.unsqueeze(2) * xw[src]).reshape(-1, heads * self.channels)
        total = torch.zeros((nd, heads * self.channels), dtype=msg.dtype,
                            device=msg.device).index_add(0, dst, msg)
        count = torch.bincount(dst, minlength=nd).to(torch.float32)
        return Aggregate(total, count, peak=peak, weight=weight)

    def aggregate(self, h_src: torch.Tensor, block: LayerBlock,
                  degree_src: torch.Tensor | None = None) -> Aggregate:
        xw, s_src, s_dst = self._project(h_src)
        return self._partial(xw, s_src, prefix(s_dst, block.num_dst), block)

    sum_aggregation = None          # attention weights are not a sum: the block path

    def aggregate_sum(self, total: torch.Tensor, count: torch.Tensor) -> Aggregate:
        raise OptionError("GATConv attention is not a sum of its sources' rows (use aggregate)")

    def merge(self, a: Aggregate, b: Aggregate) -> Aggregate:
        peak = torch.maximum(a.peak, b.peak)
        # both -inf (no edge on either side): any finite shift, the weights and totals are 0 there
        ref = torch.where(torch.isinf(peak), torch.zeros_like(peak), peak)
        sa, sb = torch.exp(a.peak - ref), torch.exp(b.peak - ref)
        rep = self.channels
        total = a.total * sa.repeat_interleave(rep, 1) + b.total * sb.repeat_interleave(rep, 1)
        return Aggregate(total, a.count + b.count, peak=peak, weight=a.weight * sa + b.weight * sb)

    def _finish(self, xw_dst: torch.Tensor, s_src_dst: torch.Tensor, s_dst_dst: torch.Tensor,
                agg: Aggregate) -> torch.Tensor:
        nd, heads = xw_dst.shape[0], self.heads
        score = F.leaky_relu(s_src_dst + s_dst_dst, GAT_NEGATIVE_SLOPE)             # (nd, H)
        peak = score.detach()
        ex = torch.exp(score - peak)  # 1, but it carries the self-loop score's gradient
        num = dropout(ex, self.dropout, self.training).repeat_interleave(self.channels, 1)
        self_loop = Aggregate(xw_dst.reshape(nd, heads * self.channels) * num, torch.ones_like(agg.count),
                              peak=peak, weight=ex)
        m = self.merge(agg, self_loop)
        out = m.total.view(nd, heads, self.channels) / m.weight.unsqueeze(2)
        out = out.reshape(nd, heads * self.channels) if self.concat else out.mean(1)
        return out + self.bias

    def finish(self, h_dst: torch.Tensor, agg: Aggregate,
               degree_dst: torch.Tensor | None = None) -> torch.Tensor:
        xw, s_src, s_dst = self._project(h_dst)
        return self._finish(xw, s_src, s_dst, agg)

    def forward(self, h_src: torch.Tensor, block: LayerBlock,
                degree_src: torch.Tensor | None = None) -> torch.Tensor:
        xw, s_src, s_dst_all = self._project(h_src)  # one projection serves sources and destinations
        nd = block.num_dst
        agg = self._partial(xw, s_src, prefix(s_dst_all, nd), block)
        return self._finish(prefix(xw, nd), prefix(s_src, nd), prefix(s_dst_all, nd), agg)
