"""bench/scale.sh end to end at a tiny scale: the script CI runs is the one behind docs/scale.md's
10^9-edge table (generate -> ingest -> partition -> reorder -> loader -> sage / cluster-gcn ->
propagate -> history), every stage measured and tabled."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import gstore

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["generate", "ingest", "partition", "reorder", "loader", "sage", "cluster-gcn", "propagate",
          "history"]


def test_scale_script_tiny(tmp_path):
    work = tmp_path / "scale"
    env = dict(os.environ, PYTHON=sys.executable)
    r = subprocess.run(["bash", str(ROOT / "bench" / "scale.sh"), "--work", str(work), "--nodes", "1500",
                        "--communities", "3", "--degree", "6", "--features", "8", "--parts", "4",
                        "--clusters-per-batch", "2", "--batches", "2", "--drop-raw"],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    table = json.loads((work / "scale.json").read_text())
    assert [s["stage"] for s in table["stages"]] == STAGES
    for s in table["stages"]:
        assert s["rc"] == 0 and s["wall_s"] > 0 and s["peak_rss_bytes"] > 0 and s["peak_anon_bytes"] > 0
        assert s["peak_anon_bytes"] <= s["peak_rss_bytes"] * 1.5
    by = {s["stage"]: s for s in table["stages"]}
    assert table["num_entries"] == by["ingest"]["result"]["num_edges"] > 0
    assert by["loader"]["result"]["neighbor"]["start_s"] > 0 and "cluster" in by["loader"]["result"]
    for m in ("sage", "cluster-gcn", "history"):
        res = by[m]["result"]
        assert res["epochs"] == 1 and res["test_accuracy"] is not None
        metrics = [json.loads(x) for x in (Path(res["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
        assert metrics[0]["batches"] <= 2          # --max-batches
    md = (work / "scale.md").read_text()
    assert all(f"| {s} |" in md for s in STAGES)
    assert not (work / "raw").exists()             # --drop-raw after ingest
    s = gstore.open(work / "g.gstore")
    assert s.partition is not None and s.partition.contiguous
    assert np.asarray(s.features).dtype == np.float16


def test_scale_script_refuses_bad_options(tmp_path):
    for args in (["--nodes", "10"], ["--work", str(tmp_path / "w"), "--bogus", "1"]):
        r = subprocess.run(["bash", str(ROOT / "bench" / "scale.sh"), *args], capture_output=True, text=True)
        assert r.returncode == 2 and "scale.sh:" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "w").exists()
