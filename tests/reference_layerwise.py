"""Plain-Python twins and reference models for the layer-wise inference tests.

- `reference_plan`: the chunk plan by a per-node loop (twin of pipeline/inference/chunks.plan_chunks).
- `reference_in_degrees`: twin of features/gather_kernels.in_degrees.
- `RefModel`: a small GNN in plain torch implementing the LayerwiseModel protocol (SAGE-like mean
  or GCN-like layers, optional jumping-knowledge read-out), and `dense_forward`, the same model
  computed full-batch with dense adjacency matrices: code that shares nothing with the model's
  aggregate/finish path, so the two agreeing says the split aggregation is right.
"""
from __future__ import annotations

import numpy as np
import torch

from gstore.pipeline.inference.protocol import Aggregate


def reference_plan(indptr, max_edges: int, max_rows: int) -> list[tuple[int, int, int, int, bool]]:
    """(start, stop, edge_lo, edge_hi, hub) per entry: take nodes while the chunk stays within
    max_edges in-edges and max_rows rows; a node with more than max_edges in-edges alone is cut
    into slices of max_edges edges."""
    indptr = [int(x) for x in indptr]
    n = len(indptr) - 1
    out = []
    v = 0
    while v < n:
        deg = indptr[v + 1] - indptr[v]
        if deg > max_edges:
            for lo in range(indptr[v], indptr[v + 1], max_edges):
                out.append((v, v + 1, lo, min(lo + max_edges, indptr[v + 1]), True))
            v += 1
            continue
        start, edges = v, 0
        while v < n and v - start < max_rows and edges + indptr[v + 1] - indptr[v] <= max_edges:
            edges += indptr[v + 1] - indptr[v]
            v += 1
        out.append((start, v, indptr[start], indptr[v], False))
    return out


def reference_in_degrees(indptr, nodes) -> list[float]:
    return [float(indptr[v + 1] - indptr[v]) for v in nodes]


