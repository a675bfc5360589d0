"""Text inputs that are not plain UTF-8 with \\n line ends: a UTF-8 BOM is dropped before detection
(edges, node tables, feature tables; plain and compressed), UTF-16/32, binary junk, archives and
CR-only line ends are refused with one line that says what was found."""
from __future__ import annotations

import os

import numpy as np
import pytest
from click.testing import CliRunner

from gstore.cli import main
from gstore.errors import InputError
from gstore.pipeline.ingest.node_tables import iter_feature_chunks, iter_node_chunks

from ingest_inputs import cat_ids, edges_of, error_of, lines, read_all, ref_edges

BOM = b"\xef\xbb\xbf"


def _write(path, data: bytes, codec: str | None):
    import bz2
    import gzip

    import pyarrow as pa

    if codec == "gzip":
        data = gzip.compress(data)
    elif codec == "bz2":
        data = bz2.compress(data)
    elif codec == "zstd":
        with pa.CompressedOutputStream(str(path), "zstd") as out:
            out.write(data)
        return path
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("codec", [None, "gzip", "bz2", "zstd"])
@pytest.mark.parametrize("block", [7, 1 << 20])
def test_utf8_bom_is_dropped_before_detection(tmp_path, codec, block):
    e = np.abs(ref_edges(40))
    # headerless: the first edge must not become a "header"
    p = _write(tmp_path / "plain.csv", BOM + ("\n".join(lines(e)) + "\n").encode(), codec)
    np.testing.assert_array_equal(edges_of(read_all([p], block_bytes=block)), e)
    # with a header: the first column name has no BOM glued to it
    q = _write(tmp_path / "head.csv", BOM + ("src,dst\n" + "\n".join(lines(e)) + "\n").encode(), codec)
    chunks = read_all([q], columns=("src", "dst"), block_bytes=block)
    np.testing.assert_array_equal(edges_of(chunks), e)
    assert chunks[0].first_line == 2
    # string ids: the first id is the plain string
    r = _write(tmp_path / "s.csv", BOM + b"alice,bob\nbob,carol\n", codec)
    assert cat_ids([c.src for c in read_all([r], block_bytes=block)]) == ["alice", "bob"]


def test_utf8_bom_in_node_and_feature_tables(tmp_path):
    p = tmp_path / "nodes.csv"
    p.write_bytes(BOM + b"id,label\n5,a\n7,b\n")
    chunks = list(iter_node_chunks(p, "int"))
    assert chunks[0].ids.tolist() == [5, 7] and chunks[0].labels.tolist() == ["a", "b"]
    q = tmp_path / "f.csv"
    q.write_bytes(BOM + b"id,x,y\n5,0.5,1\n7,2,3\n")
    got = list(iter_feature_chunks(q, "int", 100))
    np.testing.assert_array_equal(got[0].values, [[0.5, 1], [2, 3]])


@pytest.mark.parametrize("enc,what", [("utf-16", "UTF-16 LE"), ("utf-16-be", "UTF-16BE"),
                                      ("utf-16-le", "UTF-16LE"), ("utf-32", "UTF-32 LE")])
def test_utf16_and_utf32_are_refused(tmp_path, enc, what):
    text = "src,dst\n1,2\n3,4\n"
    data = text.encode(enc)
    if enc == "utf-16-be":
        data = b"\xfe\xff" + data     # with a BE byte-order mark
        what = "UTF-16 BE"
    p = tmp_path / "u.csv"
    p.write_bytes(data)
    err = error_of([p])
    assert what in str(err) and "UTF-8" in str(err) and err.path == str(p), str(err)
    assert "\n" not in str(err)
    with pytest.raises(InputError, match="UTF-8"):
        list(iter_node_chunks(p, "int"))


