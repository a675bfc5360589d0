"""Never delete what gstore did not create: --force replaces only a store, an output never equals or
contains an input, generate and demo never overwrite files they did not make (issue 8, item 1)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import gstore
from gstore.cli import main
from safety_helpers import mark_as_dead_owner, tree_digest


def _run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_line_error(res, *needles: str) -> str:
    assert res.exit_code == 1, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in res.output, res.output
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def data(tmp_path) -> Path:
    """A user's data directory: edges, a node table, features, labels and an unrelated file."""
    d = tmp_path / "data"
    d.mkdir()
    (d / "edges.csv").write_text("src,dst\n0,1\n1,2\n2,0\n")
    (d / "nodes.csv").write_text("id,label\n0,a\n1,b\n2,a\n")
    (d / "labels.csv").write_text("id,label\n0,a\n1,b\n2,a\n")
    np.save(d / "features.npy", np.ones((3, 2), dtype=np.float32))
    (d / "notes.txt").write_text("not reproducible")
    return d


@pytest.mark.parametrize("force", [False, True])
def test_output_equal_to_or_containing_an_input_is_refused(data, force, monkeypatch):
    (data.parent / "nodes_copy.csv").write_text((data / "nodes.csv").read_text())
    before = tree_digest(data.parent)
    flag = ["--force"] if force else []
    _one_line_error(_run("ingest", data / "edges.csv", "-o", data, *flag), "input", "edges.csv")
    _one_line_error(_run("ingest", data / "edges.csv", "-o", data.parent, *flag), "input")
    _one_line_error(_run("ingest", data / "edges.csv", "-o", data / "edges.csv", *flag), "input")
    monkeypatch.chdir(data)
    _one_line_error(_run("ingest", "edges.csv", "-o", ".", *flag), "input")
    for opt, name in (("--nodes", "nodes.csv"), ("--features", "features.npy"), ("--labels", "labels.csv")):
        extra = [] if opt == "--nodes" else ["--nodes", data.parent / "nodes_copy.csv"]
        res = _run("ingest", data.parent / "elsewhere.csv", "-o", data, opt, data / name, *extra, *flag)
        assert res.exit_code == 1
        (data.parent / "elsewhere.csv").write_text("0,1\n")
        res = _run("ingest", data.parent / "elsewhere.csv", "-o", data, opt, data / name, *extra, *flag)
        _one_line_error(res, "input", name)
        (data.parent / "elsewhere.csv").unlink()
    assert tree_digest(data.parent) == before


def test_output_through_a_symlink_to_the_input_dir_is_refused(data, tmp_path):
    (tmp_path / "link").symlink_to(data)
    before = tree_digest(data)
    _one_line_error(_run("ingest", data / "edges.csv", "-o", tmp_path / "link", "--force"), "input")
    assert tree_digest(data) == before


def test_force_replaces_only_a_store(data, tmp_path, monkeypatch):
    other = tmp_path / "other"
    other.mkdir()
    (other / "photo.jpg").write_bytes(b"\xff\xd8")
    before = tree_digest(other)
    _one_line_error(_run("ingest", data / "edges.csv", "-o", other, "--force"), "not a gstore store", str(other))
    assert tree_digest(other) == before
    (tmp_path / "afile").write_text("x")
    _one_line_error(_run("ingest", data / "edges.csv", "-o", tmp_path / "afile", "--force"), "not a directory")
    assert (tmp_path / "afile").read_text() == "x"
    # a zarr group that is not gstore's is not a store either
    (other / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    _one_line_error(_run("ingest", data / "edges.csv", "-o", other, "--force"), "not a gstore store")
    # the positive case: a store is replaced, and nothing is left next to it
    store = tmp_path / "s"
    assert _run("ingest", data / "edges.csv", "-o", store, "-q").exit_code == 0
    assert _run("ingest", data / "edges.csv", "-o", store, "-q", "--force", "--undirected").exit_code == 0
    assert not gstore.open(store).directed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "data", "other", "s"]


def test_temp_dir_rules_through_the_cli(data, tmp_path):
    out = tmp_path / "s"
    tmp = tmp_path / "s.tmp"
    tmp.mkdir()
    (tmp / "draft.txt").write_text("mine")
    _one_line_error(_run("ingest", data / "edges.csv", "-o", out), str(tmp), "not made by gstore", "move")
    assert (tmp / "draft.txt").exists() and not out.exists()
    (tmp / "draft.txt").unlink()
    mark_as_dead_owner(tmp)
    assert _run("ingest", data / "edges.csv", "-o", out, "-q").exit_code == 0
    assert not tmp.exists()
    f = tmp_path / "f.tmp"
    f.write_text("x")
    _one_line_error(_run("ingest", data / "edges.csv", "-o", tmp_path / "f"), str(f), "is a file")
    assert f.read_text() == "x"


def test_generate_overwrites_only_with_force_and_only_its_files(tmp_path):
    e = tmp_path / "e.csv"
    e.write_text("precious")
    _one_line_error(_run("generate", "rmat", "-s", "4", "-e", "2", "-o", e, "-q"), str(e), "--force")
    assert e.read_text() == "precious"
    assert _run("generate", "rmat", "-s", "4", "-e", "2", "-o", e, "-q", "--force").exit_code == 0
    assert e.read_text() != "precious"
    d = tmp_path / "dir.csv"
    d.mkdir()
    res = _run("generate", "rmat", "-s", "4", "-e", "2", "-o", d, "-q", "--force")
    assert res.exit_code == 2 and "is a directory" in res.output and d.is_dir()    # click's usage error
    out = tmp_path / "raw"
    out.mkdir()
    (out / "nodes.csv").write_text("mine")
    (out / "readme.md").write_text("mine")
    sbm = ["generate", "sbm", "-n", "60", "--communities", "2", "-d", "3", "-f", "2", "-o", out, "-q"]
    _one_line_error(_run(*sbm), "nodes.csv", "--force")
    assert (out / "nodes.csv").read_text() == "mine"
    assert _run(*sbm, "--force").exit_code == 0
    assert (out / "readme.md").read_text() == "mine" and (out / "nodes.csv").read_text() != "mine"
    (tmp_path / "plain").write_text("x")
    res = _run("generate", "sbm", "-n", "60", "--communities", "2", "-o", tmp_path / "plain", "-q")
    assert res.exit_code == 2 and "is a file" in res.output and (tmp_path / "plain").read_text() == "x"


def test_demo_never_writes_into_a_users_directory(tmp_path):
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    (home / "data" / "taxes.csv").write_text("mine")
    before = tree_digest(home)
    _one_line_error(_run("demo", "--workdir", home, "--nodes", "200", "--quiet"), str(home), "--output")
    assert tree_digest(home) == before


def test_check_output_rules(tmp_path):
    from gstore.builder import check_output
    from gstore.errors import OptionError

    dataset = tmp_path / "dataset"           # an input that is a directory (e.g. a parquet dataset)
    dataset.mkdir()
    (dataset / "part-0.parquet").write_bytes(b"")
    with pytest.raises(OptionError, match="inside the input directory"):
        check_output(dataset / "store", [dataset])
    with pytest.raises(OptionError, match="would contain the input"):
        check_output(tmp_path, [dataset / "part-0.parquet"])
    with pytest.raises(OptionError, match="would contain the input"):   # its temp dir would, too
        check_output(tmp_path / "s", [tmp_path / "s.tmp" / "e.csv"], extra=[tmp_path / "s.tmp"])
    check_output(tmp_path / "s", [dataset, tmp_path / "s2" / "e.csv", tmp_path / "s.csv"])
