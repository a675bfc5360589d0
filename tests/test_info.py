"""`gstore info` and pipeline/store_stats: numbers against numpy, broken stores, partitions."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import gstore
from gstore.cli import main
from gstore.manifest import read_manifest, write_manifest
from gstore.pipeline import store_stats
from gstore.pipeline.store_stats import degree_stats, describe, label_counts
from gstore.shard_array import shard_path
from store_factory import build_store, random_graph


def _store(tmp_path, *, directed=False, n=300, m=1500, seed=0):
    rng = np.random.default_rng(seed)
    src, dst = random_graph(n, m, seed)
    labels = rng.integers(-1, 4, n)
    splits = {"train": rng.choice(n, 50, replace=False), "val": np.arange(10), "test": np.arange(20, 45)}
    path = build_store(tmp_path / "s", src, dst, n, directed=directed,
                       features=rng.random((n, 6), dtype=np.float32), labels=labels,
                       label_names=["w", "x", "y", "z"], splits=splits)
    return path, labels


@pytest.mark.parametrize("directed", [False, True])
def test_describe_matches_numpy(tmp_path, directed):
    path, labels = _store(tmp_path, directed=directed)
    g = gstore.open(path)
    s = describe(g)
    deg = np.diff(np.asarray(g.indptr))
    assert (s.num_nodes, s.num_edges, s.directed) == (300, len(g.indices), directed)
    assert (s.degree.min, s.degree.max, s.degree.isolated) == (deg.min(), deg.max(), np.sum(deg == 0))
    assert s.degree.median == np.median(deg) and s.degree.mean == pytest.approx(deg.mean())
    counts = np.bincount(labels[labels >= 0], minlength=4)
    assert s.label_counts == {"w": counts[0], "x": counts[1], "y": counts[2], "z": counts[3],
                              "unknown": int(np.sum(labels < 0))}
    assert s.split_sizes == {"train": 50, "val": 10, "test": 25}
    assert s.feature_shape == [300, 6] and s.feature_dtype == "float32" and s.num_classes == 4
    assert s.index_dtype == "int32" and s.id_type == "int" and s.bytes_on_disk > 0
    assert s.array_bytes["indices"] == len(g.indices) * 4


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 70), min_size=1, max_size=200), st.integers(1, 17))
def test_degree_stats_chunked_equals_numpy(degrees, chunk):
    indptr = np.concatenate([[0], np.cumsum(degrees)]).astype(np.int64)
    s = degree_stats(indptr, chunk_rows=chunk)
    d = np.array(degrees)
    assert (s.min, s.max, s.isolated) == (d.min(), d.max(), np.sum(d == 0))
    assert s.median == np.median(d) and s.mean == pytest.approx(d.mean())


def test_degree_median_above_histogram_cap(monkeypatch):
    monkeypatch.setattr(store_stats, "MEDIAN_HIST_CAP", 8)
    d = np.array([3, 50, 60, 70, 9, 100])
    s = degree_stats(np.concatenate([[0], np.cumsum(d)]).astype(np.int64), chunk_rows=4)
    assert s.median == np.median(d) and s.max == 100


def test_label_counts_chunked_and_unnamed_classes():
    labels = np.array([0, 2, 2, -1, 5, 0, 1])
    assert label_counts(labels, ["a", "b", "c"], chunk_rows=2) == \
        {"a": 2, "b": 1, "c": 2, "3": 0, "4": 0, "5": 1, "unknown": 1}
    assert label_counts(np.array([1, 1]), None) == {"0": 0, "1": 2}


def test_cli_info_text_and_json(tmp_path):
    path, labels = _store(tmp_path)
    r = CliRunner().invoke(main, ["info", str(path)])
    assert r.exit_code == 0, r.output
    g = gstore.open(path)
    assert f"{g.num_edges:,}" in r.output and "undirected" in r.output
    assert "train 50" in r.output and "6 float32" in r.output and "w " in r.output
    r = CliRunner().invoke(main, ["info", str(path), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["num_nodes"] == 300 and d["num_edges"] == g.num_edges and d["directed"] is False
    assert d["degree"]["max"] == int(np.diff(np.asarray(g.indptr)).max())


def test_cli_info_shows_partitions_and_build(tmp_path):
    path, _ = _store(tmp_path)
    m = read_manifest(path)
    m.partitions = {"4": {"num_parts": 4, "method": "metis", "edge_cut": 0.125, "balance": 1.03,
                          "arrays": {"parts": "partition/k4/parts"}, "params": {"seed": 0}},
                    "default": {"key": "4"}}
    m.build = {"source": "edges.csv", "seconds": 1.5}
    write_manifest(path, m)
    r = CliRunner().invoke(main, ["info", str(path)])
    assert r.exit_code == 0, r.output
    line = [x for x in r.output.splitlines() if x.startswith("partition")]
    assert len(line) == 1 and "K=4 (default)" in line[0] and "method=metis" in line[0]
    assert "edge_cut=0.125" in line[0] and "balance=1.03" in line[0] and "partition/k4" not in line[0]
    assert "build       source: edges.csv" in r.output.splitlines()
    d = json.loads(CliRunner().invoke(main, ["info", str(path), "--json"]).output)
    assert d["partitions"]["4"]["edge_cut"] == 0.125


def _info_lines(path) -> list[str]:
    r = CliRunner().invoke(main, ["info", str(path)])
    assert r.exit_code == 0, r.output
    return r.stdout.splitlines()


def test_cli_info_sorts_labels_naturally(tmp_path):
    # ingest codes label names in byte order (c0, c1, c10, c11, c2, ...); people count c2 before c10
    names = sorted(f"c{i}" for i in range(12))
    n = 120
    labels = np.arange(n) % 12
    labels[:5] = -1
    path = build_store(tmp_path / "s", *random_graph(n, 300, 1), n, labels=labels, label_names=names)
    line = next(x for x in _info_lines(path) if x.startswith("labels"))
    shown = [part.split()[0] for part in line.split(": ", 1)[1].split(", ")]
    assert shown == [f"c{i}" for i in range(12)] + ["unknown"], line
    d = json.loads(CliRunner().invoke(main, ["info", str(path), "--json"]).stdout)
    assert list(d["label_counts"]) == shown
    assert d["label_counts"]["c2"] == sum(labels == names.index("c2"))


def test_natural_key_orders_digit_runs_by_value():
    from gstore.commands.info import natural_key

    words = ["c10", "c2", "C1", "b", "10", "2", "c2x3", "c2x10", ""]
    assert sorted(words, key=natural_key) == ["", "2", "10", "b", "C1", "c2", "c2x3", "c2x10", "c10"]


def test_cli_info_prints_build_options_one_per_line(tmp_path):
    path, _ = _store(tmp_path)
    m = read_manifest(path)
    m.build = {"command": "ingest", "inputs": ["a.csv", "b.csv"],
               "options": {"undirected": True, "memory_budget": 2 << 30, "labels": None,
                           "read": {"block_bytes": 64 << 20, "delimiter": ","}},
               "stats": {"seconds": 1.234, "peak_rss_bytes": 300 << 20, "num_edges": 1234567}}
    write_manifest(path, m)
    lines = _info_lines(path)
    start = next(i for i, x in enumerate(lines) if x.startswith("build"))
    build = [x[12:] for x in lines[start:]]
    assert build == ["command: ingest", "inputs: a.csv, b.csv", "options.undirected: yes",
                     "options.memory_budget: 2.00 GiB", "options.read.block_bytes: 64.00 MiB",
                     "options.read.delimiter: ,", "stats.seconds: 1.23 s",
                     "stats.peak_rss_bytes: 300.00 MiB", "stats.num_edges: 1,234,567"]
    assert all(x.startswith(" " * 12) for x in lines[start + 1:])
    assert not any("{" in x or "=" in x for x in lines[start:])


def test_cli_info_prints_the_readers_decisions_one_per_line(tmp_path):
    """ingest keeps its decisions as a list of notes (dicts): info printed their Python repr."""
    path, _ = _store(tmp_path)
    m = read_manifest(path)
    m.build = {"command": "ingest",
               "decisions": [{"path": "raw/edges.csv", "kind": "header", "line": 1,
                              "message": "header: detected (source,target)"},
                             {"path": "raw/x.npy", "kind": "layout", "line": None,
                              "message": "(2, E) read as edge_index"}]}
    write_manifest(path, m)
    lines = _info_lines(path)
    start = next(i for i, x in enumerate(lines) if x.startswith("build"))
    build = [x[12:] for x in lines[start:]]
    assert build == ["command: ingest", "decisions: raw/edges.csv:1: header: detected (source,target)",
                     "decisions: raw/x.npy: (2, E) read as edge_index"]


def _break_missing_manifest(path):
    (path / "zarr.json").unlink()


def _break_truncated_indices(path):
    f = shard_path(path / "indices", 1)
    with open(f, "r+b") as fh:
        fh.truncate(f.stat().st_size - 8)


def _break_garbage_manifest(path):
    (path / "zarr.json").write_text("{not json")


@pytest.mark.parametrize("breaker", [_break_missing_manifest, _break_truncated_indices,
                                     _break_garbage_manifest, None])
def test_cli_info_broken_store_is_one_line_error(tmp_path, breaker):
    if breaker is None:
        path = tmp_path / "does-not-exist"
    else:
        path, _ = _store(tmp_path)
        breaker(path)
    r = CliRunner().invoke(main, ["info", str(path)])
    assert r.exit_code == 1
    assert "Traceback" not in r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and str(path) in lines[0]