def test_binary_junk_is_refused_with_its_offset(tmp_path):
    rng = np.random.default_rng(0)
    junk = bytearray(b"1,2\n3,4\n" + rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    p = tmp_path / "junk.csv"
    p.write_bytes(bytes(junk))
    err = error_of([p])
    assert f"binary data at byte {junk.index(0)}" in str(err)
    # high bytes and control bytes but no NUL: still binary, never a csv traceback
    nonul = bytes(b % 255 + 1 for b in junk)
    p.write_bytes(nonul)
    assert "binary data at byte" in str(error_of([p]))
    # quotes and stray CRs around binary bytes (what made csv raise _csv.Error)
    p.write_bytes(b'"a\rb",1\n' * 3 + b"\x00\x01" * 50)
    assert "binary data" in str(error_of([p]))
    p.write_bytes(b"PK\x03\x04" + bytes(40))
    assert "zip archive" in str(error_of([p]))


def test_stray_cr_inside_quotes_is_a_bad_line_not_a_traceback(tmp_path):
    body = "\n".join(lines(np.abs(ref_edges(30))))
    p = tmp_path / "q.csv"
    p.write_bytes(('"1\r2",3\n' + body + "\n").encode())
    err = error_of([p], id_type="int", header=False)
    assert err.line == 1 and "not an integer" in str(err)


def test_cr_only_line_ends_are_refused(tmp_path):
    e = np.abs(ref_edges(20))
    p = tmp_path / "mac.csv"
    p.write_bytes(("\r".join(lines(e)) + "\r").encode())
    err = error_of([p])
    assert "CR only" in str(err) and "tr '\\r' '\\n'" in str(err)
    # CRLF is fine
    p.write_bytes(("\r\n".join(lines(e)) + "\r\n").encode())
    np.testing.assert_array_equal(edges_of(read_all([p])), e)


URANDOM = np.random.default_rng(1).integers(0, 256, 20000, dtype=np.uint8).tobytes()


@pytest.mark.parametrize("data", [
    URANDOM,                        # what raised _csv.Error before
    b"\xff\xfe" + "1,2\n".encode("utf-16-le"),
    b"\x00\x01\x02garbage\xff" * 100,
    b"1,2\r3,4\r5,6\r",
    b"\xfd7zXZ\x00\x00" + bytes(30),
], ids=["urandom", "utf16", "controls", "cr-only", "xz"])
def test_cli_one_line_error_no_traceback_nothing_left(tmp_path, data):
    p = tmp_path / "bad.csv"
    p.write_bytes(data)
    out = tmp_path / "store"
    r = CliRunner().invoke(main, ["ingest", str(p), "-o", str(out), "-q"])
    assert r.exit_code == 1 and r.exception is None or isinstance(r.exception, SystemExit)
    msg = r.output.strip()
    assert msg.startswith("Error:") and "\n" not in msg and "Traceback" not in msg, msg
    assert not out.exists() and not os.path.exists(str(out) + ".tmp")


@pytest.mark.parametrize("block", [4096, 1 << 20])
def test_nul_past_the_sample_is_binary_not_a_string_id(tmp_path, block):
    rows = [f"n{i},n{i + 1}" for i in range(20000)]      # > 64 KiB: past the checked sample
    rows[15000] = "n1,\x00\x00junk"
    p = tmp_path / "e.csv"
    p.write_text("\n".join(rows) + "\n")
    err = error_of([p], block_bytes=block)
    assert err.line == 15001 and "binary data" in str(err), str(err)


def test_cli_bom_everywhere(tmp_path):
    """Edges (gzip), a headerless --nodes table, --labels and a feature table, all with BOMs."""
    import gzip

    import gstore

    (tmp_path / "e.csv.gz").write_bytes(gzip.compress(BOM + b"5,7\n7,9\n"))
    (tmp_path / "n.csv").write_bytes(BOM + b"5\n7\n9\n11\n")
    (tmp_path / "l.csv").write_bytes(BOM + b"5,x\n7,y\n9,x\n11,y\n")
    (tmp_path / "f.csv").write_bytes(BOM + b"id,a\n5,0.5\n7,1\n9,2\n11,3\n")
    out = tmp_path / "s"
    r = CliRunner().invoke(main, ["ingest", str(tmp_path / "e.csv.gz"), "-o", str(out), "-q",
                                  "--nodes", str(tmp_path / "n.csv"), "--labels",
                                  str(tmp_path / "l.csv"), "--features", str(tmp_path / "f.csv")],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    g = gstore.open(out)
    assert g.num_nodes == 4 and g.num_edges == 2
    assert g.manifest.label_names == ["x", "y"]
    np.testing.assert_allclose(np.asarray(g.features).ravel(), [0.5, 1, 2, 3])
    # every text table's header decision is reported and kept
    kept = {d["path"].rsplit("/", 1)[-1]: d["message"] for d in g.manifest.build["decisions"]}
    assert kept == {"e.csv.gz": "first row read as data: '5,7'; pass --header if it is a header",
                    "n.csv": "first row read as data: '5'; pass --header if it is a header",
                    "l.csv": "first row read as data: '5,x'; pass --header if it is a header",
                    "f.csv": "header: detected (id,a)"}
    assert "f.csv:1: header: detected (id,a)" in r.output


def test_latin1_text_is_not_binary(tmp_path):
    """Accented Latin-1 names are a per-line UTF-8 error (with the line), not 'binary data'."""
    rows = ["Zürich,Genève", "Köln,Düsseldorf", "Málaga,Sevilla"] * 30
    p = tmp_path / "latin1.csv"
    p.write_bytes(("\n".join(rows) + "\n").encode("latin-1"))
    err = error_of([p], id_type="string")
    assert "UTF-8" in err.message and err.line == 1 and "binary" not in err.message, str(err)
