"""`gstore ingest` command line: options, summary, refusal to overwrite, crash safety, bad inputs
(non-zero exit, one-line message with file:line, and no store or temp dir left behind)."""
from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

import gstore
from gstore.cli import main


def _run(args):
    return CliRunner().invoke(main, ["ingest", *map(str, args)], catch_exceptions=False)


def _edges(tmp_path, text, name="e.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _no_store(out):
    assert not out.exists(), f"{out} was left behind"
    assert not out.with_name(out.name + ".tmp").exists(), "temp dir left behind"


def test_cli_builds_store_and_prints_summary(tmp_path):
    e = _edges(tmp_path, "a b w\n1 2 0.5\n2 3 1.5\n3 3 2.0\n1 2 9.0\n")
    out = tmp_path / "s"
    r = _run([e, "-o", out, "--delimiter", " ", "--columns", "a,b", "--weight-col", "w", "--undirected",
              "--self-loops", "drop", "-q"])
    assert r.exit_code == 0, r.output
    assert "3 nodes" in r.output and "4 edges" in r.output and "edges/s" in r.output
    g = gstore.open(out)
    assert [g.neighbors(v).tolist() for v in range(3)] == [[1], [0, 2], [1]]
    assert g.weights[g.indptr[0]] == pytest.approx(0.5)          # first of the duplicate 1-2 edges
    assert g.manifest.build["stats"]["self_loops_dropped"] == 2
    assert g.manifest.build["options"]["read"]["weight_col"] == "w"


def test_cli_refuses_existing_store_without_force(tmp_path):
    e = _edges(tmp_path, "1,2\n2,3\n")
    out = tmp_path / "s"
    assert _run([e, "-o", out, "-q"]).exit_code == 0
    r = _run([e, "-o", out, "-q"])
    assert r.exit_code != 0 and "already exists" in r.output and "--force" in r.output
    e2 = _edges(tmp_path, "1,2\n2,3\n3,4\n", "e2.csv")
    assert _run([e2, "-o", out, "-q", "--force"]).exit_code == 0
    assert gstore.open(out).num_nodes == 4


def test_cli_skip_bad_lines_reports_count(tmp_path):
    e = _edges(tmp_path, "1,2\n2,3,4,5\n3,x\n4,1\n")
    r = _run([e, "-o", tmp_path / "s", "--on-bad-line", "skip", "--id-type", "int"])
    assert r.exit_code == 0, r.output
    assert "skipped 2 bad lines" in r.output
    assert gstore.open(tmp_path / "s").manifest.build["stats"]["skipped_lines"] == 2


def _bad_cases(tmp_path):
    """name -> (args, text expected in the message). Files written here."""
    ok = _edges(tmp_path, "src,dst\n1,2\n2,3\n3,1\n", "ok.csv")
    cases = {}
    cases["columns"] = ([_edges(tmp_path, "1,2\n2,3\n3,4,5\n4,5\n", "cols.csv"), "--id-type", "int"],
                        "cols.csv:3")
    cases["non_int"] = ([_edges(tmp_path, "1,2\n2,b\n", "nonint.csv"), "--id-type", "int"], "nonint.csv:2")
    cases["empty"] = ([_edges(tmp_path, "", "empty.csv")], "empty.csv")
    cases["missing"] = ([tmp_path / "nope.csv"], "nope.csv")
    raw = gzip.compress(("\n".join(f"{i},{i + 1}" for i in range(20000)) + "\n").encode())
    (tmp_path / "trunc.csv.gz").write_bytes(raw[: len(raw) // 2])
    cases["truncated_gzip"] = ([tmp_path / "trunc.csv.gz"], "trunc.csv.gz")
    nodes = _edges(tmp_path, "id,label\n1,a\n2,b\n3,a\n", "nodes.csv")
    np.save(tmp_path / "f2.npy", np.zeros((2, 4), dtype=np.float32))
    cases["feature_rows"] = ([ok, "--nodes", nodes, "--features", tmp_path / "f2.npy"], "f2.npy")
    cases["feature_ids"] = ([ok, "--features", _edges(tmp_path, "id,x\n1,0.5\n2,0.5\n", "fk.csv")],
                            "fk.csv")
    cases["feature_not_node"] = ([ok, "--features", _edges(tmp_path, "id,x\n1,0.5\n2,0.5\n9,1\n", "fn.csv")],
                                 "fn.csv:4")
    cases["dup_nodes"] = ([ok, "--nodes", _edges(tmp_path, "id,label\n1,a\n2,b\n1,a\n", "dup.csv")],
                          "dup.csv:4")
    bad = np.ones((3, 2), dtype=np.float32)
    bad[1, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    cases["nan"] = ([ok, "--nodes", nodes, "--features", tmp_path / "nan.npy"], "nan.npy:2")
    cases["label_not_node"] = ([ok, "--labels", _edges(tmp_path, "id,label\n1,a\n7,b\n", "lab.csv")],
                               "lab.csv:3")
    return cases


CASES = ["columns", "non_int", "empty", "missing", "truncated_gzip", "feature_rows", "feature_ids",
         "feature_not_node", "dup_nodes", "nan", "label_not_node"]


@pytest.mark.parametrize("case", CASES)
def test_cli_bad_input_fails_cleanly(tmp_path, case):
    args, where = _bad_cases(tmp_path)[case]
    out = tmp_path / "out"
    r = _run([*args, "-o", out, "-q"])
    assert r.exit_code != 0
    msg = r.output.strip().splitlines()[-1]
    assert msg.startswith("Error: ") and where in msg, r.output
    _no_store(out)


def test_cli_allow_nan_accepts_nan_features(tmp_path):
    args, _ = _bad_cases(tmp_path)["nan"]
    r = _run([*args, "-o", tmp_path / "out", "-q", "--allow-nan"])
    assert r.exit_code == 0, r.output
    assert np.isnan(gstore.open(tmp_path / "out").features).sum() == 1


def test_kill_mid_build_leaves_no_store_and_next_run_succeeds(tmp_path):
    rng = np.random.default_rng(0)
    e = tmp_path / "big.csv"
    np.savetxt(e, rng.integers(0, 10**6, (1_500_000, 2)), fmt="%d", delimiter=",")
    out = tmp_path / "s"
    tmp = out.with_name("s.tmp")
    cmd = [sys.executable, "-m", "gstore.cli", "ingest", str(e), "-o", str(out), "-q",
           "--memory-budget", "8MiB"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not (tmp / "_spill").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert proc.poll() is None, "build finished before it could be killed"
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists() and tmp.exists()       # a half build is never mistaken for a store
    with pytest.raises(gstore.errors.StoreError):
        gstore.open(tmp)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert not tmp.exists() and gstore.open(out).num_edges > 0
