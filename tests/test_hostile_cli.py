"""A corpus of hostile inputs through every command, as a user would type them (issue 8, item 4).

Each case must fail with exit code != 0 and ONE error line (no traceback, no Python exception name),
and leave the directory it ran in exactly as it was: no OUT.tmp, no stray scratch, old store unchanged.
Most cases run in process through click's CliRunner (fast); a few run `python -m gstore.cli` as a
subprocess, the way a user meets them.
"""
from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from click.testing import CliRunner

import gstore
from gstore.cli import COMMANDS, main
from gstore.errors import GStoreError
from safety_helpers import DiskFullAfter, tree_digest
from store_factory import build_store, random_graph

LEAKED = re.compile(r"\b(Traceback|OverflowError|RuntimeError|TypeError|ValueError|KeyError|IndexError|"
                    r"AttributeError|AssertionError|_csv\.Error|OSError|\[Errno)\b")
LOG_PREFIXES = ("WARNING ", "INFO ", "DEBUG ")


@dataclass
class Case:
    """argv (relative to the case's directory), how to prepare that directory, how to run it."""

    name: str
    argv: list[str]
    setup: Callable[[Path, pytest.MonkeyPatch], None] = lambda d, mp: None
    subprocess: bool = False
    marks: list = field(default_factory=list)


# ---- directory preparation -----------------------------------------------------------------------
def _edges(d: Path, mp=None) -> None:
    (d / "data").mkdir()
    (d / "data" / "edges.csv").write_text("0,1\n1,2\n2,0\n")


def _store(d: Path, mp=None) -> None:
    _edges(d)
    src, dst = random_graph(60, 200, seed=1)
    build_store(d / "s", src, dst, 60, features=np.ones((60, 3), np.float32), labels=np.arange(60) % 3)


def _binary(d: Path, mp) -> None:
    (d / "junk.csv").write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)))


def _cr_only(d: Path, mp) -> None:
    (d / "cr.csv").write_bytes(b"0,1\r1,2\r2,0\r")


