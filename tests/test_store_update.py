"""The store update transaction (gstore/store_update.py): commit, replace, drop; failures at every
step leave the store as it was and reclaimable; one writer at a time; only marked dirs deleted."""
from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import gstore
from gstore import scratch
from gstore.errors import OptionError, StoreError
from gstore.manifest import read_manifest
from gstore.store_update import StoreUpdate, remove_derived, store_lock
from safety_helpers import DiskFullAfter, mark_as_dead_owner, tree_digest
from store_factory import build_store, random_graph

N = 60


@pytest.fixture
def store(tmp_path) -> Path:
    src, dst = random_graph(N, 240, seed=1)
    return build_store(tmp_path / "s", src, dst, N)


def _emb(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((N, 3)).astype(np.float32)


def _add(store: Path, key: str = "emb", seed: int = 0, **kw) -> None:
    with StoreUpdate(store, f"derived/{key}", purpose="test embeddings", **kw) as up:
        w = up.array_writer("h", (N, 3), np.float32)
        w.write_rows(0, _emb(seed))
        up.add(w.finish())
        up.write_array("pred", np.arange(N, dtype=np.int64) % 4)
        up.commit_derived("embeddings", {"seed": seed})


def _markers(store: Path) -> list[str]:
    return [os.path.relpath(d, store) for d, _, files in os.walk(store) if scratch.MARKER in files]


def test_committed_group_is_visible_after_reopen_and_verifies(store):
    _add(store, seed=3)
    g = gstore.open(store, verify=True)
    d = g.derived("emb")
    assert d.record.kind == "embeddings" and d.record.params == {"seed": 3} and d.record.node_keyed
    np.testing.assert_array_equal(d.arrays["h"], _emb(3))
    np.testing.assert_array_equal(d.arrays["pred"], np.arange(N) % 4)
    assert set(d.record.arrays.values()) == {"derived/emb/h", "derived/emb/pred"}
    assert _markers(store) == [] and not (store / scratch.STORE_LOCK).exists()
    with pytest.raises(StoreError, match="no derived arrays 'nope' \\(it has: emb\\)"):
        g.derived("nope")


def test_replacing_a_group_removes_the_old_dir_and_keeps_others(store):
    from gstore.pipeline.partition.partition import partition_store

    partition_store(store, 4)
    _add(store, seed=1)
    _add(store, "other", seed=2)
    _add(store, seed=5)
    g = gstore.open(store, verify=True)
    assert g.derived("emb").record.arrays["h"] == "derived/emb.1/h"
    assert not (store / "derived/emb").exists()
    np.testing.assert_array_equal(g.derived("emb").arrays["h"], _emb(5))
    np.testing.assert_array_equal(g.derived("other").arrays["h"], _emb(2))
    assert g.partition.num_parts == 4
    _add(store, seed=6)                                    # the freed name is used again
    assert not (store / "derived/emb.1").exists()
    assert gstore.open(store).derived("emb").record.arrays["h"] == "derived/emb/h"
    partition_store(store, 4, force=True, seed=3)          # a partition update keeps derived groups
    assert set(gstore.open(store).manifest.derived) == {"emb", "other"}
    assert _markers(store) == []


def test_remove_drops_the_group_and_an_emptied_root(store):
    before = tree_digest(store)
    _add(store)
    _add(store, "other")
    assert remove_derived(store, "emb")
    assert set(read_manifest(store).derived) == {"other"} and not (store / "derived/emb").exists()
    assert not any(n.startswith("derived/emb/") for n in read_manifest(store).arrays)
    assert not remove_derived(store, "emb")
    assert remove_derived(store, "other")
    assert not (store / "derived").exists()
    after = tree_digest(store)
    assert set(after) == set(before)                       # only the manifest's bytes changed


class FailOnCall:
    """Make `target` (module attribute) raise ENOSPC, path-less as a full disk does, on call `k`."""

    def __init__(self, monkeypatch, target: str, k: int) -> None:
        import importlib

        mod_name, attr = target.rsplit(".", 1)
        mod = importlib.import_module(mod_name)
        real, self.calls = getattr(mod, attr), 0

        def fake(*a, **kw):
            self.calls += 1
            if self.calls == k:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(*a, **kw)

        monkeypatch.setattr(mod, attr, fake)


# every step of an update that touches the disk: data writes, array and group metadata, the
# markers of the new and the replaced dir, fsync, the manifest
STEPS = [("os.pwrite", 1), ("os.pwrite", 2), ("gstore.shard_array.write_json_atomic", 1),
         ("gstore.shard_array.write_json_atomic", 2), ("gstore.scratch.mark", 1), ("gstore.scratch.mark", 2),
         ("gstore.scratch.mark", 3), ("os.fsync", 1), ("os.fsync", 2),
         ("gstore.store_update.write_group_metadata", 1), ("gstore.store_update.write_manifest", 1)]


@pytest.mark.parametrize("target, k", STEPS)
def test_a_failure_at_any_step_leaves_the_store_byte_identical(store, monkeypatch, target, k):
    _add(store, seed=1)                                    # a group to replace: its dir gets marked
    before = tree_digest(store)
    fail = FailOnCall(monkeypatch, target, k)
    with pytest.raises(OSError) as e:
        _add(store, seed=2)
    monkeypatch.undo()
    assert fail.calls >= k and e.value.errno == errno.ENOSPC
    assert str(store) in str(e.value.filename)             # the CLI's one line names the store
    assert tree_digest(store) == before
    np.testing.assert_array_equal(gstore.open(store, verify=True).derived("emb").arrays["h"], _emb(1))


def test_disk_full_in_a_first_update_leaves_no_root_behind(store, monkeypatch):
    before = tree_digest(store)
    DiskFullAfter(monkeypatch, 1)
    with pytest.raises(OSError):
        _add(store)
    assert tree_digest(store) == before and not (store / "derived").exists()


def test_failure_writing_the_manifest_unmarks_the_replaced_dir(store, monkeypatch):
    _add(store, seed=1)
    before = tree_digest(store)

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("gstore.store_update.write_manifest", full)
    with pytest.raises(OSError):
        _add(store, seed=2)
    assert tree_digest(store) == before and _markers(store) == []


def test_an_exception_in_the_block_or_no_commit_rolls_back(store):
    before = tree_digest(store)
    with pytest.raises(ZeroDivisionError):
        with StoreUpdate(store, "derived/emb", purpose="t") as up:
            up.write_array("h", _emb())
            1 / 0
    with StoreUpdate(store, "derived/emb", purpose="t") as up:
        up.array_writer("h", (N, 3), np.float32)           # never finished, never committed
    assert tree_digest(store) == before


def test_an_edit_that_loses_a_record_or_breaks_the_manifest_is_refused(store):
    before = tree_digest(store)
    with pytest.raises(StoreError, match="does not record"):
        with StoreUpdate(store, "derived/emb", purpose="t") as up:
            up.write_array("h", _emb())
            up.commit(lambda m, recs: None)
    with pytest.raises(StoreError, match="malformed manifest"):
        with StoreUpdate(store, "derived/emb", purpose="t") as up:
            up.write_array("h", _emb())

            def edit(m, recs):
                m.arrays.update({r.name: r for r in recs.values()})
                m.partitions["x"] = 5
            up.commit(edit)
    with pytest.raises(OptionError, match="rows"):
        with StoreUpdate(store, "derived/emb", purpose="t") as up:
            up.write_array("h", np.zeros(3))
            up.commit_derived("embeddings")
    assert tree_digest(store) == before


@pytest.mark.parametrize("group", ["splits/x", "derived", "derived/a/b", "derived/..", "indices/x", "derived/"])
def test_groups_outside_the_update_roots_are_refused(store, group):
    with pytest.raises(OptionError, match="must be '<root>/<name>'"):
        StoreUpdate(store, group, purpose="t")


_CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    from gstore.store_update import StoreUpdate
    path, mode = sys.argv[1], sys.argv[2]
    with StoreUpdate(path, "derived/emb", purpose="child") as up:
        up.write_array("h", np.full((%d, 3), 7, dtype=np.float32))
        if mode == "hold":
            print("ready", flush=True)
            time.sleep(60)
        up.commit_derived("embeddings")
""" % N)


def _child(store: Path, mode: str, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(store), mode], stdout=subprocess.PIPE,
                            env=dict(os.environ, **env), text=True)


@pytest.mark.parametrize("point", ["derived:after-write", "derived:before-manifest"])
def test_kill_before_the_switch_leaves_the_old_store_and_reclaimable_scratch(store, point):
    _add(store, seed=1)
    before = tree_digest(store)
    proc = _child(store, "commit", GSTORE_FAULT_AT=point)
    assert proc.wait() == -9
    np.testing.assert_array_equal(gstore.open(store, verify=True).derived("emb").arrays["h"], _emb(1))
    assert _markers(store)                                 # the killed run's scratch, marked
    with StoreUpdate(store, "derived/x", purpose="t"):     # the next update reclaims it (lock too)
        pass
    assert tree_digest(store) == before
    _add(store, seed=2)                                    # and re-running just works
    np.testing.assert_array_equal(gstore.open(store).derived("emb").arrays["h"], _emb(2))


def test_kill_after_the_switch_is_finished_by_the_next_update(store):
    _add(store, seed=1)
    proc = _child(store, "commit", GSTORE_FAULT_AT="derived:after-manifest")
    assert proc.wait() == -9
    g = gstore.open(store, verify=True)
    assert (g.derived("emb").arrays["h"] == 7).all()       # the new group is in
    assert sorted(_markers(store)) == [scratch.STORE_LOCK, "derived/emb", "derived/emb.1"]
    with StoreUpdate(store, "derived/x", purpose="t"):
        pass
    assert _markers(store) == [] and not (store / "derived/emb").exists()
    assert (store / "derived/emb.1/h").is_dir()


def test_a_second_update_is_refused_in_one_line(store):
    proc = _child(store, "hold")
    try:
        assert proc.stdout.readline().strip() == "ready"
        before = tree_digest(store)
        with pytest.raises(StoreError, match=f"another gstore process \\(pid {proc.pid}\\)") as e:
            _add(store)
        assert "\n" not in str(e.value)
        assert tree_digest(store) == before
    finally:
        proc.kill()
        proc.wait()
    _add(store)                                            # its owner is gone: lock and dir reclaimed
    assert _markers(store) == [] and gstore.open(store).derived("emb").record.kind == "embeddings"


def test_a_second_update_in_this_process_is_refused(store):
    with StoreUpdate(store, "derived/a", purpose="t"):
        with pytest.raises(StoreError, match="this process already uses it"):
            StoreUpdate(store, "derived/b", purpose="t").__enter__()
    with store_lock(store) as lock:
        with StoreUpdate(store, "derived/a", purpose="t", lock=lock):
            with pytest.raises(StoreError, match="another update of this store is open"):
                StoreUpdate(store, "derived/b", purpose="t", lock=lock).__enter__()
        _add(store, lock=lock)                             # the lock can carry one update after another
        _add(store, "b", lock=lock)
    assert set(read_manifest(store).derived) == {"emb", "b"}
    with store_lock(store) as lock:
        pass
    with pytest.raises(StoreError, match="not held"):
        StoreUpdate(store, "derived/a", purpose="t", lock=lock).__enter__()


def test_only_marked_dirs_are_ever_deleted(store, caplog):
    mine = store / "derived" / "emb"
    mine.mkdir(parents=True)
    (mine / "notes").write_text("mine")
    stale = store / "derived" / "old"
    stale.mkdir()
    mark_as_dead_owner(stale, purpose="new store arrays")
    with caplog.at_level(logging.WARNING):
        _add(store, seed=1)                               # takes emb.1: 'emb' is the user's
    assert (mine / "notes").read_text() == "mine" and not stale.exists()
    assert "not marked as gstore scratch" in caplog.text
    _add(store, seed=2)                                   # replaces emb.1 with emb.2, still not 'emb'
    assert remove_derived(store, "emb")
    assert (mine / "notes").read_text() == "mine"
    assert sorted(os.listdir(store / "derived")) == ["emb", "zarr.json"]


def test_a_replaced_dir_that_became_a_symlink_is_not_followed(store, tmp_path):
    _add(store, seed=1)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    os.rename(store / "derived/emb", tmp_path / "moved")
    (store / "derived/emb").symlink_to(outside)
    with pytest.raises(StoreError):
        gstore.open(store)                                # the named arrays are gone
    m = read_manifest(store)
    with StoreUpdate(store, "derived/emb", purpose="t") as up:
        assert up._dropped_dirs(type(m).from_json({**m.to_json(), "derived": {}, "arrays": {
            k: v.to_json() for k, v in m.arrays.items() if not k.startswith("derived/")}})) == []
    assert (outside / "keep").exists()


def test_a_symlinked_root_is_refused(store, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (store / "derived").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StoreError, match="symlink"):
        _add(store)
    assert os.listdir(tmp_path / "elsewhere") == []


# ---- the manifest's derived records --------------------------------------------------------------
def _edit_manifest(store: Path, fn) -> None:
    meta = json.loads((store / "zarr.json").read_text())
    fn(meta["attributes"]["gstore"])
    (store / "zarr.json").write_text(json.dumps(meta))


def test_a_manifest_without_derived_still_reads(store):
    _edit_manifest(store, lambda m: m.pop("derived", None))
    assert read_manifest(store).derived == {}
    _add(store)
    assert "emb" in read_manifest(store).derived


@pytest.mark.parametrize("damage, needle", [
    (lambda d: d.__setitem__("derived", []), "derived must be an object"),
    (lambda d: d["derived"]["emb"].__setitem__("color", 1), "unknown fields \\['color'\\]"),
    (lambda d: d["derived"]["emb"].__setitem__("kind", 3), "kind must be"),
    (lambda d: d["derived"]["emb"].__setitem__("arrays", {"h": 5}), "arrays must map"),
    (lambda d: d["derived"]["emb"].__setitem__("node_keyed", "yes"), "node_keyed"),
    (lambda d: d["derived"]["emb"].__setitem__("params", [1]), "params must be"),
    (lambda d: d["derived"]["emb"]["arrays"].__setitem__("x", "derived/none"), "does not record"),
    (lambda d: d["derived"].__setitem__("../x", d["derived"]["emb"]), "not a plain name"),
    (lambda d: d["arrays"]["derived/emb/pred"].update(shape=[N - 1], data_bytes=(N - 1) * 8,
                                                       chunk_rows=N - 1), "rows, not one per node"),
])
def test_a_damaged_derived_record_is_a_one_line_store_error(store, damage, needle):
    _add(store)
    _edit_manifest(store, damage)
    with pytest.raises(StoreError, match=needle) as e:
        read_manifest(store)
    assert "malformed manifest" in str(e.value) and "\n" not in str(e.value)


def test_reorder_drops_node_keyed_groups_and_keeps_the_others(store, caplog):
    from gstore.pipeline.partition.partition import partition_store

    partition_store(store, 4)
    _add(store)
    with StoreUpdate(store, "derived/hist", purpose="t") as up:
        up.write_array("loss", np.arange(N, dtype=np.float32))   # N rows by chance, not per node
        up.commit_derived("history", node_keyed=False)
    with caplog.at_level(logging.WARNING):
        partition_store(store, 4, reorder=True)
    assert "drops the derived arrays 'emb'" in caplog.text
    g = gstore.open(store, verify=True)
    assert set(g.manifest.derived) == {"hist"} and not (store / "derived/emb").exists()
    np.testing.assert_array_equal(g.derived("hist").arrays["loss"], np.arange(N))
    assert not any(n.startswith("derived/emb") for n in g.manifest.arrays)


@pytest.mark.parametrize("meta", ['{"zarr_format": 3, "node_type": "group", "attributes": {"mine": 1}}',
                                  "not json"])
def test_an_emptied_root_whose_zarr_json_gstore_did_not_write_is_kept(store, meta):
    """The derived/ root is removed with its last group only when its zarr.json is the empty group
    metadata gstore writes (it used to delete any zarr.json there)."""
    _add(store)
    (store / "derived/zarr.json").write_text(meta)
    assert remove_derived(store, "emb")
    assert (store / "derived/zarr.json").read_text() == meta
