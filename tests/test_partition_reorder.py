"""`gstore partition --reorder`: the graph and all node data survive the renumbering exactly, and a
killed reorder leaves the old store intact."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import gstore
from gstore.builder import StoreBuilder
from gstore.cli import main
from gstore.manifest import StoreManifest
from gstore.pipeline.partition.partition import partition_store
from gstore.pipeline.partition.reorder import reorder_store
from store_factory import build_store, random_graph, reference_csr


def _edge_set(g, ids):
    """{(original src id, original dst id, weight)} of a store, through its node_ids."""
    indptr, indices = np.asarray(g.indptr), np.asarray(g.indices)
    w = np.asarray(g.weights) if g.weights is not None else None
    out = set()
    for v in range(g.num_nodes):
        for j in range(indptr[v], indptr[v + 1]):
            out.add((ids[indices[j]], ids[v], None if w is None else float(w[j])))
    return out


def _ids(g):
    return g.node_ids.to_list() if g.manifest.id_type == "string" else np.asarray(g.node_ids).tolist()


def _snapshot(g):
    ids = _ids(g)
    feats = {ids[v]: tuple(g.features[v]) for v in range(g.num_nodes)} if g.features is not None else None
    labels = {ids[v]: int(g.labels[v]) for v in range(g.num_nodes)} if g.labels is not None else None
    splits = {s: sorted(ids[v] for v in g.split(s)) for s in ("train", "val", "test")}
    parts = {k: {ids[v]: int(p.parts[v]) for v in range(g.num_nodes)} for k, p in g.partitions().items()}
    return {"edges": _edge_set(g, ids), "features": feats, "labels": labels, "splits": splits,
            "parts": parts, "n": g.num_nodes, "e": g.num_edges}


def _check_sorted_rows(g):
    indptr, indices = np.asarray(g.indptr), np.asarray(g.indices)
    for v in range(g.num_nodes):
        row = indices[indptr[v]:indptr[v + 1]]
        assert (np.diff(row) >= 0).all()


def _weighted_string_store(path, n=120, m=700, seed=0):
    """A directed store with float32 weights, string ids, float16 features, labels and splits."""
    rng = np.random.default_rng(seed)
    src, dst = random_graph(n, m, seed)
    indptr, indices = reference_csr(src, dst, n, directed=True)
    names = [f"node-{i}-{'x' * (i % 5)}" for i in range(n)]
    utf8 = np.frombuffer("".join(names).encode(), dtype=np.uint8)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum([len(s) for s in names], out=offsets[1:])
    man = StoreManifest(num_nodes=n, num_edges=len(indices), directed=True, id_type="string",
                        feature_dim=3, feature_dtype="float16", label_names=["a", "b", "c"], num_classes=3)
    with StoreBuilder(path) as b:
        b.write_array("indptr", indptr)
        b.write_array("indices", indices.astype(np.int32), chunk_rows=64)
        b.write_array("weights", rng.random(len(indices)).astype(np.float32))
        b.write_array("node_ids/offsets", offsets)
        b.write_array("node_ids/utf8", utf8)
        b.write_array("features", rng.random((n, 3)).astype(np.float16), chunk_rows=16)
        b.write_array("labels", rng.integers(-1, 3, n))
        b.write_array("splits/train", np.arange(0, n, 4, dtype=np.int64))
        b.write_array("splits/val", np.arange(1, n, 9, dtype=np.int64))
        man.split_sizes = {"train": len(range(0, n, 4)), "val": len(range(1, n, 9))}
        b.commit(man)
    return path


@pytest.mark.parametrize("budget,kind", [
    (budget, kind) for budget in ("16KB", "1GiB") for kind in ("int-undirected", "string-weighted-directed")
] + [("16KB", "string-many-buckets")])
def test_reorder_preserves_graph_and_node_data(tmp_path, budget, kind):
    path = tmp_path / "s"
    if kind == "string-many-buckets":      # string ids (~8 KB) and edges both in many buckets at 16KB
        _weighted_string_store(path, n=900, m=5000)
    elif kind == "int-undirected":
        n = 300
        src, dst = random_graph(n, 1500, seed=1)
        rng = np.random.default_rng(1)
        build_store(path, src, dst, n, directed=False, features=rng.random((n, 4)).astype(np.float32),
                    labels=rng.integers(0, 5, n), splits={"train": np.arange(0, n, 2), "test": np.arange(1, n, 7)})
    else:
        _weighted_string_store(path)
    partition_store(path, 3, seed=4)
    before = _snapshot(gstore.open(path))
    partition_store(path, 7, seed=1, reorder=True, memory_budget=budget)
    g = gstore.open(path)
    after = _snapshot(g)
    before["parts"][7] = after["parts"][7]  # the new partition did not exist before
    assert after == before
    _check_sorted_rows(g)
    p = g.partition
    assert p.num_parts == 7 and p.contiguous
    parts = np.asarray(p.parts)
    assert (np.diff(parts) >= 0).all()  # clusters are contiguous id ranges
    for q in range(7):
        assert (parts[p.partptr[q]:p.partptr[q + 1]] == q).all()
    assert p.perm is None and p.pos is None  # the identity, not materialised
    np.testing.assert_array_equal(p.nodes_of(2), np.arange(p.partptr[2], p.partptr[3]))
    other = g.partitions()[3]
    assert not other.contiguous and sorted(np.asarray(other.perm).tolist()) == list(range(g.num_nodes))
    np.testing.assert_array_equal(np.asarray(other.pos)[np.asarray(other.perm)], np.arange(g.num_nodes))
    assert g.manifest.build["reordered_by"]["partition"] == "7"
    assert not (tmp_path / "s.tmp").exists()


def test_reorder_via_cli_and_missing_partition(tmp_path):
    src, dst = random_graph(150, 600, seed=3)
    path = build_store(tmp_path / "s", src, dst, 150)
    res = CliRunner().invoke(main, ["partition", str(path), "-k", "5", "--reorder", "-q"])
    assert res.exit_code == 0, res.output
    assert "reorder" in res.output and gstore.open(path).partition.contiguous
    with pytest.raises(gstore.StoreError):
        reorder_store(path, "9")
    # --reorder by an existing partition without --force: lays it out, no new partitioning
    partition_store(path, 3, seed=2)
    before = np.array(gstore.open(path).partition.parts)
    node_ids = np.array(gstore.open(path).node_ids)
    r = partition_store(path, 3, reorder=True)
    g = gstore.open(path)
    assert r.reordered and g.partition.num_parts == 3 and g.partition.contiguous
    old_dense = np.empty_like(node_ids)
    old_dense[node_ids] = np.arange(len(node_ids))  # original id -> dense id before the reorder
    np.testing.assert_array_equal(np.asarray(g.partition.parts), before[old_dense[np.asarray(g.node_ids)]])


@pytest.mark.parametrize("phase", ["reorder:edges-spilled", "reorder:after-indices",
                                   "reorder:after-node-data", "reorder:before-commit"])
def test_killed_reorder_leaves_old_store_intact(tmp_path, phase):
    n = 200
    src, dst = random_graph(n, 900, seed=8)
    rng = np.random.default_rng(8)
    path = build_store(tmp_path / "s", src, dst, n, directed=True,
                       features=rng.random((n, 2)).astype(np.float32), labels=rng.integers(0, 3, n))
    partition_store(path, 4)
    before = _snapshot(gstore.open(path))
    raw_before = {name: np.array(gstore.open(path).array(name)) for name in ("indptr", "indices", "features")}
    env = dict(os.environ, GSTORE_FAULT_AT=phase)
    # a budget small enough that the edges go through spill files (killed with them on disk)
    proc = subprocess.run([sys.executable, "-m", "gstore.cli", "partition", str(path), "--parts", "4",
                           "--force", "--reorder", "--memory-budget", "16KB", "-q"], env=env,
                          capture_output=True)
    assert proc.returncode == -9, proc.stderr
    g = gstore.open(path)  # the old store: opens and verifies
    for name, arr in raw_before.items():
        np.testing.assert_array_equal(g.array(name), arr)
    assert _snapshot(g)["edges"] == before["edges"]
    assert not g.partition.contiguous
    # a re-run removes the half-built temp store and finishes
    partition_store(path, 4, force=True, reorder=True)
    g = gstore.open(path)
    assert g.partition.contiguous and _snapshot(g)["edges"] == before["edges"]
    assert not (tmp_path / "s.tmp").exists()


def _count_reads(monkeypatch):
    """{path: bytes read through ArrayFile.read}: every streaming read of a store array goes there."""
    from gstore.pipeline.partition.csr_stream import ArrayFile

    counts: dict = {}
    real = ArrayFile.read

    def read(self, lo, hi, out=None):
        key = os.path.realpath(self.path)
        counts[key] = counts.get(key, 0) + (hi - lo) * self.dtype.itemsize
        return real(self, lo, hi, out)

    monkeypatch.setattr(ArrayFile, "read", read)
    return counts


@pytest.mark.parametrize("weighted", [False, True])
def test_reorder_reads_old_edges_once_at_any_budget(tmp_path, monkeypatch, weighted):
    """At a budget that cuts the new indices into many buckets, the old indices (and weights) are
    still read once (a distribution pass), not once per bucket; the result is the in-RAM reference."""
    from gstore.pipeline.partition.csr_stream import store_array_file
    from reference_partition import reorder_csr

    n = 1200
    src, dst = random_graph(n, 3000, seed=5)
    src, dst = np.concatenate([src, np.arange(1000)]), np.concatenate([dst, np.full(1000, 7)])
    keep = (src < n - 20) & (dst < n - 20)  # node 7's row is longer than a bucket; 20 isolated nodes
    indptr, indices = reference_csr(src[keep], dst[keep], n, directed=True)
    path = tmp_path / "s"
    with StoreBuilder(path) as b:
        b.write_array("indptr", indptr)
        b.write_array("indices", indices.astype(np.int32))
        if weighted:
            b.write_array("weights", np.random.default_rng(5).random(len(indices)).astype(np.float32))
        b.commit(StoreManifest(num_nodes=n, num_edges=len(indices), directed=True))
    partition_store(path, 9, seed=3)
    old = gstore.open(path)
    indptr, indices = np.asarray(old.indptr), np.asarray(old.indices)
    w = np.asarray(old.weights) if weighted else None
    perm = np.argsort(np.asarray(old.partition.parts), kind="stable")
    arrays = [store_array_file(old, a) for a in (["indices", "weights"] if weighted else ["indices"])]
    files = [os.path.realpath(a.path) for a in arrays]
    sizes = [a.length * a.dtype.itemsize for a in arrays]
    del old
    counts = _count_reads(monkeypatch)
    monkeypatch.setattr("gstore.pipeline.partition.reorder.MAX_OPEN_SPILLS", 3)  # spill files reopened
    reorder_store(path, "9", memory_budget="16KB")      # buckets of <= 512 entries: > 8 buckets
    for f, size in zip(files, sizes):
        assert size <= counts.get(f, 0) <= 2 * size, (f, counts, size)
    g = gstore.open(path)
    ref_ptr, ref_idx, ref_w = reorder_csr(indptr, indices, w, perm)
    np.testing.assert_array_equal(np.asarray(g.indptr), ref_ptr)
    np.testing.assert_array_equal(np.asarray(g.indices), ref_idx)
    if weighted:
        np.testing.assert_array_equal(np.asarray(g.weights), ref_w)
    assert not (tmp_path / "s.tmp").exists()
