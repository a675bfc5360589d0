"""Full disk and read-only output: a one-line error naming the path, the old store intact, no temp
files left. Simulated (writes fail with ENOSPC after N of them, in process) and real (a small tmpfs,
remounted read-only; skipped where mounting is not permitted)."""
from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gstore.cli import main
from safety_helpers import DiskFullAfter, tree_digest


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    edges = rng.integers(0, 300, (2000, 2))
    edges[:300, 0] = np.arange(300)                       # every node appears: features align
    np.savetxt(d / "e.csv", edges, fmt="%d", delimiter=",")
    np.save(d / "f.npy", rng.random((300, 4)).astype(np.float32))
    big = rng.integers(0, 20000, (60000, 2))
    big[:20000, 0] = np.arange(20000)
    np.savetxt(d / "big.csv", big, fmt="%d", delimiter=",")
    np.save(d / "big.npy", rng.random((20000, 16)).astype(np.float32))
    return {"edges": d / "e.csv", "features": d / "f.npy", "big": d / "big.csv",
            "big_features": d / "big.npy"}


def _run(args: list[str]):
    return CliRunner().invoke(main, args)


def assert_one_line_error(res, *needles: str) -> str:
    assert res.exit_code == 1, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    assert "Traceback" not in res.output
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def leftovers(parent: Path) -> list[str]:
    """Temp and scratch names gstore could leave next to or inside a store."""
    found = []
    for dirpath, dirnames, filenames in os.walk(parent):
        for name in dirnames + filenames:
            if (name.endswith(".tmp") or ".tmp" in name.rsplit("/", 1)[-1] or ".old" in name
                    or name.startswith("_partition_scratch") or name.startswith(".gstore-scratch")
                    or name == "_spill"):
                found.append(os.path.relpath(os.path.join(dirpath, name), parent))
    return found


def _old_store(tmp_path: Path, inputs, *, features: bool = True) -> Path:
    out = tmp_path / "s"
    args = ["ingest", str(inputs["edges"]), "-o", str(out), "-q"]
    res = _run(args + (["--features", str(inputs["features"])] if features else []))
    assert res.exit_code == 0, res.output
    return out


@pytest.mark.parametrize("n_writes", [0, 1, 2, 3])
def test_disk_full_during_ingest_keeps_old_store(tmp_path, inputs, monkeypatch, n_writes):
    out = _old_store(tmp_path, inputs)
    before = tree_digest(out)
    disk = DiskFullAfter(monkeypatch, n_writes)
    res = _run(["ingest", str(inputs["edges"]), "--features", str(inputs["features"]), "-o", str(out),
                "--force", "--undirected", "-q"])
    assert disk.calls > n_writes                        # the fault was hit, at write number n + 1
    assert_one_line_error(res, str(out), "disk full", "free space")
    assert tree_digest(out) == before
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("n_writes", [0, 2, 5])
def test_disk_full_during_reorder_keeps_old_store(tmp_path, inputs, monkeypatch, n_writes):
    out = _old_store(tmp_path, inputs)
    assert _run(["partition", str(out), "--parts", "4", "-q"]).exit_code == 0
    before = tree_digest(out)
    disk = DiskFullAfter(monkeypatch, n_writes)
    res = _run(["partition", str(out), "--parts", "4", "--reorder", "-q"])
    assert disk.calls > n_writes
    assert_one_line_error(res, str(out), "disk full")
    assert tree_digest(out) == before
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("n_writes", [0, 1, 3])
def test_disk_full_during_partition_keeps_store(tmp_path, inputs, monkeypatch, n_writes):
    out = _old_store(tmp_path, inputs)
    before = tree_digest(out)
    disk = DiskFullAfter(monkeypatch, n_writes)
    res = _run(["partition", str(out), "--parts", "4", "-q"])
    assert disk.calls > n_writes
    assert_one_line_error(res, str(out), "disk full")
    assert tree_digest(out) == before
    assert leftovers(tmp_path) == []


