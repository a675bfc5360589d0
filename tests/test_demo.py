"""End to end: `gstore demo` (generate -> ingest -> partition -> sample -> train) on a small graph."""
from __future__ import annotations

import re

import gstore
from click.testing import CliRunner

from gstore.cli import main


def test_demo_runs_the_whole_pipeline(tmp_path):
    res = CliRunner().invoke(main, ["demo", "--workdir", str(tmp_path), "--nodes", "3000", "--communities", "4",
                                    "--parts", "8", "--epochs", "2", "--quiet"])
    assert res.exit_code == 0, res.output
    for step in ("1/5 generate", "2/5 ingest", "3/5 partition", "4/5 sample", "5/5 train", "test accuracy"):
        assert step in res.output
    acc = float(re.search(r"test accuracy ([0-9.]+)", res.output).group(1))
    assert acc > 1 / 4 + 0.1, res.output          # clearly better than chance on 4 classes
    g = gstore.open(tmp_path / "store")
    assert g.num_nodes == 3000 and not g.directed
    assert g.partition.num_parts == 8
