"""Inputs of the scale chain: generate's int32 edges / float16 features (half the disk), and ingest's
node tables in random id order written without a call per node (docs/scale.md)."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import gstore
from gstore.cli import main
from gstore.errors import OptionError
from gstore.pipeline.generate.rmat import generate_rmat
from gstore.pipeline.generate.sbm import generate_sbm
from gstore.shard_array import ShardArrayWriter


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
def test_int32_edges_equal_int64_edges(tmp_path, fmt):
    wide = generate_rmat(tmp_path / f"a.{fmt}", 9, 4, seed=3, block_edges=300)
    narrow = generate_rmat(tmp_path / f"b.{fmt}", 9, 4, seed=3, block_edges=300, edge_dtype="auto")
    if fmt == "npy":
        a, b = np.load(wide.edges_path), np.load(narrow.edges_path)
    else:
        a = np.column_stack([pq.read_table(wide.edges_path).column(c).to_numpy() for c in ("source", "target")])
        b = np.column_stack([pq.read_table(narrow.edges_path).column(c).to_numpy() for c in ("source", "target")])
    assert a.dtype == np.int64 and b.dtype == np.int32
    assert np.array_equal(a, b)
    assert narrow.params["edge_dtype"] == "int32"
    if fmt == "npy":        # parquet compresses either way
        assert narrow.edges_path.stat().st_size < 0.6 * wide.edges_path.stat().st_size


def test_int32_refused_for_ids_past_2_31_before_writing(tmp_path):
    with pytest.raises(OptionError, match="int32 cannot hold"):
        generate_rmat(tmp_path / "x.npy", 32, 1, edge_dtype="int32")
    assert not list(tmp_path.iterdir())
    # auto falls back to int64 there; sbm sparse ids span 8N
    with pytest.raises(OptionError, match="int32 cannot hold"):
        generate_sbm(tmp_path / "s", 2**28 + 1, 2, 1.0, edge_format="npy", edge_dtype="int32")
    assert not (tmp_path / "s").exists()


def test_sbm_float16_features_and_int32_edges(tmp_path):
    a = generate_sbm(tmp_path / "a", 3000, 4, 6.0, feature_dim=8, edge_format="npy", seed=5)
    b = generate_sbm(tmp_path / "b", 3000, 4, 6.0, feature_dim=8, edge_format="npy", seed=5,
                     edge_dtype="auto", feature_dtype="float16", block_rows=700)
    fa, fb = np.load(a.features_path), np.load(b.features_path)
    assert fb.dtype == np.float16 and np.array_equal(fa.astype(np.float16), fb)
    assert np.load(b.edges_path).dtype == np.int32
    assert np.array_equal(np.load(a.edges_path), np.load(b.edges_path))
    assert (tmp_path / "a" / "nodes.csv").read_bytes() == (tmp_path / "b" / "nodes.csv").read_bytes()
    meta = json.loads((tmp_path / "b" / "generate.json").read_text())
    assert meta["params"]["feature_dtype"] == "float16" and meta["params"]["edge_dtype"] == "int32"


def test_generate_dtype_cli_errors_leave_nothing(tmp_path):
    r = CliRunner().invoke(main, ["generate", "sbm", "-n", "100", "--communities", "2", "--edge-dtype",
                                  "int32", "-o", str(tmp_path / "o")])
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert "npy and parquet" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
    r = CliRunner().invoke(main, ["generate", "sbm", "-n", "100", "--communities", "2",
                                  "--feature-dtype", "float8", "-o", str(tmp_path / "o")])
    assert r.exit_code != 0 and not (tmp_path / "o").exists()


def test_node_table_in_random_order_is_not_written_row_by_row(tmp_path, monkeypatch):
    """A node table listing nodes in random id order (what generate sbm writes) used to cost a
    positional write per node (runs of consecutive ids have length ~1): 3 x 33.5M Python calls at
    the chain's scale. Now a chunk is one scatter, and the store holds the same rows."""
    g = generate_sbm(tmp_path / "raw", 4000, 5, 6.0, feature_dim=64, edge_format="npy", seed=2)
    calls = {"n": 0}
    orig = ShardArrayWriter.write_rows

    def counting(self, start, block):
        calls["n"] += 1
        return orig(self, start, block)

    monkeypatch.setattr(ShardArrayWriter, "write_rows", counting)
    r = CliRunner().invoke(main, ["ingest", str(g.edges_path), "--undirected", "--nodes", str(g.nodes_path),
                                  "--features", str(g.features_path), "-o", str(tmp_path / "g"), "-q",
                                  "--memory-budget", "1MiB"])   # 64-d: feature chunks of 1024 rows
    assert r.exit_code == 0, r.output
    assert calls["n"] < 200, calls["n"]     # was 3036 (a feature row per call, chunks of 1024)
    s = gstore.open(tmp_path / "g")
    ids = np.asarray(s.node_ids, dtype=np.int64)
    rows = np.loadtxt(g.nodes_path, delimiter=",", skiprows=1, dtype=str)
    raw_ids = rows[:, 0].astype(np.int64)
    pos = {int(v): i for i, v in enumerate(raw_ids)}
    order = np.array([pos[int(v)] for v in ids])
    feats = np.load(g.features_path)
    assert np.array_equal(np.asarray(s.features[:]), feats[order])
    names = np.array(s.label_names)
    assert (names[np.asarray(s.labels[:])] == rows[order, 1]).all()
    train = np.zeros(s.num_nodes, bool)
    train[np.asarray(s.split("train"))] = True
    assert np.array_equal(train, rows[order, 2] == "train")


@pytest.mark.parametrize("cap", [1 << 20, 40])
def test_row_distributor_writes_rows_once_in_order(tmp_path, cap):
    """Rows in random id order, through spill buckets (cap 40 bytes: 5 int64 rows of 1 column per
    bucket) or one buffer, equal a plain scatter; later layers override; unset rows are the fill."""
    from gstore.pipeline.ingest.row_scatter import RowDistributor

    n = 103
    out = np.full(n, 7, dtype=np.int64)
    writes = []

    def write_rows(start, block):
        writes.append((start, len(block)))
        out[start:start + len(block)] = block

    d = RowDistributor(write_rows, n, (), np.int64, cap, tmp_path, "t", fill=-1)
    rng = np.random.default_rng(1)
    ids = rng.permutation(n)[:90]
    want = np.full(n, -1, dtype=np.int64)
    for part in np.array_split(ids, 7):
        d.add(part, part * 10)
        want[part] = part * 10
    d.override()
    again = ids[:20]
    d.add(again, -again)
    want[again] = -again
    d.finish()
    assert np.array_equal(out, want)
    starts = [s for s, _ in writes]
    assert starts == sorted(starts) and sum(m for _, m in writes) == n     # every row once, in order
    assert not list(tmp_path.glob("t-*"))                                  # spill files consumed
