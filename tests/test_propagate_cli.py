"""`gstore propagate` as a user meets it: the CLI, kills between and inside hops, a disk that fills
up in hop 2, a store locked by another process, and `--reorder` dropping the hops."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import gstore
from gstore.cli import main
from gstore.faults import FAULT_ENV
from gstore.pipeline.partition.partition import partition_store
from gstore.pipeline.propagation import PropagationParams, PropagationResult, open_propagated, propagate
from reference_propagation import dense_hops
from safety_helpers import DiskFullAfter
from store_factory import build_store, random_graph

KEY = "propagate-sym-loops-float32"


def _store(path, n=80, e=400, f=3, seed=0):
    src, dst = random_graph(n, e, seed=seed)
    x = np.random.default_rng(seed).standard_normal((n, f)).astype(np.float32)
    return build_store(path, src, dst, n, features=x)


def _check_equals_dense(path, hops: int) -> None:
    g = gstore.open(path, verify=True)
    got = open_propagated(g, PropagationParams(hops=hops))
    assert got is not None
    want = dense_hops(np.asarray(g.indptr), np.asarray(g.indices), None, np.asarray(g.features), hops,
                      norm="sym", self_loops=True)
    for k in range(hops):
        np.testing.assert_allclose(got.hops[k + 1], want[k], rtol=1e-5, atol=1e-6)


def _no_strays(path) -> None:
    """Every directory under derived/ is named by the manifest (no half-written hop left)."""
    g = gstore.open(path)
    named = {n.split("/")[1] for n in g.manifest.arrays if n.startswith("derived/")}
    on_disk = {p.name for p in (path / "derived").iterdir() if p.is_dir()} if (path / "derived").exists() else set()
    assert on_disk == named
    assert not (path / "_partition_scratch").exists()


def _cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gstore.cli", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def test_cli_json_text_and_info(tmp_path):
    path = _store(tmp_path / "g")
    res = CliRunner().invoke(main, ["propagate", str(path), "--hops", "2", "--json", "-q"])
    assert res.exit_code == 0, res.output
    r = PropagationResult.from_json(json.loads(res.output))
    assert r.hops_computed == [1, 2] and r.key == KEY and len(r.arrays) == 2
    assert r.peak_rss_bytes >= r.peak_anon_bytes > 0 and r.bytes_written > 0
    res = CliRunner().invoke(main, ["propagate", str(path), "--hops", "3", "-q"])
    assert res.exit_code == 0, res.output
    assert "hops computed: 3" in res.output and "hops reused:   1, 2" in res.output
    info = CliRunner().invoke(main, ["info", str(path)])
    assert KEY in info.output and "propagation" in info.output
    _check_equals_dense(path, 3)


def test_kill_between_hops_leaves_a_valid_store_and_the_rerun_finishes(tmp_path):
    path = _store(tmp_path / "g")
    proc = _cli("propagate", str(path), "--hops", "3", "-q", env={FAULT_ENV: "propagate:after-hop"})
    assert proc.returncode == -9, proc.stderr
    g = gstore.open(path, verify=True)
    assert sorted(g.manifest.derived[KEY].arrays) == ["hop_1"]
    r = propagate(path, PropagationParams(hops=3))
    assert r.hops_computed == [2, 3] and r.hops_reused == [1]
    _check_equals_dense(path, 3)
    _no_strays(path)


@pytest.mark.parametrize("point", ["propagate:after-write", "propagate:before-manifest"])
def test_kill_inside_a_hop_leaves_the_store_as_it_was(tmp_path, point):
    path = _store(tmp_path / "g")
    before = gstore.open(path).manifest.to_json()
    proc = _cli("propagate", str(path), "--hops", "2", "-q", env={FAULT_ENV: point})
    assert proc.returncode == -9, proc.stderr
    assert gstore.open(path, verify=True).manifest.to_json() == before
    assert propagate(path, PropagationParams(hops=2)).hops_computed == [1, 2]
    _check_equals_dense(path, 2)
    _no_strays(path)


def test_disk_full_in_hop_two_keeps_hop_one_for_the_rerun(tmp_path, monkeypatch):
    path = _store(tmp_path / "g")
    DiskFullAfter(monkeypatch, 1)             # hop 1's one data write succeeds, hop 2's fails
    with pytest.raises(OSError):
        propagate(path, PropagationParams(hops=2))
    monkeypatch.undo()
    assert sorted(gstore.open(path, verify=True).manifest.derived[KEY].arrays) == ["hop_1"]
    _no_strays(path)
    r = propagate(path, PropagationParams(hops=2))
    assert r.hops_computed == [2] and r.hops_reused == [1]
    _check_equals_dense(path, 2)


def test_a_store_locked_by_another_process_is_refused_in_one_line(tmp_path):
    path = _store(tmp_path / "g")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom gstore.store_update import store_lock\n"
        f"with store_lock({str(path)!r}, 'test holder'):\n    print('held', flush=True)\n    time.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = _cli("propagate", str(path), "--hops", "1", "-q")
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in proc.stderr, proc.stderr
    assert not gstore.open(path).manifest.derived


def test_reorder_drops_the_hops_and_a_later_propagate_recomputes(tmp_path):
    path = _store(tmp_path / "g", n=120, e=600)
    propagate(path, PropagationParams(hops=2))
    partition_store(path, 3, seed=0, reorder=True)
    g = gstore.open(path, verify=True)
    assert KEY not in g.manifest.derived
    assert not any(n.startswith("derived/") for n in g.manifest.arrays)
    assert open_propagated(g, PropagationParams(hops=2)) is None
    r = propagate(path, PropagationParams(hops=2))
    assert r.hops_computed == [1, 2] and r.hops_reused == []
    _check_equals_dense(path, 2)       # of the renumbered graph and features
