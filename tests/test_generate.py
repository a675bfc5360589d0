"""Synthetic graph generators: kernels vs their Python twins, determinism, structure, output formats."""
from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import reference_generate as ref
from gstore.cli import main
from gstore.errors import OptionError
from gstore.pipeline.generate import generate_kernels as K
from gstore.pipeline.generate.rmat import generate_rmat, rmat_block, rmat_pair_table
from gstore.pipeline.generate.sbm import class_means, generate_sbm, sbm_node_block
from gstore.pipeline.generate.seeding import derive_key, permutation_params
from gstore.pipeline.generate.writers import NodesCsvWriter, NpyEdgeWriter


def read_csv_edges(path, delimiter=","):
    return np.loadtxt(path, delimiter=delimiter, skiprows=1, dtype=np.int64, ndmin=2)


def read_nodes(path):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["id", "label", "split"]
    rows = rows[1:]
    return (np.array([int(r[0]) for r in rows]), [r[1] for r in rows], [r[2] for r in rows])


# ---- permutation and hashing -------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 100, 1024, 1000])
def test_permutation_is_a_bijection_with_inverse(n):
    pk = permutation_params(n, derive_key(5, "t"))
    x = np.arange(n, dtype=np.int64)
    y = np.empty_like(x)
    K.permute_many(x, pk, False, y)
    assert sorted(y.tolist()) == list(range(n))
    back = np.empty_like(x)
    K.permute_many(y, pk, True, back)
    np.testing.assert_array_equal(back, x)
    assert y.tolist() == [ref.permute(int(v), pk) for v in x]
    if n >= 100:
        assert np.mean(y == x) < 0.1          # actually shuffles


def test_derive_key_separates_seeds_and_purposes():
    keys = {int(derive_key(s, p)) for s in range(5) for p in ("a", "b")}
    assert len(keys) == 10
    with pytest.raises(OptionError):
        derive_key(-1, "a")


# ---- R-MAT ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale,permute", [(1, False), (5, True), (8, False), (9, True), (17, True)])
def test_rmat_kernel_matches_reference(scale, permute):
    seed, start, count = 11, 37, 60
    src, dst = rmat_block(start, count, scale=scale, seed=seed, permute=permute)
    table = rmat_pair_table(0.57, 0.19, 0.19)
    key = int(derive_key(seed, "rmat-edges"))
    pk = permutation_params(1 << scale, derive_key(seed, "rmat-permute"))
    expect = [ref.rmat_edge(start + i, scale, table, key, pk, permute) for i in range(count)]
    assert list(zip(src.tolist(), dst.tolist())) == expect


def test_rmat_pair_table_has_product_probabilities():
    a, b, c = 0.57, 0.19, 0.19
    table = rmat_pair_table(a, b, c)
    probs = {(0, 0): a, (0, 1): b, (1, 0): c, (1, 1): 1 - a - b - c}
    counts = np.bincount(table, minlength=16) / 65536
    for q1, p1 in probs.items():
        for q2, p2 in probs.items():
            code = (q1[0] | q2[0] << 1) | (q1[1] | q2[1] << 1) << 2
            assert abs(counts[code] - p1 * p2) <= 1.5 / 65536


def test_rmat_quadrant_frequencies_and_skew():
    scale = 14
    src, dst = rmat_block(0, 16 << scale, scale=scale, seed=3, permute=False)
    top = 1 << (scale - 1)
    assert abs(np.mean(src >= top) - 0.24) < 0.01            # c + d
    assert abs(np.mean((src < top) & (dst >= top)) - 0.19) < 0.01   # b
    deg = np.bincount(np.concatenate([src, dst]), minlength=1 << scale)
    assert deg.max() > 20 * deg.mean()                           # heavy-tailed
    assert deg.min() >= 0 and src.max() < (1 << scale) and dst.max() < (1 << scale)


