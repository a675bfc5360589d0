"""Node ids are never merged or retyped silently: string ids whose 64-bit hashes collide stop the
build (inside one column of one chunk, across columns, across chunks), and a late non-integer id
in an integer file restarts the build loudly (a WARNING, a summary line with file:line and the
token, the manifest) or, under --id-type int, is a one-line error."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from click.testing import CliRunner

import gstore
from gstore.cli import main
from gstore.errors import InputError
from gstore.pipeline.ingest import id_remap_kernels as K
from gstore.pipeline.ingest import ingest as ingest_mod
from gstore.pipeline.ingest.chunks import EdgeReadOptions
from gstore.pipeline.ingest.ingest import IngestOptions, ingest
from gstore.pipeline.ingest.string_ids import StringIdCollector


def _weak_hash(offsets, utf8, out):
    """A deliberately weak hash: the byte sum, so 'ab' and 'ba' (and 'n12', 'n21') collide."""
    for i in range(len(offsets) - 1):
        out[i] = int(utf8[offsets[i]:offsets[i + 1]].astype(np.int64).sum())


@pytest.fixture
def weak_hash(monkeypatch):
    monkeypatch.setattr(K, "hash_strings", _weak_hash)


def _build(tmp_path, text, **read):
    p = tmp_path / "e.csv"
    p.write_text(text)
    opts = IngestOptions(read=EdgeReadOptions(id_type="string", **read))
    return ingest([p], tmp_path / "s", opts)


@pytest.mark.parametrize("text", [
    "ab,x\nba,y\n",                 # one column of one chunk (merged silently before)
    "ab,ba\n",                      # across the two columns of a chunk
])
def test_colliding_string_ids_stop_the_build(tmp_path, weak_hash, text):
    with pytest.raises(InputError) as info:
        _build(tmp_path, text)
    msg = str(info.value)
    assert "'ab'" in msg and "'ba'" in msg and "same 64-bit hash" in msg
    assert not (tmp_path / "s").exists()


def test_colliding_string_ids_across_chunks(tmp_path, weak_hash, monkeypatch):
    monkeypatch.setattr(ingest_mod, "_MIN_BLOCK_BYTES", 64)   # many tiny chunks
    monkeypatch.setattr(ingest_mod, "_MAX_BLOCK_BYTES", 64)
    chunks = []
    real_add = StringIdCollector.add
    monkeypatch.setattr(StringIdCollector, "add", lambda self, col, keys: (
        chunks.append(col.to_list()), real_add(self, col, keys))[1])
    rows = ["x" * k + ",zz" for k in range(1, 201)]    # byte sums 120k: all distinct
    rows[10] = "n12,zz"
    rows[190] = "n21,zz"                   # 'n12' and 'n21' collide, 180 rows (many chunks) apart
    with pytest.raises(InputError, match="'n12'.*'n21'|'n21'.*'n12'"):
        _build(tmp_path, "\n".join(rows) + "\n")
    # the two ids really came in different chunks (the check at the end caught them)
    assert not any("n12" in c and "n21" in c for c in chunks) and len(chunks) > 10


def test_equal_strings_with_the_weak_hash_still_build(tmp_path, weak_hash):
    """Control: repeats of one string are one node, not a collision."""
    r = _build(tmp_path, "ab,x\nab,y\nx,ab\n")
    assert r.num_nodes == 3 and r.num_edges == 3


def _late_string_file(tmp_path, n=300_000, at=250_000):
    rows = [f"{i},{i + 1}" for i in range(n)]
    rows[at] = "7x,007"
    p = tmp_path / "late.csv"
    p.write_text("\n".join(rows) + "\n")
    return p, at + 1


def test_late_non_integer_id_restart_is_loud(tmp_path, caplog):
    p, line = _late_string_file(tmp_path)
    opts = IngestOptions(read=EdgeReadOptions(), memory_budget=64 << 20)
    with caplog.at_level(logging.WARNING):
        r = ingest([p], tmp_path / "s", opts)
    assert r.id_type == "string"
    warned = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
    assert any(f"late.csv:{line}" in rec.getMessage() and "'7x'" in rec.getMessage()
               for rec in warned), [rec.getMessage() for rec in warned]
    notes = [n for n in r.notes if n.kind == "ids"]
    assert notes and notes[0].line == line and notes[0].path == str(p) and "'7x'" in notes[0].message
    assert "restarted" in notes[0].message
    kept = gstore.open(tmp_path / "s").manifest.build["decisions"]
    assert any(d["kind"] == "ids" and d["line"] == line for d in kept)


def test_non_integer_id_in_the_first_block_after_integers_is_loud(tmp_path, caplog):
    p = tmp_path / "e.csv"
    p.write_text("1,2\n3,4\nfoo,5\n")
    with caplog.at_level(logging.WARNING):
        r = ingest([p], tmp_path / "s", IngestOptions())
    assert r.id_type == "string"
    assert [(n.line, n.kind) for n in r.notes if n.kind == "ids"] == [(3, "ids")]
    assert any("'foo'" in rec.getMessage() for rec in caplog.records)
    # a file of string ids from its first row on is not a "switch"
    q = tmp_path / "s.csv"
    q.write_text("alice,bob\nbob,carol\n")
    r = ingest([q], tmp_path / "s2", IngestOptions())
    assert not [n for n in r.notes if n.kind == "ids"]


def test_cli_prints_the_restart_and_id_type_int_makes_it_an_error(tmp_path):
    p, line = _late_string_file(tmp_path)
    r = CliRunner().invoke(main, ["ingest", str(p), "-o", str(tmp_path / "s"), "-q",
                                  "--memory-budget", "64MiB"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert f"late.csv:{line}: non-integer id '7x' after integer ids" in r.output
    r = CliRunner().invoke(main, ["ingest", str(p), "-o", str(tmp_path / "t"), "-q",
                                  "--id-type", "int"])
    msg = r.output.strip()
    assert r.exit_code == 1 and "\n" not in msg and f"late.csv:{line}:" in msg and "'7x'" in msg
    assert not (tmp_path / "t").exists()