def _read_only_parent(d: Path, mp) -> None:
    _edges(d)
    (d / "ro").mkdir()
    real = os.mkdir

    def mkdir(path, *args, **kwargs):
        if str(d / "ro") in os.fspath(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        return real(path, *args, **kwargs)

    mp.setattr(os, "mkdir", mkdir)


def _full_disk(d: Path, mp) -> None:
    _store(d)
    DiskFullAfter(mp, 1)


def _tmp_is_file(d: Path, mp) -> None:
    _edges(d)
    (d / "s.tmp").write_text("a file of the user's")


def _user_tmp_dir(d: Path, mp) -> None:
    _edges(d)
    (d / "s.tmp").mkdir()
    (d / "s.tmp" / "draft.txt").write_text("mine")


def _non_store_dir(d: Path, mp) -> None:
    _edges(d)
    (d / "photos").mkdir()
    (d / "photos" / "a.jpg").write_bytes(b"\xff\xd8\xff")


def _not_a_store(d: Path, mp) -> None:
    (d / "s").mkdir()
    (d / "s" / "readme.txt").write_text("just a directory")


def _user_partition_scratch(d: Path, mp) -> None:
    _store(d)
    (d / "s" / "_partition_scratch").mkdir()
    (d / "s" / "_partition_scratch" / "notes").write_text("mine")


def _user_store_tmp(d: Path, mp) -> None:
    _store(d)
    from gstore.pipeline.partition.partition import partition_store

    partition_store(d / "s", 2)
    (d / "s.tmp").mkdir()
    (d / "s.tmp" / "notes").write_text("mine")


def _existing_file(d: Path, mp) -> None:
    (d / "e.csv").write_text("precious")


def _user_home(d: Path, mp) -> None:
    (d / "home").mkdir()
    (d / "home" / "taxes.csv").write_text("mine")


def _train_store(d: Path, mp=None) -> None:
    from train_graphs import community_store

    community_store(d / "t", n=120)


def _train_store_and_home(d: Path, mp) -> None:
    _train_store(d)
    _user_home(d, mp)


def _full_disk_from_the_start(d: Path, mp) -> None:
    # propagate commits hop by hop: a disk that fills up in hop 2 keeps hop 1 (reused by the rerun,
    # tests/test_propagate_cli.py); a disk that is full from the first write leaves nothing
    _store(d)
    DiskFullAfter(mp, 0)


def _store_without_features(d: Path, mp=None) -> None:
    src, dst = random_graph(30, 90, seed=2)
    build_store(d / "s", src, dst, 30)


ING = ["ingest", "-q"]
PROP = ["propagate", "-q"]
CASES = [
    Case("ingest-binary-junk", ING + ["junk.csv", "-o", "s"], _binary, subprocess=True),
    Case("ingest-cr-only", ING + ["cr.csv", "-o", "s"], _cr_only),
    Case("ingest-read-only-output", ING + ["data/edges.csv", "-o", "ro/s"], _read_only_parent),
    Case("ingest-full-disk", ING + ["data/edges.csv", "-o", "s", "--force"], _full_disk),
    Case("ingest-tmp-is-a-file", ING + ["data/edges.csv", "-o", "s"], _tmp_is_file, subprocess=True),
    Case("ingest-user-tmp-dir", ING + ["data/edges.csv", "-o", "s"], _user_tmp_dir),
    Case("ingest-output-is-input-dir", ING + ["data/edges.csv", "-o", "data", "--force"], _edges),
    Case("ingest-output-contains-input", ING + ["data/edges.csv", "-o", ".", "--force"], _edges),
    Case("ingest-output-is-input-file", ING + ["data/edges.csv", "-o", "data/edges.csv"], _edges),
    Case("ingest-force-non-store", ING + ["data/edges.csv", "-o", "photos", "--force"], _non_store_dir),
    Case("ingest-missing-input", ING + ["nope.csv", "-o", "s"]),
    Case("sample-device-banana", ["sample", "s", "--device", "banana", "--batches", "1", "-q"], _store),
    Case("sample-huge-fanouts", ["sample", "s", "--fanouts", "99999999999999999999", "--batches", "1", "-q"],
         _store),
    Case("sample-missing-store", ["sample", "nosuch", "-q"]),
    Case("sample-not-a-store", ["sample", "s", "-q"], _not_a_store),
    Case("info-missing-store", ["info", "nosuch"], subprocess=True),
    Case("info-not-a-store", ["info", "s"], _not_a_store),
    Case("partition-missing-store", ["partition", "nosuch", "--parts", "2", "-q"]),
    Case("partition-not-a-store", ["partition", "s", "--parts", "2", "-q"], _not_a_store),
    Case("partition-user-scratch", ["partition", "s", "--parts", "2", "-q"], _user_partition_scratch),
    Case("partition-full-disk", ["partition", "s", "--parts", "2", "-q"], _full_disk),
    Case("reorder-user-tmp-dir", ["partition", "s", "--parts", "2", "--reorder", "-q"], _user_store_tmp),
    Case("reorder-full-disk", ["partition", "s", "--parts", "3", "--reorder", "-q"], _full_disk),
    Case("generate-over-existing-file", ["generate", "rmat", "-s", "4", "-o", "e.csv", "-q"], _existing_file),
    Case("generate-sbm-into-a-file", ["generate", "sbm", "-n", "50", "--communities", "2", "-o", "e.csv", "-q"],
         _existing_file),
    Case("demo-into-a-users-dir", ["demo", "--workdir", "home", "--nodes", "100", "--quiet"], _user_home),
    Case("train-missing-store", ["train", "nosuch", "-o", "run", "-q"]),
    Case("train-no-train-split", ["train", "s", "-o", "run", "-q"], _store),
    Case("train-into-a-users-dir", ["train", "t", "-o", "home", "--epochs", "1", "-q"], _train_store_and_home),
    Case("train-resume-a-users-dir", ["train", "t", "-o", "home", "--resume", "-q"], _train_store_and_home),
    Case("train-cuda-without-gpu", ["train", "t", "-o", "run", "--device", "cuda:7", "-q"], _train_store),
    Case("predict-not-a-run", ["predict", "t", "--run", "home", "-q"], _train_store_and_home),
    Case("train-sgc-zero-hops", ["train", "t", "-o", "run", "--method", "sgc", "--hops", "0", "-q"], _train_store),
    Case("train-sign-with-fanouts", ["train", "t", "-o", "run", "--method", "sign", "--fanouts", "5,5", "-q"],
         _train_store),
    Case("propagate-missing-store", PROP + ["nosuch", "--hops", "2"]),
    Case("propagate-not-a-store", PROP + ["s", "--hops", "2"], _not_a_store),
    Case("propagate-no-features", PROP + ["s", "--hops", "2"], _store_without_features),
    Case("propagate-zero-hops", PROP + ["s", "--hops", "0"], _store),
    Case("propagate-huge-hops", PROP + ["s", "--hops", "99999999999999999999"], _store),
    Case("propagate-bad-budget", PROP + ["s", "--hops", "2", "--memory-budget", "lots"], _store),
    Case("propagate-tiny-budget", PROP + ["s", "--hops", "2", "--memory-budget", "1KiB"], _store),
    Case("propagate-user-scratch", PROP + ["s", "--hops", "2"], _user_partition_scratch),
    Case("propagate-full-disk", PROP + ["s", "--hops", "2"], _full_disk_from_the_start),
]

if "verify" in COMMANDS:          # `gstore verify` lands with the corruption-detection branch
    CASES += [Case("verify-missing-store", ["verify", "nosuch"]),
              Case("verify-not-a-store", ["verify", "s"], _not_a_store)]


def _error_lines(text: str) -> list[str]:
    lines = [ln for ln in text.strip().splitlines() if ln.strip() and not ln.startswith(LOG_PREFIXES)]
    if lines and lines[0].startswith("Usage:"):       # click's usage error: Usage / Try / Error
        lines = [ln for ln in lines if not ln.startswith(("Usage:", "Try "))]
    return lines


def _run(case: Case, d: Path) -> tuple[int, str]:
    if case.subprocess:
        proc = subprocess.run([sys.executable, "-m", "gstore.cli", *case.argv], cwd=d,
                              capture_output=True, text=True, timeout=120)
        return proc.returncode, proc.stderr + proc.stdout
    cwd = os.getcwd()
    os.chdir(d)
    try:
        res = CliRunner().invoke(main, case.argv)
    finally:
        os.chdir(cwd)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        import traceback

        return 1, res.output + "".join(traceback.format_exception(res.exception))
    return res.exit_code, res.output


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name, marks=c.marks) for c in CASES])
def test_hostile_input_fails_in_one_line_and_leaves_nothing(case: Case, tmp_path, monkeypatch):
    d = tmp_path / "work"
    d.mkdir()
    case.setup(d, monkeypatch)
    before = tree_digest(d)
    code, out = _run(case, d)
    monkeypatch.undo()
    assert code != 0, out
    lines = _error_lines(out)
    assert len(lines) == 1 and lines[0].startswith("Error: "), out
    assert not LEAKED.search(out), out
    assert tree_digest(d) == before, "the failed command changed its directory"


def test_the_corpus_covers_every_command():
    covered = {c.argv[0] for c in CASES}
    assert set(COMMANDS) <= covered, set(COMMANDS) - covered


def test_neighbors_of_a_string_id_is_a_clear_error(tmp_path):
    src, dst = random_graph(10, 30, seed=2)
    g = gstore.open(build_store(tmp_path / "s", src, dst, 10))
    with pytest.raises(GStoreError) as e:
        g.neighbors("5")
    assert "\n" not in str(e.value)
