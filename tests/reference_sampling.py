"""Plain-Python twins of the sampling kernels (lists, dicts, sets; no numpy tricks, no numba).

The neighbor twin reproduces the kernels' random streams (splitmix64 keyed by (seed, layer, position)
and Floyd's algorithm), so even randomly sampled batches must match the kernels exactly.
"""
from __future__ import annotations

import bisect
import math

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def mix64(z: int) -> int:
    z &= M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def layer_key(seed: int, layer: int) -> int:
    return mix64(mix64(seed + GOLDEN) ^ (((layer + 1) * GOLDEN) & M64))


class Stream:
    """The random stream of one destination: uniform ints below n."""

    def __init__(self, key: int, pos: int) -> None:
        self.state = mix64(key ^ mix64(pos + GOLDEN))

    def below(self, n: int) -> int:
        self.state = (self.state + GOLDEN) & M64
        return mix64(self.state) % n


def floyd(deg: int, k: int, stream: Stream) -> list[int]:
    """k distinct positions in range(deg), sorted (Floyd's algorithm, same draw order as the kernel)."""
    chosen: list[int] = []
    for j in range(deg - k, deg):
        t = stream.below(j + 1)
        if t in chosen:
            chosen.append(j)
        else:
            bisect.insort(chosen, t)
    return chosen


def sample_neighbors(indptr, indices, seeds, fanouts, replace=False, sampler_seed=0, batch_seed=0):
    """Twin of NeighborSampler.sample. Returns dict(nodes, hop_sizes, blocks) where blocks are
    (src_local, dst_local, edge_ids) lists, input layer first."""
    nodes = [int(s) for s in seeds]
    if len(set(nodes)) != len(nodes):
        raise ValueError("duplicate seeds")
    local = {v: i for i, v in enumerate(nodes)}
    key = layer_key(sampler_seed & M64, batch_seed & M64)
    hop_sizes = [len(nodes)]
    blocks = []
    for layer, f in enumerate(fanouts):
        lkey = layer_key(key, layer)
        src_l, dst_l, eids = [], [], []
        frontier = list(nodes)
        for i, v in enumerate(frontier):
            base, deg = int(indptr[v]), int(indptr[v + 1]) - int(indptr[v])
            if f < 0 or (not replace and deg <= f):
                pos = list(range(deg))
            elif replace:
                stream = Stream(lkey, i)
                pos = [stream.below(deg) for _ in range(f)] if deg > 0 else []
            else:
                pos = floyd(deg, f, Stream(lkey, i))
            for p in pos:
                u = int(indices[base + p])
                if u not in local:
                    local[u] = len(nodes)
                    nodes.append(u)
                src_l.append(local[u])
                dst_l.append(i)
                eids.append(base + p)
        hop_sizes.append(len(nodes))
        blocks.append((src_l, dst_l, eids))
    return {"nodes": nodes, "hop_sizes": hop_sizes, "blocks": blocks[::-1]}


def full_neighborhood(indptr, indices, seeds, num_hops):
    """Spec of fanout -1 sampling: per hop, the set of (src, dst, edge id) of every in-edge of every
    node reached so far, and the set of nodes within each number of hops (dense ids)."""
    reached = set(int(s) for s in seeds)
    hops = [set(reached)]
    edges = []
    for _ in range(num_hops):
        layer = set()
        for v in sorted(reached):
            for e in range(int(indptr[v]), int(indptr[v + 1])):
                layer.add((int(indices[e]), v, e))
        reached = reached | {u for u, _, _ in layer}
        hops.append(set(reached))
        edges.append(layer)
    return hops, edges


def induced_subgraph(indptr, indices, nodes, self_loops=True, normalize=True, keep_order=False):
    """Twin of the induced-subgraph kernels: (nodes, rows, weights). nodes are sorted, or kept in
    the given order with keep_order (the cluster order of `induced_ranges`); rows[i] is the list of
    (local src, edge id) of node i's in-edges from the set (edge id -1: added self-loop), sorted;
    weights[i] the matching GCN weights (or None)."""
    nodes = list(dict.fromkeys(int(v) for v in nodes)) if keep_order \
        else sorted(set(int(v) for v in nodes))
    local = {v: i for i, v in enumerate(nodes)}
    rows = []
    for i, v in enumerate(nodes):
        row = []
        for e in range(int(indptr[v]), int(indptr[v + 1])):
            u = int(indices[e])
            if u in local:
                row.append((local[u], e))
        if self_loops and all(s != i for s, _ in row):
            row.append((i, -1))
        rows.append(sorted(row))
    weights = None
    if normalize:
        deg = [len(r) for r in rows]
        # a source without in-edges in the subgraph (directed, no self-loops) has degree 0: weight 0,
        # as PyG's gcn_norm (deg^-1/2 of 0 taken as 0)
        weights = [[1.0 / math.sqrt(deg[s] * deg[i]) if deg[s] else 0.0 for s, _ in row]
                   for i, row in enumerate(rows)]
    return nodes, rows, weights


def range_of(starts, stops, u):
    """Twin of the range lookup of `induced_ranges`: (k, local id) of id u among the disjoint
    ascending ranges [starts[k], stops[k]), or (None, None) when u lies in none."""
    offset = 0
    for k, (a, b) in enumerate(zip(starts, stops)):
        if a <= u < b:
            return k, offset + u - a
        offset += b - a
    return None, None


def rows_first(indptr, indices, weight, first):
    """Twin of cluster_kernels.rows_first: (order, new_indptr, new_indices, new_weight, k)."""
    n = len(first)
    order = [v for v in range(n) if first[v]] + [v for v in range(n) if not first[v]]
    new_id = {v: i for i, v in enumerate(order)}
    new_indptr, new_indices, new_weight = [0], [], []
    for v in order:
        for p in range(indptr[v], indptr[v + 1]):
            new_indices.append(new_id[int(indices[p])])
            if weight is not None:
                new_weight.append(float(weight[p]))
        new_indptr.append(len(new_indices))
    return order, new_indptr, new_indices, new_weight if weight is not None else None, sum(map(bool, first))
