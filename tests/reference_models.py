"""Plain-Python twins of train/layers.py: one loop over edges per destination, float64 numpy.

Each takes the conv's parameters as numpy arrays and the block as edge lists, so nothing is shared
with the implementation but the formulas (docs/training.md, /train/layers.py docstrings).
"""
from __future__ import annotations

import math

import numpy as np


def in_edges(src, dst, num_dst: int) -> list[list[int]]:
    """Per destination, the positions of its edges (in edge order)."""
    out: list[list[int]] = [[] for _ in range(num_dst)]
    for e in range(len(dst)):
        out[int(dst[e])].append(e)
    return out


def ref_sage(h, src, dst, num_dst, w_self, b_self, w_neigh):
    """h_v' = W_self h_v + b + W_neigh mean_{u->v} h_u (mean 0 without edges)."""
    out = np.zeros((num_dst, w_self.shape[0]))
    for v, edges in enumerate(in_edges(src, dst, num_dst)):
        mean = np.zeros(h.shape[1])
        for e in edges:
            mean += h[int(src[e])]
        if edges:
            mean /= len(edges)
        out[v] = w_self @ h[v] + b_self + w_neigh @ mean
    return out


def ref_gcn(h, src, dst, num_dst, degree, w, b, edge_weight=None):
    """Unweighted blocks: W(h_v/(d_v+1) + d_v/s_v sum h_u/sqrt((d_u+1)(d_v+1))) + b; weighted:
    W(sum_e w_e h_u) + b."""
    out = np.zeros((num_dst, w.shape[0]))
    for v, edges in enumerate(in_edges(src, dst, num_dst)):
        z = np.zeros(h.shape[1])
        if edge_weight is not None:
            for e in edges:
                z += edge_weight[e] * h[int(src[e])]
        else:
            dv = degree[v]
            z += h[v] / (dv + 1)
            for e in edges:
                u = int(src[e])
                z += (dv / len(edges)) * h[u] / math.sqrt((degree[u] + 1) * (dv + 1))
        out[v] = w @ z + b
    return out


def ref_gat(h, src, dst, num_dst, w, att_src, att_dst, bias, heads, channels, concat):
    """Softmax attention over {v} U (sources of v's non-loop edges), LeakyReLU 0.2."""
    xw = (h @ w.T).reshape(len(h), heads, channels)
    out = []
    for v, edges in enumerate(in_edges(src, dst, num_dst)):
        nbrs = [v] + [int(src[e]) for e in edges if int(src[e]) != v]
        per_head = []
        for k in range(heads):
            scores = []
            for u in nbrs:
                s = float(att_src[k] @ xw[u, k] + att_dst[k] @ xw[v, k])
                scores.append(s if s > 0 else 0.2 * s)
            top = max(scores)
            ex = [math.exp(s - top) for s in scores]
            tot = sum(ex)
            per_head.append(sum(a / tot * xw[u, k] for a, u in zip(ex, nbrs)))
        row = np.concatenate(per_head) if concat else np.mean(per_head, axis=0)
        out.append(row + bias)
    return np.array(out)
