"""`gstore train --max-batches N`: a bounded run on a graph too large for whole epochs (the scale
chain trains 200 batches of 33.5M nodes' epochs), with predictions still over every node."""
from __future__ import annotations

import json

from click.testing import CliRunner

from gstore.cli import main
from gstore.train.run import bounded
from train_graphs import community_store


def test_max_batches_bounds_epochs_and_evaluation(tmp_path):
    store = community_store(tmp_path / "g.gstore")
    r = CliRunner().invoke(main, ["train", str(store), "-o", str(tmp_path / "run"), "--epochs", "2",
                                  "--batch-size", "32", "--max-batches", "3", "--json", "-q"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    recs = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["batches"] for x in recs] == [3, 3]
    # evaluation: 3 batches of 4 x 32 seeds at most
    assert all(x["val"]["count"] <= 3 * 4 * 32 for x in recs)
    assert sum(res["metrics"][s]["count"] for s in ("train", "val", "test")) == 600  # every node


def test_max_batches_refuses_negative(tmp_path):
    store = community_store(tmp_path / "g.gstore")
    r = CliRunner().invoke(main, ["train", str(store), "-o", str(tmp_path / "run"), "--max-batches", "-1"])
    assert r.exit_code != 0 and "--max-batches must be >= 0" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "run").exists()


def test_bounded_stops_the_iterator_early():
    closed = []

    def gen():
        try:
            for i in range(10):
                yield i
        finally:
            closed.append(True)

    class L:
        def __iter__(self):
            return gen()
    assert list(bounded(L(), 3)) == [0, 1, 2] and closed == [True]
    assert list(bounded(L(), 0)) == list(range(10))
    assert list(bounded(L(), -1)) == []