def test_simulated_read_only_output(tmp_path, inputs, monkeypatch):
    def read_only_mkdir(path, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))

    monkeypatch.setattr(os, "mkdir", read_only_mkdir)
    out = tmp_path / "ro" / "s"
    res = _run(["ingest", str(inputs["edges"]), "-o", str(out), "-q"])
    assert_one_line_error(res, "read-only", str(tmp_path / "ro"))
    assert not out.exists() and leftovers(tmp_path) == []


# ---- real file systems: a small tmpfs (we run as root here and on CI; skipped where not allowed) ----
def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip() or proc.returncode}")


def _remount(path: Path, opts: str) -> None:
    proc = subprocess.run(["mount", "-o", f"remount,{opts}", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot remount {path} {opts}: {proc.stderr.strip()}")


@pytest.fixture
def tmpfs(tmp_path):
    mnt = tmp_path / "mnt"
    _mount_tmpfs(mnt, "64m")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _shrink_to_used(mnt: Path, spare_kib: int) -> None:
    """Leave only `spare_kib` free on the tmpfs."""
    used = int(subprocess.run(["du", "-sk", str(mnt)], capture_output=True, text=True).stdout.split()[0])
    _remount(mnt, f"size={used + spare_kib}k")


def _gstore(*args: str) -> subprocess.CompletedProcess:
    """Run the CLI in process (the file systems are real; a subprocess would only add start-up time)."""
    res = CliRunner().invoke(main, list(args))
    return subprocess.CompletedProcess(args, res.exit_code, res.output, res.output)


def _assert_cli_one_line(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 1, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_real_full_disk_during_ingest(tmpfs, inputs):
    out = tmpfs / "s"
    assert _gstore("ingest", str(inputs["edges"]), "-o", str(out), "-q").returncode == 0
    before = tree_digest(out)
    _shrink_to_used(tmpfs, 256)
    proc = _gstore("ingest", str(inputs["big"]), "--features", str(inputs["big_features"]), "-o", str(out),
                   "--force", "-q")
    _assert_cli_one_line(proc, str(out), "disk full")
    assert tree_digest(out) == before
    assert sorted(os.listdir(tmpfs)) == ["s"] and leftovers(tmpfs) == []


def test_real_full_disk_during_partition_reorder(tmpfs, inputs):
    out = tmpfs / "s"
    assert _gstore("ingest", str(inputs["big"]), "--features", str(inputs["big_features"]), "-o", str(out),
                   "-q").returncode == 0
    assert _gstore("partition", str(out), "--parts", "4", "-q").returncode == 0
    before = tree_digest(out)
    _shrink_to_used(tmpfs, 512)              # the store fits; a second copy of it does not
    proc = _gstore("partition", str(out), "--parts", "4", "--reorder", "-q")
    _assert_cli_one_line(proc, str(out), "disk full")
    assert tree_digest(out) == before
    assert sorted(os.listdir(tmpfs)) == ["s"] and leftovers(tmpfs) == []


def test_real_read_only_output_and_store(tmpfs, inputs):
    out = tmpfs / "s"
    assert _gstore("ingest", str(inputs["edges"]), "-o", str(out), "-q").returncode == 0
    before = tree_digest(out)
    _remount(tmpfs, "ro")
    try:
        proc = _gstore("ingest", str(inputs["edges"]), "-o", str(tmpfs / "new"), "-q")
        _assert_cli_one_line(proc, str(tmpfs / "new.tmp"), "read-only")
        proc = _gstore("ingest", str(inputs["edges"]), "-o", str(out), "--force", "-q")
        _assert_cli_one_line(proc, "read-only")
        proc = _gstore("partition", str(out), "--parts", "2", "-q")
        _assert_cli_one_line(proc, str(out), "read-only")
        assert tree_digest(out) == before and sorted(os.listdir(tmpfs)) == ["s"]
    finally:
        _remount(tmpfs, "rw")