class RefModel(torch.nn.Module):
    """kind: "sage" (h' = W_self h + W_neigh mean) or "gcn" (design9's estimator, exact on full
    neighborhoods); jk: "none", "cat" (readout_dim = classes) or "max" (readout_dim = hidden).
    ReLU after every layer but the last (after every layer with jk). drop_loops: ignore block
    edges with src == dst (self-loops, as GAT does: it adds the node's own term once itself)."""

    def __init__(self, kind: str, dims: list[int], jk: str = "none", classes: int = 3, seed: int = 0,
                 drop_loops: bool = False):
        super().__init__()
        torch.manual_seed(seed)
        self.kind, self.dims, self.jk, self.drop_loops = kind, list(dims), jk, drop_loops
        L = len(dims) - 1
        self.self_lins = torch.nn.ModuleList(torch.nn.Linear(dims[l], dims[l + 1]) for l in range(L))
        self.neigh_lins = torch.nn.ModuleList(torch.nn.Linear(dims[l], dims[l + 1], bias=False)
                                              for l in range(L))
        if jk == "cat":
            self.head = torch.nn.Linear(sum(dims[1:]), classes)
        elif jk == "max":
            self.head = torch.nn.Linear(dims[-1], classes)
        self.classes = classes
        self.calls = {"aggregate": 0, "merge": 0, "finish": 0, "forward_layer": 0}

    # ---- protocol ------------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self.dims) - 1

    @property
    def in_dim(self) -> int:
        return self.dims[0]

    @property
    def out_dim(self) -> int:
        return self.dims[-1] if self.jk == "none" else self.classes

    @property
    def readout_dim(self) -> int:
        return {"none": 0, "cat": self.classes, "max": self.dims[-1]}[self.jk]

    def layer_dim(self, layer: int) -> int:
        return self.dims[layer + 1]

    def aggregate(self, layer, h_src, block, degree_src) -> Aggregate:
        self.calls["aggregate"] += 1
        src, dst = block.edge_index[0], block.edge_index[1]
        if self.drop_loops:
            keep = src != dst
            src, dst = src[keep], dst[keep]
        msg = h_src[src]
        if self.kind == "gcn":
            msg = msg / torch.sqrt(degree_src[src] + 1)[:, None]
        total = torch.zeros(block.num_dst, h_src.shape[1]).index_add_(0, dst, msg)
        count = torch.zeros(block.num_dst).index_add_(0, dst, torch.ones(len(dst)))
        return Aggregate(total, count)

    def merge(self, layer, a: Aggregate, b: Aggregate) -> Aggregate:
        self.calls["merge"] += 1
        return Aggregate(a.total + b.total, a.count + b.count)

    def finish(self, layer, h_dst, agg: Aggregate, degree_dst) -> torch.Tensor:
        self.calls["finish"] += 1
        if self.kind == "sage":
            mean = agg.total / agg.count.clamp(min=1)[:, None]
            out = self.self_lins[layer](h_dst) + self.neigh_lins[layer](mean)
        else:
            d, s = degree_dst, agg.count
            coef = torch.where(s > 0, d / s.clamp(min=1), torch.zeros_like(d)) / torch.sqrt(d + 1)
            out = self.self_lins[layer](h_dst / (d + 1)[:, None] + coef[:, None] * agg.total)
        return self._act(layer, out)

    def forward_layer(self, layer, h_src, block, degree_src) -> torch.Tensor:
        self.calls["forward_layer"] += 1
        n = block.num_dst
        return self.finish(layer, h_src[:n], self.aggregate(layer, h_src, block, degree_src), degree_src[:n])

    def readout_step(self, layer, h, state):
        if self.jk == "none":
            return None
        if self.jk == "max":
            return h if state is None else torch.maximum(state, h)
        lo = sum(self.dims[1:layer + 1])
        part = h @ self.head.weight[:, lo:lo + h.shape[1]].T
        return part if state is None else state + part

    def readout(self, state, h_last) -> torch.Tensor:
        if self.jk == "none":
            return h_last
        if self.jk == "max":
            return self.head(state)
        return state + self.head.bias

    def _act(self, layer, out):
        return torch.relu(out) if (self.jk != "none" or layer < self.num_layers - 1) else out


def dense_forward(model: RefModel, features: np.ndarray, indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """The model full-batch with a dense (N, N) multi-edge count matrix A[v, u] (float64)."""
    n = len(indptr) - 1
    a = np.zeros((n, n))
    rows = np.repeat(np.arange(n), np.diff(indptr))
    np.add.at(a, (rows, np.asarray(indices, dtype=np.int64)), 1.0)
    deg = a.sum(1)         # the full in-degree, self-loops included (what inference passes)
    if model.drop_loops:
        np.fill_diagonal(a, 0.0)
    cnt = a.sum(1)         # edges the model aggregates (== deg unless loops are dropped)
    h = torch.tensor(np.asarray(features, dtype=np.float64))
    A, d, s = torch.tensor(a), torch.tensor(deg), torch.tensor(cnt)
    hs = []
    with torch.no_grad():
        for layer in range(model.num_layers):
            W = model.self_lins[layer].weight.double()
            b = model.self_lins[layer].bias.double()
            if model.kind == "sage":
                mean = (A @ h) / s.clamp(min=1)[:, None]
                out = h @ W.T + b + mean @ model.neigh_lins[layer].weight.double().T
            else:
                norm = 1 / torch.sqrt(d + 1)
                coef = torch.where(s > 0, d / s.clamp(min=1), torch.zeros_like(d)) * norm
                z = h / (d + 1)[:, None] + coef[:, None] * (A @ (h * norm[:, None]))
                out = z @ W.T + b
            h = torch.relu(out) if (model.jk != "none" or layer < model.num_layers - 1) else out
            hs.append(h)
        if model.jk == "cat":
            h = torch.cat(hs, 1) @ model.head.weight.double().T + model.head.bias.double()
        elif model.jk == "max":
            h = torch.stack(hs).max(0).values @ model.head.weight.double().T + model.head.bias.double()
    return h.numpy()
