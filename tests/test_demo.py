"""End to end: `gstore demo` (generate -> ingest -> partition -> train MLP / sage / cluster-gcn)."""
from __future__ import annotations

import re

import gstore
from click.testing import CliRunner

from gstore.cli import main


def test_demo_runs_the_whole_pipeline(tmp_path):
    res = CliRunner().invoke(main, ["demo", "--workdir", str(tmp_path), "--nodes", "3000", "--communities", "4",
                                    "--parts", "8", "--epochs", "3", "--quiet"])
    assert res.exit_code == 0, res.output
    for step in ("1/6 generate", "2/6 ingest", "3/6 partition", "4/6 baseline", "5/6 sage", "6/6 cluster",
                 "test accuracy: features only (MLP)"):
        assert step in res.output
    m = re.search(r"MLP\) ([0-9.]+), GraphSAGE ([0-9.]+), Cluster-GCN ([0-9.]+)", res.output)
    mlp, sage, cgcn = (float(x) for x in m.groups())
    assert sage > 1 / 4 + 0.1 and cgcn > 1 / 4 + 0.1, res.output   # clearly better than chance
    assert sage > mlp, res.output                                   # the graph adds to the features
    g = gstore.open(tmp_path / "store")
    assert g.num_nodes == 3000 and not g.directed
    assert g.partition.num_parts == 8 and g.partition.contiguous
    for name in ("mlp", "sage", "cluster-gcn"):
        assert (tmp_path / "runs" / name / "predictions.parquet").exists()