def test_rmat_file_counts_range_and_determinism(tmp_path):
    g = generate_rmat(tmp_path / "a.csv", 10, 8, seed=7)
    e = read_csv_edges(g.edges_path)
    assert e.shape == (8 << 10, 2) == (g.num_edges, 2)
    assert g.num_nodes == 1024 and e.min() >= 0 and e.max() < 1024
    assert open(g.edges_path).readline() == "source,target\n"
    same = generate_rmat(tmp_path / "b.csv", 10, 8, seed=7)
    other = generate_rmat(tmp_path / "c.csv", 10, 8, seed=8)
    assert same.edges_path.read_bytes() == g.edges_path.read_bytes()
    assert other.edges_path.read_bytes() != g.edges_path.read_bytes()
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("fmt", ["csv", "tsv", "npy", "parquet"])
def test_rmat_blockwise_equals_single_block_in_every_format(tmp_path, fmt):
    whole = generate_rmat(tmp_path / f"one.{fmt}", 9, 4, seed=2, block_edges=1 << 22)
    parts = generate_rmat(tmp_path / f"many.{fmt}", 9, 4, seed=2, block_edges=333)
    if fmt == "parquet":
        assert pq.read_table(parts.edges_path).equals(pq.read_table(whole.edges_path))
    else:
        assert parts.edges_path.read_bytes() == whole.edges_path.read_bytes()


def test_all_edge_formats_hold_the_same_edges(tmp_path):
    src, dst = rmat_block(0, 4 << 9, scale=9, seed=4)
    expect = np.stack([src, dst], axis=1)
    for fmt in ("csv", "tsv", "npy", "parquet"):
        g = generate_rmat(tmp_path / f"e.{fmt}", 9, 4, seed=4, block_edges=500)
        if fmt == "csv":
            got = read_csv_edges(g.edges_path)
            t = pacsv.read_csv(g.edges_path)
            assert t.column_names == ["source", "target"]
            np.testing.assert_array_equal(t.column("source").to_numpy(), src)
        elif fmt == "tsv":
            got = read_csv_edges(g.edges_path, delimiter="\t")
        elif fmt == "npy":
            got = np.load(g.edges_path)
            assert got.dtype == np.int64
        else:
            t = pq.read_table(g.edges_path)
            assert t.column_names == ["source", "target"]
            got = np.stack([t.column(0).to_numpy(), t.column(1).to_numpy()], axis=1)
        np.testing.assert_array_equal(got, expect)


def test_rmat_rejects_bad_options(tmp_path):
    with pytest.raises(OptionError):
        generate_rmat(tmp_path / "x.csv", 0, 4)
    with pytest.raises(OptionError):
        generate_rmat(tmp_path / "x.csv", 5, 4, a=0.9, b=0.2)
    with pytest.raises(OptionError):
        generate_rmat(tmp_path / "x.json", 5, 4)
    assert not list(tmp_path.iterdir())


# ---- text formatting -----------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(-2**62, 2**62), st.integers(0, 2**63 - 1)), max_size=300),
       st.sampled_from([",", "\t", " "]), st.integers(1, 9))
def test_format_int_pairs_matches_python(pairs, delim, pieces):
    a = np.array([p[0] for p in pairs], dtype=np.int64)
    b = np.array([p[1] for p in pairs], dtype=np.int64)
    stride = -(-max(len(a), 1) // pieces) * 42
    buf = np.zeros(pieces * stride, dtype=np.uint8)
    lens = np.zeros(pieces, dtype=np.int64)
    K.format_int_pairs(a, b, np.uint8(ord(delim)), buf, lens)
    got = b"".join(bytes(buf[p * stride:p * stride + lens[p]]) for p in range(pieces))
    assert got == ref.format_pairs(a, b, delim)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5000), st.integers(0, 2**32))
def test_permutation_roundtrip_random_ranges(n, seed):
    pk = permutation_params(n, derive_key(seed, "p"))
    x = np.arange(n, dtype=np.int64)
    y = np.empty_like(x)
    K.permute_many(x, pk, False, y)
    assert np.array_equal(np.sort(y), x)
    back = np.empty_like(x)
    K.permute_many(y, pk, True, back)
    assert np.array_equal(back, x)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**62), st.integers(0, 10**6), st.integers(0, 2)), max_size=200))
