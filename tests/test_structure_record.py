"""The structural check recorded by a build (gstore-checked.json): later processes skip the pass over
the arrays, any change to an array's file makes it count again, a damaged record is ignored, and a
build that fails the check replaces nothing."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import gstore
from gstore import store_invariants as SI
from gstore.builder import StoreBuilder
from gstore.errors import StoreError
from gstore.manifest import StoreManifest
from gstore.pipeline.ingest.ingest import IngestOptions, ingest
from gstore.shard_array import shard_path


@pytest.fixture
def ingested(tmp_path):
    rng = np.random.default_rng(0)
    # 60,000 stored entries: the middle of `indices` lies outside the ends that open checksums
    src, dst = rng.integers(0, 5000, 30000), rng.integers(0, 5000, 30000)
    edges = tmp_path / "e.csv"
    edges.write_text("".join(f"{a},{b}\n" for a, b in zip(src, dst)))
    ingest([edges], tmp_path / "s", IngestOptions(undirected=True))
    return tmp_path / "s"


@pytest.fixture
def reads(monkeypatch):
    """Names of the arrays whose data a structural check reads (the process cache cleared first)."""
    SI.clear_cache()
    seen: list[str] = []
    real = SI.check_rule

    def counting(root, rec, rule):
        seen.append(rec.name)
        return real(root, rec, rule)

    monkeypatch.setattr(SI, "check_rule", counting)
    yield seen
    SI.clear_cache()


def test_a_built_store_is_not_read_again_by_a_new_process(ingested, reads):
    assert (ingested / SI.CHECKED_FILE).exists()
    gstore.open(ingested).csr()                 # a fresh process: empty in-process cache
    assert "indices" not in reads and "indptr" not in reads


def test_a_rewritten_array_is_checked_again_and_its_damage_found(ingested, reads):
    store = gstore.open(ingested)
    n = store.num_nodes
    path = shard_path(ingested / "indices", 1)
    with open(path, "r+b") as f:                 # a node id out of range, written mid-file in place
        f.seek(100_000)
        f.write(np.array([n + 7], dtype=store.indices.dtype).tobytes())
    with pytest.raises(StoreError, match="indices"):
        gstore.open(ingested).csr()
    assert "indices" in reads


def test_the_same_bytes_written_back_still_count_as_a_change(ingested, reads):
    path = shard_path(ingested / "indices", 1)
    raw = path.read_bytes()
    path.write_bytes(raw)                       # a write: ctime moves, identity differs
    gstore.open(ingested).csr()
    assert "indices" in reads


@pytest.mark.parametrize("content", ["not json", "[]", '{"version": 99, "arrays": {}}',
                                     '{"version": 1, "arrays": {"indices": 5}}',
                                     '{"version": 1, "arrays": []}'])
def test_a_damaged_record_is_ignored(ingested, reads, content):
    (ingested / SI.CHECKED_FILE).write_text(content)
    gstore.open(ingested).csr()
    assert "indices" in reads


def test_a_record_for_another_rule_does_not_count(ingested, reads):
    rec_path = ingested / SI.CHECKED_FILE
    d = json.loads(rec_path.read_text())
    d["arrays"]["indices"]["rule"]["hi"] += 1     # checked against a larger node count
    rec_path.write_text(json.dumps(d))
    gstore.open(ingested).csr()
    assert "indices" in reads


def test_readers_never_write_the_record(ingested, reads):
    os.unlink(ingested / SI.CHECKED_FILE)
    before = sorted(os.listdir(ingested))
    gstore.open(ingested).csr()
    assert "indices" in reads and sorted(os.listdir(ingested)) == before


def test_a_build_failing_the_check_replaces_nothing(ingested):
    before = gstore.open(ingested).manifest.num_edges
    with pytest.raises(StoreError, match="indices"):
        with StoreBuilder(ingested, force=True) as b:
            b.write_array("indptr", np.array([0, 2], dtype=np.int64))
            b.write_array("indices", np.array([0, 5], dtype=np.int32))    # node 5 of a 1-node graph
            b.commit(StoreManifest(num_nodes=1, num_edges=2, directed=True))
    assert gstore.open(ingested).manifest.num_edges == before
    assert not ingested.with_name("s.tmp").exists()
