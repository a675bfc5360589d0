"""Two gstore processes writing one store: every writer of a store takes the same lock (the marked
`STORE/_partition_scratch`) or is refused while another holds it, so one run never swaps the store
out from under another's write (found by a hostile test: a `partition -k 4` that ran while
`partition -k 8 --reorder` rebuilt the store reported success and its partition was silently lost)."""
from __future__ import annotations

from pathlib import Path

import pytest

from gstore import scratch
from gstore.builder import StoreBuilder
from gstore.errors import StoreError
from gstore.manifest import read_manifest
from gstore.pipeline.partition.partition import partition_store
from gstore.pipeline.partition.reorder import reorder_store
from safety_helpers import mark_as_live_owner, tree_digest
from store_factory import build_store, random_graph


@pytest.fixture
def store(tmp_path) -> Path:
    src, dst = random_graph(120, 500, seed=5)
    s = build_store(tmp_path / "s", src, dst, 120)
    partition_store(s, 4)
    return s


def _live_partition(store: Path, pid: int) -> Path:
    """`store` as a `gstore partition` run by the live process `pid` leaves it mid-way."""
    lock = store / "_partition_scratch"
    lock.mkdir()
    mark_as_live_owner(lock, pid, purpose="partition scratch", target=str(store))
    return lock


def test_reorder_refused_while_another_process_partitions_the_store(store, sleeper):
    _live_partition(store, sleeper.pid)
    before = tree_digest(store)
    with pytest.raises(StoreError, match=f"another gstore process \\(pid {sleeper.pid}\\)"):
        reorder_store(store, "4")
    assert tree_digest(store) == before
    assert not store.with_name("s.tmp").exists()


def test_force_rebuild_refused_while_another_process_partitions_the_store(store, sleeper):
    _live_partition(store, sleeper.pid)
    before = tree_digest(store)
    with pytest.raises(StoreError, match=f"pid {sleeper.pid}"):
        StoreBuilder(store, force=True)
    assert tree_digest(store) == before
    assert not store.with_name("s.tmp").exists()


def test_partition_refused_while_another_process_rebuilds_the_store(store, sleeper):
    tmp = store.with_name("s.tmp")          # a reorder (or ingest --force) of `store` in progress
    tmp.mkdir()
    mark_as_live_owner(tmp, sleeper.pid, purpose="store build", target=str(store))
    before = tree_digest(store)
    with pytest.raises(StoreError, match=f"pid {sleeper.pid}"):
        partition_store(store, 8)
    assert tree_digest(store) == before
    assert "8" not in read_manifest(store).partitions


def test_reorder_releases_its_lock(store):
    """The lock taken by a reorder lives in the store it replaces: after the swap, a later step of
    the same process (a notebook) must not find it still 'in use'."""
    reorder_store(store, "4")
    partition_store(store, 8)
    reorder_store(store, "8")
    assert not (store / "_partition_scratch").exists()
    assert not [p for p in scratch._ACTIVE if p.startswith(str(store.parent))]