def test_nodes_csv_writer_matches_python(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("nodes") / "nodes.csv"
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    labels = np.array([r[1] for r in rows], dtype=np.int64)
    splits = np.array([r[2] for r in rows], dtype=np.int8)
    w = NodesCsvWriter(path, block_rows=max(1, len(rows)), max_id=2**62, max_label=10**6)
    half = len(rows) // 2
    w.write(ids[:half], labels[:half], splits[:half])
    w.write(ids[half:], labels[half:], splits[half:])
    w.finish()
    assert path.read_bytes() == b"id,label,split\n" + ref.format_nodes(ids, labels, splits)


def test_npy_writer_with_wrong_count_leaves_no_file(tmp_path):
    w = NpyEdgeWriter(tmp_path / "e.npy", block_edges=10, num_edges=5)
    w.write(np.arange(3), np.arange(3))
    with pytest.raises(OptionError):
        w.finish()
    assert not list(tmp_path.iterdir())


# ---- SBM -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,k,mu,skew", [(50, 3, 0.3, 1.0), (37, 1, 0.5, 1.0), (64, 5, 0.9, 2.0)])
def test_sbm_kernel_matches_reference(n, k, mu, skew):
    key = derive_key(9, "sbm-edges")
    pk = permutation_params(n, derive_key(9, "sbm-positions"))
    src = np.empty(40, dtype=np.int64)
    dst = np.empty(40, dtype=np.int64)
    K.sbm_edges(np.int64(5), np.int64(n), np.int64(k), mu, skew, key, pk, src, dst)
    expect = [ref.sbm_edge(5 + i, n, k, mu, skew, int(key), pk) for i in range(40)]
    assert list(zip(src.tolist(), dst.tolist())) == expect


def test_class_features_kernel_matches_reference():
    means = class_means(3, 5, 2.0, seed=1)
    labels = np.array([0, 2, 1, 1], dtype=np.int64)
    out = np.empty((4, 5), dtype=np.float32)
    key = derive_key(1, "f")
    K.class_features(np.int64(10), labels, means, 0.5, key, out)
    for i in range(4):
        np.testing.assert_allclose(out[i], ref.class_features_row(10 + i, int(labels[i]), means, 0.5,
                                                                  int(key)), rtol=1e-6, atol=1e-6)


def test_class_means_are_orthogonal_with_snr_separation():
    m = class_means(4, 16, 2.5, seed=0)
    d = np.linalg.norm(m[:, None] - m[None], axis=-1)
    np.testing.assert_allclose(d[~np.eye(4, dtype=bool)], 2 * 2.5, rtol=1e-9)


def _labels_of(ids, labels, query):
    order = np.argsort(ids)
    pos = np.searchsorted(ids[order], query)
    assert np.all(ids[order][pos] == query), "edge endpoint missing from nodes.csv"
    return labels[order][pos]


def test_sbm_structure_labels_features(tmp_path):
    n, k, mu = 6000, 5, 0.2
    g = generate_sbm(tmp_path / "g", n, k, 12, mixing=mu, feature_dim=24, seed=5)
    e = read_csv_edges(g.edges_path)
    assert e.shape == (g.num_edges, 2) and g.num_edges == n * 12 // 2
    ids, label_names, splits = read_nodes(g.nodes_path)
    assert len(np.unique(ids)) == n and ids.min() >= 0 and ids.max() < g.id_range == 8 * n
    assert not np.array_equal(np.sort(ids), np.arange(n))      # sparse ids by default
    assert set(label_names) == {f"c{i}" for i in range(k)}
    labels = np.array([int(s[1:]) for s in label_names])
    assert np.bincount(labels).min() >= n // k - 1             # near-equal communities
    frac = {s: splits.count(s) / n for s in ("train", "val", "test")}
    assert abs(frac["train"] - 0.6) < 0.03 and abs(frac["val"] - 0.2) < 0.03
    assert np.all(e[:, 0] != e[:, 1])
    intra = np.mean(_labels_of(ids, labels, e[:, 0]) == _labels_of(ids, labels, e[:, 1]))
    assert abs(intra - (1 - mu)) < 0.02
    x = np.load(g.features_path)
    assert x.shape == (n, 24) and x.dtype == np.float32
    means = np.stack([x[labels == c].mean(0) for c in range(k)])
    pred = np.argmin(((x[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert np.mean(pred == labels) > 0.9
    meta = json.loads((tmp_path / "g" / "generate.json").read_text())
    assert meta["num_nodes"] == n and meta["num_edges"] == g.num_edges


def test_sbm_deterministic_blockwise_and_dense_ids(tmp_path):
    kw = dict(mixing=0.3, feature_dim=7, seed=1)
    a = generate_sbm(tmp_path / "a", 500, 4, 6, **kw)
    b = generate_sbm(tmp_path / "b", 500, 4, 6, block_edges=97, block_rows=33, **kw)
    c = generate_sbm(tmp_path / "c", 500, 4, 6, mixing=0.3, feature_dim=7, seed=2)
    for name in ("edges.csv", "nodes.csv", "features.npy"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()
    d = generate_sbm(tmp_path / "d", 500, 4, 6, dense_ids=True, **kw)
    ids, _, _ = read_nodes(d.nodes_path)
    np.testing.assert_array_equal(ids, np.arange(500))
    labels, _ = sbm_node_block(0, 500, num_nodes=500, num_communities=4, seed=1)
    assert [f"c{v}" for v in labels] == read_nodes(d.nodes_path)[1]
    assert a.num_edges == b.num_edges == 1500


def test_sbm_npy_and_parquet_edges(tmp_path):
    g = generate_sbm(tmp_path / "csv", 300, 3, 4, seed=3, feature_dim=0)
    expect = read_csv_edges(g.edges_path)
    assert g.features_path is None and not (tmp_path / "csv" / "features.npy").exists()
    h = generate_sbm(tmp_path / "npy", 300, 3, 4, seed=3, feature_dim=0, edge_format="npy")
    np.testing.assert_array_equal(np.load(h.edges_path), expect)
    p = generate_sbm(tmp_path / "pq", 300, 3, 4, seed=3, feature_dim=0, edge_format="parquet")
    t = pq.read_table(p.edges_path)
    np.testing.assert_array_equal(np.stack([t["source"].to_numpy(), t["target"].to_numpy()], 1), expect)


def test_sbm_rejects_bad_options(tmp_path):
    for kw in (dict(num_communities=0), dict(mixing=1.5), dict(num_nodes=1), dict(degree_skew=0.5)):
        args = dict(num_nodes=100, num_communities=3, avg_degree=4.0) | kw
        with pytest.raises(OptionError):
            generate_sbm(tmp_path / "x", **args)


# ---- CLI -----------------------------------------------------------------------------------------
def test_cli_generate_rmat_and_sbm(tmp_path):
    r = CliRunner().invoke(main, ["generate", "rmat", "-s", "8", "-e", "4", "--seed", "3", "-q",
                                  "-o", str(tmp_path / "e.tsv")])
    assert r.exit_code == 0, r.output
    assert read_csv_edges(tmp_path / "e.tsv", delimiter="\t").shape == (1024, 2)
    r = CliRunner().invoke(main, ["generate", "sbm", "-n", "200", "--communities", "4", "-d", "5", "-f", "8",
                                  "--dense-ids", "-o", str(tmp_path / "s")])
    assert r.exit_code == 0, r.output
    assert "200 nodes" in r.output
    assert np.load(tmp_path / "s" / "features.npy").shape == (200, 8)


def test_cli_generate_bad_option_is_one_line_error(tmp_path):
    r = CliRunner().invoke(main, ["generate", "rmat", "-s", "0", "-o", str(tmp_path / "e.csv")])
    assert r.exit_code == 1
    assert "scale" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1
