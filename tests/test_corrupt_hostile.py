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


# (field path in the manifest, hostile values): every command must answer with one line
MANIFEST_MUTATIONS = [
    (("arrays",), [-1, None, [], "x"]),
    (("arrays", "indptr"), [0, None, [], "x"]),
    (("arrays", "indptr", "name"), [None, 5, "", "../x", "/etc"]),
    (("arrays", "indptr", "shape"), [None, [], 5, ["x"], [-1]]),
    (("arrays", "indptr", "shape", 0), [-1, 2**70, "x", 1.5]),
    (("arrays", "indptr", "dtype"), [None, 5, [], "x", "object", "<U3"]),
    (("arrays", "indptr", "chunk_rows"), [0, -1, None, "x", 1.5]),
    (("arrays", "indptr", "data_bytes"), [-1, 2**70, None, 3]),
    (("arrays", "indptr", "block_bytes"), [0, -1, None, "x"]),
    (("arrays", "labels", "checksum"), [None, 5]),
    (("label_names",), [5, 1.5, True, [1, 2]]),
    (("split_sizes",), [5, [], {"train": "x"}, None]),
    (("num_nodes",), [-1, "x", None, 2**70]),
    (("directed",), ["yes", None]),
    (("partitions",), [5, [], {"4": 5}]),
]


@pytest.mark.parametrize("path,values", MANIFEST_MUTATIONS, ids=lambda x: "/".join(map(str, x))
                         if isinstance(x, tuple) else None)
def test_a_mistyped_manifest_field_is_one_line_in_every_command(store, path, values):
    """A manifest that is valid JSON with a field of the wrong type or range (hand-edited, or
    damaged in a way JSON survives) raised TypeError, ZeroDivisionError, IndexError or MemoryError
    from wherever the field was first used."""
    meta_path = store / "zarr.json"
    good = json.loads(meta_path.read_text())
    for value in values:
        meta = json.loads(json.dumps(good))
        obj = meta["attributes"]["gstore"]
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = value
        meta_path.write_text(json.dumps(meta))
        for argv in (["verify", str(store)], ["info", str(store)],
                     ["sample", str(store), "--batches", "1", "--batch-size", "8", "-q"]):
            r = CliRunner().invoke(main, argv)
            assert r.exception is None or isinstance(r.exception, SystemExit), \
                f"{path}={value!r} {argv[0]}: {type(r.exception).__name__}: {r.exception}"
            assert r.exit_code != 0 or argv[0] != "verify", f"{path}={value!r}: verify passed"


@pytest.mark.parametrize("field,value", [("num_parts", "x"), ("num_parts", None), ("edge_cut", []),
                                         ("balance", None), ("params", 5), ("arrays", None),
                                         ("arrays", {"parts": 5}), ("arrays", {"parts": []}),
                                         ("arrays", {"perm": {}})])
def test_a_mistyped_partition_record_is_one_line(store, field, value):
    """Cluster sampling reads the partition record: a mistyped field raised ValueError/TypeError."""
    from gstore.pipeline.partition.partition import partition_store

    partition_store(store, 4)
    meta_path = store / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["gstore"]["partitions"]["4"][field] = value
    meta_path.write_text(json.dumps(meta))
    r = CliRunner().invoke(main, ["sample", str(store), "--method", "cluster", "--batches", "1", "-q"])
    assert r.exit_code != 0
    assert r.exception is None or isinstance(r.exception, SystemExit), f"{type(r.exception).__name__}: {r.exception}"
    assert "partition" in r.output


def test_a_partition_record_naming_arrays_by_non_strings_is_one_line(store):
    """{'parts': []} in a partition's array names reached the structural checks (unhashable list)."""
    import gstore
    from gstore.errors import StoreError
    from gstore.pipeline.partition.partition import partition_store

    partition_store(store, 4)
    meta_path = store / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["gstore"]["partitions"]["4"]["arrays"]["parts"] = []
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="partition record '4'"):
        gstore.open(store).check_structure()
