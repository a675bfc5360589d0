"""Plain-Python twins of the partition kernels (pipeline/partition/*_kernels.py), for tests.

Each function mirrors its kernel's documented rule on a whole in-memory CSR, with dicts and loops
instead of scratch arrays, so the tests can compare them on tiny and random graphs.
"""
from __future__ import annotations

import numpy as np

MASK = (1 << 64) - 1


def mix_hash(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def rows_of(indptr, nbrs, ew=None):
    """Yield (v, [(u, w), ...]) per row, self loops dropped."""
    for v in range(len(indptr) - 1):
        out = []
        for j in range(int(indptr[v]), int(indptr[v + 1])):
            u = int(nbrs[j])
            if u != v:
                out.append((u, 1 if ew is None else int(ew[j])))
        yield v, out


def symmetrize(indptr, indices):
    """{(v, u): multiplicity} of the symmetric graph of a directed in-CSR, self loops dropped."""
    sym: dict[tuple[int, int], int] = {}
    for v in range(len(indptr) - 1):
        for u in indices[indptr[v]:indptr[v + 1]]:
            u = int(u)
            if u == v:
                continue
            sym[(v, u)] = sym.get((v, u), 0) + 1
            sym[(u, v)] = sym.get((u, v), 0) + 1
    return sym


def lp_sweep(indptr, nbrs, ew, vw, cluster, cweight, bound, seed, active=None, next_active=None):
    """One label-propagation sweep in row order (lp_cluster_chunk's rule); updates in place.
    With `active` (a set), only those nodes are visited; movers add themselves and their
    neighbours to `next_active`."""
    moves = 0
    for v, row in rows_of(indptr, nbrs, ew):
        if active is not None and v not in active:
            continue
        conn: dict[int, int] = {}
        order: list[int] = []
        for u, w in row:
            c = int(cluster[u])
            if c not in conn:
                order.append(c)
                conn[c] = 0
            conn[c] += w
        own = int(cluster[v])
        best, best_conn, best_h = own, conn.get(own, 0), 0
        for c in order:
            if c == own or cweight[c] + vw[v] > bound:
                continue
            h = mix_hash((c ^ seed) & MASK)
            if conn[c] > best_conn or (conn[c] == best_conn and best != own and h < best_h):
                best, best_conn, best_h = c, conn[c], h
        if best != own:
            cweight[own] -= vw[v]
            cweight[best] += vw[v]
            cluster[v] = best
            moves += 1
            if next_active is not None:
                next_active.add(v)
                next_active.update(int(nbrs[j]) for j in range(indptr[v], indptr[v + 1]))
    return moves


def contract(indptr, nbrs, ew, vw, cluster):
    """(cmap, coarse vw, {(cv, cu): weight}) with clusters numbered by ascending label."""
    labels = sorted(set(int(c) for c in cluster))
    newid = {c: i for i, c in enumerate(labels)}
    cmap = np.array([newid[int(c)] for c in cluster], dtype=np.int64)
    cvw = np.zeros(len(labels), dtype=np.int64)
    for v, w in enumerate(vw):
        cvw[cmap[v]] += w
    edges: dict[tuple[int, int], int] = {}
    for v, row in rows_of(indptr, nbrs, ew):
        for u, w in row:
            if cmap[u] != cmap[v]:
                key = (int(cmap[v]), int(cmap[u]))
                edges[key] = edges.get(key, 0) + w
    return cmap, cvw, edges


def refine_sweep(indptr, nbrs, ew, vw, part, pweight, lmax, mode, max_loss, active=None,
                 next_active=None):
    """One refine_chunk sweep (mode 0 refine, 1 rebalance) in row order; updates in place.
    With `active` (a set), only those nodes are visited and movers add themselves and their
    neighbours to `next_active`. Returns (moves, gain, cut weight of visited rows)."""
    moves = gain = cut = 0
    for v, row in rows_of(indptr, nbrs, ew):
        if active is not None and v not in active:
            continue
        p = int(part[v])
        if mode == 1 and pweight[p] <= lmax:
            continue
        conn: dict[int, int] = {}
        order: list[int] = []
        for u, w in row:
            q = int(part[u])
            if q not in conn:
                order.append(q)
                conn[q] = 0
            conn[q] += w
        own = conn.get(p, 0)
        cut += sum(conn.values()) - own
        best, best_conn = -1, -1
        for q in order:
            if q == p or pweight[q] + vw[v] > lmax:
                continue
            if conn[q] > best_conn or (conn[q] == best_conn and pweight[q] < pweight[best]):
                best, best_conn = q, conn[q]
        target = -1
        if mode == 0:
            if best >= 0 and (best_conn > own or (best_conn == own and pweight[best] + vw[v] < pweight[p])):
                target = best
        else:
            if best >= 0 and (max_loss < 0 or own - best_conn <= max_loss):
                target = best
            elif max_loss < 0:
                light = int(np.argmin(pweight))
                if light != p and pweight[light] + vw[v] <= pweight[p]:
                    target = light
                    best_conn = 0   # the kernel counts this move's gain as -own
        if target >= 0:
            gain += best_conn - own
            pweight[p] -= vw[v]
            pweight[target] += vw[v]
            part[v] = target
            moves += 1
            if next_active is not None:
                next_active.add(v)
                next_active.update(int(nbrs[j]) for j in range(indptr[v], indptr[v + 1]))
    return moves, gain, cut


def cut_fraction(indptr, nbrs, part):
    """Fraction of stored entries whose endpoints lie in different parts."""
    total = len(nbrs)
    cut = sum(1 for v in range(len(indptr) - 1) for u in nbrs[indptr[v]:indptr[v + 1]]
              if part[int(u)] != part[v])
    return cut / total if total else 0.0


def adjusted_rand_index(a, b) -> float:
    """ARI of two labelings (agreement of a partition with planted communities, 1 = identical)."""
    a = np.asarray(a)
    b = np.asarray(b)
    ka, kb = a.max() + 1, b.max() + 1
    table = np.zeros((ka, kb), dtype=np.int64)
    np.add.at(table, (a, b), 1)

    def comb2(x):
        return x * (x - 1) / 2

    sum_ij = comb2(table).sum()
    sa = comb2(table.sum(1)).sum()
    sb = comb2(table.sum(0)).sum()
    expected = sa * sb / comb2(len(a))
    return float((sum_ij - expected) / (0.5 * (sa + sb) - expected))


def reorder_csr(indptr, indices, weights, perm):
    """CSR relabelled by perm (new -> old): rows in new order, ids mapped, rows sorted by new id
    (stable, weights follow). Returns (indptr, indices, weights or None)."""
    n = len(indptr) - 1
    inv = np.empty(n, dtype=np.int64)
    inv[np.asarray(perm)] = np.arange(n)
    new_ptr = [0]
    new_idx, new_w = [], []
    for nv in range(n):
        v = int(perm[nv])
        row = [(int(inv[indices[j]]), None if weights is None else weights[j])
               for j in range(indptr[v], indptr[v + 1])]
        row.sort(key=lambda t: t[0])
        new_idx += [u for u, _ in row]
        new_w += [w for _, w in row]
        new_ptr.append(len(new_idx))
    return (np.array(new_ptr, dtype=np.int64), np.array(new_idx, dtype=np.int64),
            None if weights is None else np.array(new_w, dtype=np.float32))


def concat_rows(local_indptr, order, vals) -> list:
    """Twin of reorder_kernels.concat_rows: the rows order[0], order[1], ... back to back."""
    out = []
    for i in order:
        out += list(vals[local_indptr[i]:local_indptr[i + 1]])
    return out


def scatter_rows(local_indptr, vals, row0, inv, a, b, new_start, out) -> int:
    """Twin of reorder_kernels.scatter_rows: rows whose new id lies in [a, b) copied to new_start."""
    copied = 0
    for i in range(len(local_indptr) - 1):
        nv = inv[row0 + i]
        if a <= nv < b:
            row = vals[local_indptr[i]:local_indptr[i + 1]]
            out[new_start[nv - a]:new_start[nv - a] + len(row)] = row
            copied += 1
    return copied


def map_sort_rows(bucket_ptr, nbr, inv, w):
    """Twin of reorder_kernels.map_sort_rows: (nbr, w) with ids mapped and rows stably sorted."""
    out_n, out_w = [], []
    for r in range(len(bucket_ptr) - 1):
        row = [(int(inv[nbr[j]]), None if w is None else w[j]) for j in range(bucket_ptr[r], bucket_ptr[r + 1])]
        row.sort(key=lambda t: t[0])
        out_n += [u for u, _ in row]
        out_w += [x for _, x in row]
    return out_n, (None if w is None else out_w)


def pair_hash(a: int, b: int, seed: int) -> int:
    lo, hi = min(a, b), max(a, b)
    return mix_hash(lo ^ mix_hash((hi ^ seed) & MASK))


def sparsify(indptr, nbrs, ew, wcap, t, keep_h, seed):
    """{(v, u): w} kept by sparsify_chunk's rule: clipped weight > t, or == t with pair_hash < keep_h."""
    kept = {}
    for v, row in rows_of(indptr, nbrs, ew):
        for u, w in row:
            wc = min(w, wcap)
            if wc > t or (wc == t and pair_hash(u, v, seed) < keep_h):
                kept[(v, u)] = kept.get((v, u), 0) + w
    return kept
