"""History snapshots delete only directories they made (the marker rule), and round-trip exactly."""
from __future__ import annotations

import pytest

from gstore.errors import InputError
from gstore.pipeline.history.snapshot import MARKER, prune_snapshots, restore_snapshot, take_snapshot


@pytest.fixture
def files(tmp_path):
    root = tmp_path / "history"
    root.mkdir()
    paths = []
    for i, name in enumerate(["emb_1", "grad_1"]):
        p = root / name
        p.write_bytes(bytes(range(256)) * (i + 3))
        paths.append(p)
    return paths


def test_snapshots_round_trip_and_prune_keeps_only_the_named_one(files, tmp_path):
    ckpt = tmp_path / "checkpoints"
    a = take_snapshot(files, ckpt, "a")
    b = take_snapshot(files, ckpt, "b")
    assert (ckpt / a["dir"] / MARKER).is_file()
    prune_snapshots(ckpt, keep=b["dir"])
    assert not (ckpt / a["dir"]).exists() and (ckpt / b["dir"]).is_dir()
    out = tmp_path / "restored"
    restore_snapshot(b, ckpt, out)
    for p in files:
        assert (out / p.name).read_bytes() == p.read_bytes()


def test_a_same_named_directory_without_the_marker_is_never_deleted(files, tmp_path):
    ckpt = tmp_path / "checkpoints"
    foreign = ckpt / "history-mine"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("user data")
    keep = take_snapshot(files, ckpt, "x")
    prune_snapshots(ckpt, keep=keep["dir"])
    assert (foreign / "notes.txt").read_text() == "user data"
    with pytest.raises(InputError, match="not made by gstore"):
        take_snapshot(files, ckpt, "mine")
    assert (foreign / "notes.txt").read_text() == "user data"
