"""Scratch ownership (gstore/scratch.py): only marked scratch whose owner is gone is ever reclaimed,
by every stage that builds next to or inside a store (StoreBuilder, partition, reorder)."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import gstore
from gstore import scratch
from gstore.builder import StoreBuilder
from gstore.errors import StoreError
from gstore.manifest import StoreManifest, read_manifest
from gstore.pipeline.partition.partition import clean_stale_partition_dirs, partition_store
from gstore.pipeline.partition.reorder import reorder_store
from safety_helpers import mark_as_dead_owner, mark_as_live_owner, tree_digest
from store_factory import build_store, random_graph


def _owner(**changes) -> scratch.ScratchOwner:
    return replace(scratch.ScratchOwner.current(), **changes)


# ---- owner liveness ------------------------------------------------------------------------------
def test_owner_states(sleeper):
    assert scratch.ScratchOwner.current().state() == "self"
    live = _owner(pid=sleeper.pid, start_time=scratch._proc_start_time(sleeper.pid))
    assert live.state() == "alive"
    assert replace(live, start_time=live.start_time + 1).state() == "gone"   # a reused pid
    assert _owner(hostname="elsewhere.example").state() == "elsewhere"
    assert _owner(boot_id="another-boot").state() == "gone"                  # before a reboot
    sleeper.kill()
    sleeper.wait()
    assert live.state() == "gone"


def test_start_time_parsed_after_a_command_name_with_spaces_and_parens():
    fields = " ".join(str(i) for i in range(3, 53))           # field 22 holds "22"
    assert scratch.parse_start_time(f"77 (a) b (c)) {fields}".encode()) == 22
    assert scratch.parse_start_time(b"garbage") is None
    me = scratch.ScratchOwner.current()
    assert me.start_time is not None and me.start_time > 0


def test_marker_round_trip(tmp_path):
    scratch.mark(tmp_path, "store build", "/x/s")
    m = scratch.read_marker(tmp_path)
    assert m.purpose == "store build" and m.target == "/x/s" and m.owner == scratch.ScratchOwner.current()
    assert not (tmp_path / (scratch.MARKER + ".partial")).exists()
    (tmp_path / scratch.MARKER).write_text("{not json")
    assert scratch.read_marker(tmp_path) is None


# ---- reclaim rules -------------------------------------------------------------------------------
def test_reclaim_refuses_what_gstore_did_not_make(tmp_path, sleeper):
    user = tmp_path / "user.tmp"
    user.mkdir()
    (user / "thesis.tex").write_text("years of work")
    with pytest.raises(StoreError, match="not made by gstore") as e:
        scratch.reclaim(user, "temp dir")
    assert str(user) in str(e.value) and "move or rename it" in str(e.value) and "\n" not in str(e.value)
    f = tmp_path / "file.tmp"
    f.write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        scratch.reclaim(f, "temp dir")
    link = tmp_path / "link.tmp"
    link.symlink_to(user)
    with pytest.raises(StoreError, match="is a symlink"):
        scratch.reclaim(link, "temp dir")
    live = tmp_path / "live.tmp"
    live.mkdir()
    mark_as_live_owner(live, sleeper.pid)
    with pytest.raises(StoreError, match=f"another gstore process \\(pid {sleeper.pid}\\)"):
        scratch.reclaim(live, "temp dir")
    assert (user / "thesis.tex").exists() and f.exists() and link.is_symlink() and live.exists()


def test_reclaim_removes_marked_scratch_of_a_gone_owner_and_logs_it(tmp_path, caplog):
    stale = tmp_path / "s.tmp"
    stale.mkdir()
    (stale / "indices").mkdir()
    mark_as_dead_owner(stale, target=str(tmp_path / "s"))
    with caplog.at_level(logging.WARNING, logger="gstore.scratch"):
        scratch.reclaim(stale, "temp dir")
    assert not stale.exists()
    assert "stale store build" in caplog.text and str(stale) in caplog.text
    empty = tmp_path / "e.tmp"                  # killed between mkdir and the marker's rename
    empty.mkdir()
    (empty / (scratch.MARKER + ".partial")).write_text("{")
    scratch.reclaim(empty, "temp dir")
    assert not empty.exists()


def test_remove_deletes_only_scratch_of_this_process(tmp_path, sleeper):
    mine, theirs, unmarked = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    scratch.create(mine, "x", tmp_path)
    theirs.mkdir()
    mark_as_live_owner(theirs, sleeper.pid)
    unmarked.mkdir()
    assert scratch.remove(mine) and not mine.exists()
    assert not scratch.remove(theirs) and theirs.exists()
    assert not scratch.remove(unmarked) and unmarked.exists()


# ---- StoreBuilder --------------------------------------------------------------------------------
def _manifest() -> StoreManifest:
    return StoreManifest(num_nodes=2, num_edges=1, directed=True)


def _tiny(b: StoreBuilder) -> None:
    b.write_array("indptr", np.array([0, 0, 1], dtype=np.int64))
    b.write_array("indices", np.array([0], dtype=np.int32))


def test_temp_dir_is_marked_from_the_start_and_not_in_the_committed_store(tmp_path):
    with StoreBuilder(tmp_path / "s") as b:
        m = scratch.read_marker(b.tmp)
        assert m is not None and m.owner.state() == "self" and m.target == str(tmp_path / "s")
        _tiny(b)
        b.commit(_manifest())
    assert not (tmp_path / "s" / scratch.MARKER).exists()
    assert sorted(os.listdir(tmp_path)) == ["s"]


def test_unmarked_or_live_temp_dir_refused_and_kept(tmp_path, sleeper):
    tmp = tmp_path / "s.tmp"
    tmp.mkdir()
    (tmp / "mine.txt").write_text("keep")
    with pytest.raises(StoreError, match="not made by gstore"):
        StoreBuilder(tmp_path / "s")
    mark_as_live_owner(tmp, sleeper.pid)
    with pytest.raises(StoreError, match=f"pid {sleeper.pid}"):
        StoreBuilder(tmp_path / "s")
    assert (tmp / "mine.txt").read_text() == "keep"


def test_killed_build_leaves_marked_scratch_that_the_next_build_reclaims(tmp_path):
    out = tmp_path / "s"
    code = textwrap.dedent(f"""
        import os, signal, numpy as np
        from gstore.builder import StoreBuilder
        b = StoreBuilder({str(out)!r})
        b.write_array("indptr", np.zeros(3, dtype=np.int64))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    marker = scratch.read_marker(tmp_path / "s.tmp")
    assert marker is not None and marker.owner.state() == "gone"
    with StoreBuilder(out) as b:
        _tiny(b)
        b.commit(_manifest())
    assert gstore.open(out).num_edges == 1 and sorted(os.listdir(tmp_path)) == ["s"]


