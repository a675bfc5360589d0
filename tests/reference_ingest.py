"""Plain-Python twins of the ingest kernels (id_remap_kernels, csr_kernels) and an independent
reference for a whole ingest: dense ids by sorted key, CSR by store_factory.reference_csr."""
from __future__ import annotations

import numpy as np

from store_factory import reference_csr

M64 = (1 << 64) - 1


def _signed(x: int) -> int:
    return x - (1 << 64) if x >= 1 << 63 else x


def mix64(h: int) -> int:
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & M64
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & M64
    h ^= h >> 31
    return h


def hash_string(s: str) -> int:
    data = s.encode("utf-8")
    h = 0xCBF29CE484222325
    for byte in data:
        h ^= byte
        h = (h * 0x100000001B3) & M64
    return _signed(mix64(h ^ len(data)))


def first_distinct_strings(keys, strings) -> tuple[list[int], tuple[int, int] | None]:
    """(first index of each distinct key, in input order; the first pair of indices of two
    different strings with one key, or None), stopping at that pair."""
    first: dict = {}
    out = []
    for i, (k, s) in enumerate(zip(keys, strings)):
        if k not in first:
            first[k] = i
            out.append(i)
        elif strings[first[k]] != s:
            return out, (first[k], i)
    return out, None


def bucket_of(bnd_d, bnd_s, d: int, s: int) -> int:
    return sum(1 for bd, bs in zip(bnd_d, bnd_s) if (bd, bs) <= (d, s))


def scatter_edges(dst, src, weight, both, bnd_d, bnd_s):
    """-> list per bucket of (dst, src, w) records in input order."""
    buckets = [[] for _ in range(len(bnd_d) + 1)]
    for i in range(len(dst)):
        w = None if weight is None else float(weight[i])
        recs = [(int(dst[i]), int(src[i]))] + ([(int(src[i]), int(dst[i]))] if both else [])
        for d, s in recs:
            buckets[bucket_of(bnd_d, bnd_s, d, s)].append((d, s, w))
    return buckets


def rank_lookup(node_keys, keys) -> list[int]:
    order = {k: i for i, k in enumerate(sorted(set(int(x) for x in node_keys)))}
    return [order.get(int(k), -1) for k in keys]


def rank_of_bound(node_keys, key: int) -> int:
    return sum(1 for k in set(int(x) for x in node_keys) if k < key)


def drop_self_loops(keys, weights, row_lo: int, src_bits: int):
    mask = (1 << src_bits) - 1
    keep = [i for i, k in enumerate(keys) if (k >> src_bits) + row_lo != (k & mask)]
    return [keys[i] for i in keep], None if weights is None else [weights[i] for i in keep]


def stable_sort_pairs(keys, payload):
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    return [keys[i] for i in order], [payload[i] for i in order]


def dedup_sorted(keys, weights, sum_weights: bool):
    out_k, out_w = [], []
    for i, k in enumerate(keys):
        if out_k and out_k[-1] == k:
            if weights is not None and sum_weights:
                out_w[-1] += weights[i]
            continue
        out_k.append(k)
        if weights is not None:
            out_w.append(weights[i])
    return out_k, (out_w if weights is not None else None)


def indptr_segment(keys, src_bits: int, row_lo: int, v_lo: int, count: int, edge_base: int):
    return [edge_base + sum(1 for k in keys if (k >> src_bits) < v - row_lo)
            for v in range(v_lo, v_lo + count)]


def mark_seen(seen_set: set, dense) -> int:
    for i, d in enumerate(dense):
        if int(d) in seen_set:
            return i
        seen_set.add(int(d))
    return -1


# ---- whole-ingest reference ---------------------------------------------------------------------

def dense_order(ids) -> list:
    """Original ids in dense order: ints sorted, strings sorted by their 64-bit hash."""
    uniq = set(ids)
    if uniq and isinstance(next(iter(uniq)), str):
        return sorted(uniq, key=hash_string)
    return sorted(uniq)


def reference_ingest(src_ids, dst_ids, *, directed: bool, dedup: bool = True,
                     drop_self_loops: bool = False, extra_ids=()):
    """-> (node_ids list, indptr, indices) built without any ingest code."""
    nodes = dense_order(list(src_ids) + list(dst_ids) + list(extra_ids))
    pos = {v: i for i, v in enumerate(nodes)}
    s = np.array([pos[x] for x in src_ids], dtype=np.int64)
    d = np.array([pos[x] for x in dst_ids], dtype=np.int64)
    indptr, indices = reference_csr(s, d, len(nodes), directed=directed, dedup=dedup,
                                    drop_self_loops=drop_self_loops)
    return nodes, indptr, indices


def reference_weights(src_ids, dst_ids, weights, *, directed: bool, dedup: bool, sum_weights: bool):
    """{(dst, src) original ids: [weights in store order]} by the first-kept / summed rule."""
    recs = list(zip(dst_ids, src_ids, weights))
    if not directed:
        recs = [r for d, s, w in recs for r in ((d, s, w), (s, d, w))]
    out: dict = {}
    for d, s, w in recs:
        out.setdefault((d, s), []).append(float(w))
    if dedup:
        out = {k: [sum(v) if sum_weights else v[0]] for k, v in out.items()}
    return out


def pack(dst, src, row_lo: int, src_bits: int) -> list[int]:
    return [((int(d) - row_lo) << src_bits) | int(s) for d, s in zip(dst, src)]


def partition_pack(dst, src, weights, row_lo: int, src_bits: int, mid_row: int):
    """(keys, weights, size of the first part): rows < mid_row first, each part in input order."""
    recs = list(zip(pack(dst, src, row_lo, src_bits), weights, dst))
    lo = [r for r in recs if r[2] < mid_row]
    hi = [r for r in recs if r[2] >= mid_row]
    return [r[0] for r in lo + hi], [r[1] for r in lo + hi], len(lo)
