"""Garbled or forged scratch markers (gstore/scratch.py): a marker that does not parse to exactly the
fields gstore writes is no marker at all, so the directory is refused (never a traceback, and never
deleted as 'stale' on the word of a nonsense pid)."""
from __future__ import annotations

import json
import os
import socket

import pytest

from gstore import scratch
from gstore.errors import StoreError

HOST = socket.gethostname()


def _valid(**changes) -> dict:
    d = {"gstore_scratch": 1, "purpose": "store build", "target": "/x", "pid": 4242,
         "start_time": 17, "boot_id": "b", "hostname": HOST, "created": 0.0}
    d.update(changes)
    return d


GARBLED = [
    "[1]", '"text"', "null", "3", "{",
    json.dumps(_valid(pid=1e400)) .replace("Infinity", "1e400"),
    json.dumps(_valid(pid="12")),
    json.dumps(_valid(pid=-1)),
    json.dumps(_valid(pid=0)),
    json.dumps(_valid(pid=True)),
    json.dumps(_valid(pid=2**80)),
    json.dumps(_valid(start_time="abc")),
    json.dumps(_valid(start_time=1.5)),
    json.dumps(_valid(hostname=["x"])),
    json.dumps(_valid(purpose={})),
    json.dumps(_valid(boot_id=7)),
    json.dumps(_valid(created="yesterday")),
]


@pytest.mark.parametrize("text", GARBLED)
def test_a_garbled_marker_is_no_marker(tmp_path, text):
    d = tmp_path / "out.tmp"
    d.mkdir()
    (d / "mine.txt").write_text("keep")
    (d / scratch.MARKER).write_text(text)
    assert scratch.read_marker(d) is None
    with pytest.raises(StoreError, match="not made by gstore"):
        scratch.reclaim(d, "temp dir")
    assert (d / "mine.txt").read_text() == "keep"


def test_a_well_formed_marker_of_a_gone_owner_is_still_reclaimed(tmp_path):
    d = tmp_path / "out.tmp"
    d.mkdir()
    me = scratch.ScratchOwner.current()
    (d / scratch.MARKER).write_text(json.dumps(_valid(pid=os.getpid(), boot_id=me.boot_id,
                                                      start_time=(me.start_time or 0) + 1)))
    assert scratch.read_marker(d) is not None
    scratch.reclaim(d, "temp dir")
    assert not d.exists()