def test_commit_refuses_a_non_store_that_appeared_during_the_build(tmp_path):
    out = tmp_path / "s"
    with pytest.raises(StoreError):
        with StoreBuilder(out, force=True) as b:
            _tiny(b)
            out.mkdir()
            (out / "notes.txt").write_text("user data")
            b.commit(_manifest())
    assert (out / "notes.txt").read_text() == "user data"
    assert sorted(os.listdir(tmp_path)) == ["s"]


def test_replacing_a_store_leaves_nothing_aside(tmp_path, monkeypatch):
    import gstore.builder as builder_mod

    out = tmp_path / "s"
    for exchange in (True, False):        # renameat2 exchange, and the rename-aside fallback
        if not exchange:
            monkeypatch.setattr(builder_mod, "_exchange", lambda a, b: False)
        with StoreBuilder(out, force=True) as b:
            _tiny(b)
            b.commit(_manifest())
        assert sorted(os.listdir(tmp_path)) == ["s"] and gstore.open(out).num_edges == 1


def test_replaced_store_deleted_even_when_the_disk_has_no_room_for_its_marker(tmp_path, monkeypatch):
    import errno

    import gstore.builder as builder_mod

    real_mark = scratch.mark

    def mark(path, purpose, target):
        if purpose == builder_mod.REPLACED_PURPOSE:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_mark(path, purpose, target)

    monkeypatch.setattr(scratch, "mark", mark)
    out = tmp_path / "s"
    for exchange in (True, True, False):
        if not exchange:
            monkeypatch.setattr(builder_mod, "_exchange", lambda a, b: False)
        with StoreBuilder(out, force=True) as b:
            _tiny(b)
            b.commit(_manifest())
        assert sorted(os.listdir(tmp_path)) == ["s"] and gstore.open(out).num_edges == 1


def test_aside_dir_of_a_killed_swap(tmp_path, caplog):
    out = tmp_path / "s"
    aside = tmp_path / "s.old4242"
    aside.mkdir()
    (aside / "zarr.json").write_text("{}")
    mark_as_dead_owner(aside, purpose="replaced store")
    with caplog.at_level(logging.WARNING):      # no store at `out`: the aside copy may be the only one
        with StoreBuilder(out) as b:
            assert aside.exists() and "rename it back" in caplog.text
            _tiny(b)
            b.commit(_manifest())
    with StoreBuilder(out, force=True) as b:    # `out` is a store now: the aside copy is reclaimed
        assert not aside.exists()
        _tiny(b)
        b.commit(_manifest())
    unmarked = tmp_path / "s.old77"
    unmarked.mkdir()
    with StoreBuilder(out, force=True) as b:
        _tiny(b)
        b.commit(_manifest())
    assert unmarked.exists()


