"""Damage found by a hostile run of every command over a damaged store (issue 8, item 3): each must
end in one line naming the problem, never a traceback."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gstore.cli import main
from gstore.shard_array import shard_path
from store_factory import build_store, random_graph


@pytest.fixture
def store(tmp_path) -> Path:
    src, dst = random_graph(300, 1200, seed=7)
    rng = np.random.default_rng(7)
    return build_store(tmp_path / "s", src, dst, 300, labels=rng.integers(0, 3, 300),
                       splits={"train": np.arange(0, 300, 3)})


@pytest.mark.parametrize("name", ["indptr", "indices", "labels", "splits/train"])
@pytest.mark.parametrize("size", [1, 101, 1003])
def test_a_file_truncated_mid_element_is_a_size_problem(store, name, size):
    """Truncated to a byte count that is not a whole number of elements (verify fed the partial
    element to the structural checker: ValueError from numpy's view)."""
    f = shard_path(store / name, 1)
    with open(f, "r+b") as fh:
        fh.truncate(size)
    r = CliRunner().invoke(main, ["verify", str(store), "--json"])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert r.exit_code == 1
    kinds = {p["kind"] for p in json.loads(r.output)["problems"] if p["array"] == name}
    assert "size" in kinds


@pytest.mark.parametrize("damage", ['{"zarr_format": 3, "node_type": [', "", None])
def test_a_damaged_or_missing_group_zarr_json_is_reported(store, damage):
    """Group metadata between the root and the arrays (splits/zarr.json) is what zarr-python opens
    the store through; verify passed a garbled or deleted one as OK."""
    meta = store / "splits" / "zarr.json"
    if damage is None:
        meta.unlink()
    else:
        meta.write_text(damage)
    r = CliRunner().invoke(main, ["verify", str(store), "--json"])
    assert r.exit_code == 1, r.output
    problems = json.loads(r.output)["problems"]
    assert any("splits/zarr.json" in p["message"] for p in problems), problems