# ---- partition and reorder -----------------------------------------------------------------------
@pytest.fixture
def store(tmp_path) -> Path:
    src, dst = random_graph(200, 900, seed=3)
    return build_store(tmp_path / "s", src, dst, 200)


def test_partition_scratch_of_a_user_or_a_live_process_is_refused(store, sleeper):
    before = tree_digest(store)
    user = store / "_partition_scratch"
    user.mkdir()
    (user / "mine").write_text("x")
    with pytest.raises(StoreError, match="not made by gstore"):
        partition_store(store, 4)
    mark_as_live_owner(user, sleeper.pid, purpose="partition scratch", target=str(store))
    with pytest.raises(StoreError, match=f"another gstore process \\(pid {sleeper.pid}\\)"):
        partition_store(store, 4)
    assert (user / "mine").exists()
    (user / "mine").unlink()
    mark_as_dead_owner(user, purpose="partition scratch")
    partition_store(store, 4)                              # stale and marked: reclaimed
    assert not user.exists()
    assert set(tree_digest(store)) > set(before)


def test_stale_partition_dirs_reclaimed_only_when_marked(store):
    partition_store(store, 4)
    root = store / "partition"
    marked, unmarked = root / "k8", root / "k16"
    for d in (marked, unmarked):
        d.mkdir()
        (d / "parts").mkdir()
    mark_as_dead_owner(marked, purpose="new partition arrays")
    clean_stale_partition_dirs(store, read_manifest(store))
    assert not marked.exists() and (unmarked / "parts").exists()
    assert (root / "k4").exists()                          # the one the manifest names


def test_replaced_partition_and_new_partition_leave_no_markers(store):
    partition_store(store, 4)
    partition_store(store, 4, force=True, seed=1)
    dirs = [p for p in (store / "partition").iterdir() if p.is_dir()]
    assert len(dirs) == 1 and not (dirs[0] / scratch.MARKER).exists()
    assert not (store / "_partition_scratch").exists()


def test_reorder_refuses_an_unmarked_temp_dir_and_keeps_the_store(store):
    partition_store(store, 4)
    before = tree_digest(store)
    user = store.with_name("s.tmp")
    user.mkdir()
    (user / "mine").write_text("x")
    with pytest.raises(StoreError, match="not made by gstore"):
        reorder_store(store, "4")
    assert tree_digest(store) == before and (user / "mine").exists()


def test_leftover_of_this_process_is_reclaimed_but_scratch_in_use_is_not(tmp_path):
    path = tmp_path / "x.tmp"
    scratch.create(path, "store build", tmp_path / "x")
    with pytest.raises(StoreError, match="this process already uses it"):
        scratch.create(path, "store build", tmp_path / "x")
    scratch.release(path)          # as if the step that made it failed without removing it
    scratch.create(path, "store build", tmp_path / "x")
    assert scratch.remove(path) and not path.exists()


def test_reorder_through_a_symlink_is_refused_with_the_real_path(store, tmp_path):
    partition_store(store, 4)
    link = tmp_path / "link"
    link.symlink_to(store)
    before = tree_digest(store)
    with pytest.raises(StoreError, match="symlink") as e:
        reorder_store(link, "4")
    assert str(store) in str(e.value)
    assert tree_digest(store) == before and link.is_symlink()


def test_reorder_is_refused_while_another_process_partitions_the_store(store, sleeper):
    """A reorder rebuilds the store from a snapshot of its manifest and deletes the old directory:
    while another process partitions the store (its _partition_scratch is live), the reorder would
    drop that partition's record and delete its scratch under it. It must be refused instead."""
    partition_store(store, 4)
    live = store / "_partition_scratch"
    live.mkdir()
    mark_as_live_owner(live, sleeper.pid, purpose="partition scratch", target=str(store))
    before = tree_digest(store)
    with pytest.raises(StoreError, match=f"another gstore process \\(pid {sleeper.pid}\\)"):
        reorder_store(store, "4")
    assert tree_digest(store) == before
    assert not store.with_name("s.tmp").exists()
    (live / scratch.MARKER).unlink()
    mark_as_dead_owner(live, purpose="partition scratch")
    reorder_store(store, "4")                      # the owner is gone: reclaimed, and it runs
    assert not live.exists() and gstore.open(store).manifest.partitions["4"]["contiguous"]
