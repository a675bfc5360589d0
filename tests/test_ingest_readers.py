"""Edge-list readers: every input format against numpy reference arrays (also across block
boundaries), option overrides, string ids, weights, bad inputs with exact line numbers, skip mode
and the auto -> string id switch. Node tables and features: tests/test_ingest_node_tables.py."""
from __future__ import annotations

import bz2
import gzip
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gstore.errors import InputError, OptionError
from gstore.pipeline.ingest.arrow_columns import string_column_from_arrow
from gstore.pipeline.ingest.chunks import (EdgeReadOptions, NonIntegerIds, ReadStats,
                                           StringColumn)
from gstore.pipeline.ingest.edge_reader import iter_edge_chunks, total_input_bytes
from gstore.pipeline.ingest.text_format import detect_text_format

TINY = 37  # bytes per block: forces many block boundaries (and lines longer than a block)


def ref_edges(n: int = 300, seed: int = 0, lo: int = -5, hi: int = 10**12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(lo, hi, size=(n, 2), dtype=np.int64)


def lines(e: np.ndarray, sep: str = ",", weights: np.ndarray | None = None) -> list[str]:
    if weights is None:
        return [f"{a}{sep}{b}" for a, b in e]
    return [f"{a}{sep}{b}{sep}{w!r}" for (a, b), w in zip(e, weights)]


def write(path: Path, text: str, compress: str | None = None) -> Path:
    data = text.encode()
    if compress == "gzip":
        data = gzip.compress(data)
    elif compress == "bz2":
        data = bz2.compress(data)
    elif compress == "zstd":
        with pa.CompressedOutputStream(str(path), "zstd") as out:
            out.write(data)
        return path
    path.write_bytes(data)
    return path


def read_all(paths, stats: ReadStats | None = None, **kw):
    chunks = list(iter_edge_chunks([str(p) for p in paths], EdgeReadOptions(**kw), stats))
    return chunks


def cat_ids(cols) -> np.ndarray | list[str]:
    if cols and isinstance(cols[0], StringColumn):
        return [s for c in cols for s in c.to_list()]
    return np.concatenate(cols) if cols else np.zeros(0, np.int64)


def edges_of(chunks) -> np.ndarray:
    return np.stack([cat_ids([c.src for c in chunks]), cat_ids([c.dst for c in chunks])], 1)


def error_of(paths, **kw) -> InputError:
    with pytest.raises(InputError) as info:
        read_all(paths, **kw)
    return info.value


# ------------------------------------------------------------------------------ formats / layout

TEXT_LAYOUTS = {
    "csv_header": lambda e: "src,dst\n" + "\n".join(lines(e)) + "\n",
    "csv_plain": lambda e: "\n".join(lines(e)) + "\n",
    "csv_no_final_newline": lambda e: "\n".join(lines(e)),
    "csv_crlf": lambda e: "source,target\r\n" + "\r\n".join(lines(e)) + "\r\n",
    "tsv": lambda e: "\n".join(lines(e, "\t")) + "\n",
    "tsv_header": lambda e: "from\tto\n" + "\n".join(lines(e, "\t")) + "\n",
    "space": lambda e: "\n".join(lines(e, " ")) + "\n",
    "space_runs": lambda e: "\n".join("  " + ln.replace(" ", "   ") + " " for ln in lines(e, " ")),
    "semicolon": lambda e: "\n".join(lines(e, ";")) + "\n",
    "snap": lambda e: ("# Directed graph: x.txt\n# Nodes: 5 Edges: 9\n# FromNodeId\tToNodeId\n"
                       + "\n".join(lines(e, "\t")) + "\n"),
    "percent": lambda e: "% konect out.x\n% 9 5 5\n" + "\n".join(lines(e, " ")) + "\n",
    "matrix_market": lambda e: ("%%MatrixMarket matrix coordinate pattern general\n% c\n"
                                f"10 10 {len(e)}\n" + "\n".join(lines(e, " ")) + "\n"),
    "comments_inside": lambda e: ("# head\n" + "\n".join(lines(e[:100])) + "\n# middle\n\n"
                                  + "\n".join(lines(e[100:])) + "\n# tail\n"),
    "blank_lines": lambda e: "\n\n" + "\n\n".join(lines(e)) + "\n\n",
}


@pytest.mark.parametrize("layout", sorted(TEXT_LAYOUTS))
@pytest.mark.parametrize("block", [TINY, 1000, 64 << 20])
def test_text_layouts_match_reference(tmp_path, layout, block):
    e = ref_edges()
    p = write(tmp_path / "e.txt", TEXT_LAYOUTS[layout](e))
    chunks = read_all([p], block_bytes=block)
    np.testing.assert_array_equal(edges_of(chunks), e)
    assert all(c.src.dtype == np.int64 for c in chunks)
    assert chunks[-1].bytes_done == p.stat().st_size


@pytest.mark.parametrize("codec", ["gzip", "bz2", "zstd"])
@pytest.mark.parametrize("suffix", [".gz", ".txt"])   # detection by magic bytes, not extension
def test_compressed_text(tmp_path, codec, suffix):
    e = ref_edges(500)
    p = write(tmp_path / f"e{suffix}", "# c\n" + "\n".join(lines(e, "\t")) + "\n", codec)
    chunks = read_all([p], block_bytes=512)
    np.testing.assert_array_equal(edges_of(chunks), e)
    done = [c.bytes_done for c in chunks]
    assert done == sorted(done) and done[-1] == p.stat().st_size


def test_parquet_npy_and_multiple_files(tmp_path):
    e = ref_edges(1000)
    pq.write_table(pa.table({"a": e[:250, 0], "b": e[:250, 1]}), tmp_path / "p.parquet",
                   row_group_size=60)
    np.save(tmp_path / "n.npy", e[250:500].astype(np.int32) if np.abs(e[250:500]).max() < 2**31
            else e[250:500])
    write(tmp_path / "c.csv.gz", "\n".join(lines(e[500:800])) + "\n", "gzip")
    write(tmp_path / "d.tsv", "src\tdst\n" + "\n".join(lines(e[800:], "\t")) + "\n")
    paths = [tmp_path / n for n in ("p.parquet", "n.npy", "c.csv.gz", "d.tsv")]
    chunks = read_all(paths, block_bytes=TINY * 10)
    np.testing.assert_array_equal(edges_of(chunks), e)
    assert [c.path for c in chunks][0].endswith("p.parquet")
    assert total_input_bytes(paths) == sum(p.stat().st_size for p in paths)
    npy_chunks = [c for c in chunks if c.path.endswith(".npy")]
    assert npy_chunks[0].first_line == 1 and npy_chunks[-1].bytes_done == paths[1].stat().st_size


def test_npy_int32_and_uint(tmp_path):
    e = np.abs(ref_edges(100, hi=2**31 - 1))
    for dt in (np.int32, np.uint32, np.uint64, np.int16):
        arr = (e % min(np.iinfo(dt).max, 2**31 - 1)).astype(dt)
        np.save(tmp_path / "e.npy", arr)
        np.testing.assert_array_equal(edges_of(read_all([tmp_path / "e.npy"], block_bytes=64)),
                                      arr.astype(np.int64))


def test_first_line_numbers(tmp_path):
    e = ref_edges(50)
    p = write(tmp_path / "e.txt", "# a\n# b\nsrc,dst\n" + "\n".join(lines(e)) + "\n")
    chunks = read_all([p], block_bytes=TINY)
    assert chunks[0].first_line == 4
    body = p.read_text().split("\n")
    for c in chunks:   # a chunk's first row sits on its first_line
        assert body[c.first_line - 1] == f"{c.src[0]},{c.dst[0]}"


# ------------------------------------------------------------------------------------- overrides

def test_columns_by_name_and_position_extra_columns_ignored(tmp_path):
    e = ref_edges(80)
    rows = [f"x{i},{b},{i * 0.5},{a}" for i, (a, b) in enumerate(e)]
    p = write(tmp_path / "e.csv", "name,to,w,from\n" + "\n".join(rows) + "\n")
    by_name = read_all([p], columns=("from", "to"), block_bytes=TINY)
    by_pos = read_all([p], columns=(3, 1), block_bytes=TINY)
    by_str_pos = read_all([p], columns=("3", "1"))
    for chunks in (by_name, by_pos, by_str_pos):
        np.testing.assert_array_equal(edges_of(chunks), e)
    weighted = read_all([p], columns=("from", "to"), weight_col="w", block_bytes=TINY)
    w = np.concatenate([c.weight for c in weighted])
    assert w.dtype == np.float32
    np.testing.assert_array_equal(w, np.arange(80, dtype=np.float32) * 0.5)
    assert np.concatenate([c.weight for c in read_all([p], columns=(3, 1), weight_col=2)]).size == 80


def test_header_and_delimiter_overrides(tmp_path):
    e = np.abs(ref_edges(30))
    p = write(tmp_path / "e.txt", "\n".join(lines(e, "|")) + "\n")
    # forcing a header drops the first (numeric) row
    np.testing.assert_array_equal(edges_of(read_all([p], header=True)), e[1:])
    np.testing.assert_array_equal(edges_of(read_all([p], header=False, delimiter="|")), e)
    # a row of names read as data under --no-header is a non-integer id
    q = write(tmp_path / "h.csv", "src,dst\n" + "\n".join(lines(e)) + "\n")
    err = error_of([q], header=False, id_type="int")
    assert err.line == 1 and "not an integer" in str(err)
    # explicit comment char: '#' rows become data when comment='' is given
    r = write(tmp_path / "c.txt", "\n".join(lines(e, " ")) + "\n")
    np.testing.assert_array_equal(edges_of(read_all([r], delimiter=" ", comment="")), e)
    # '\t' spelled as an escape
    t = write(tmp_path / "t.txt", "\n".join(lines(e, "\t")) + "\n")
    np.testing.assert_array_equal(edges_of(read_all([t], delimiter="\\t")), e)


def test_detection_rules():
    det = detect_text_format("x", b"# c\n1 2\n3 4\n")
    assert (det.delimiter, det.comment, det.header, det.num_columns) == (" ", "#", False, 2)
    det = detect_text_format("x", b"source,target,weight\n1,2,0.5\n")
    assert det.header and det.names == ["source", "target", "weight"] and det.data_line == 2
    det = detect_text_format("x", b"alice,bob\nbob,carol\n")
    assert not det.header and det.delimiter == ","
    det = detect_text_format("x", b"node_a\tnode_b\n1\t2\n")
    assert det.header and det.delimiter == "\t"
    det = detect_text_format("x", b'"a,b",c\n"d,e",f\n')
    assert det.delimiter == "," and det.num_columns == 2
    with pytest.raises(InputError, match="delimiter"):
        detect_text_format("x", b"12\n13\n")


# ------------------------------------------------------------------------------------ string ids

def test_string_ids_and_forced_string(tmp_path):
    names = [f"user_{i}" if i % 3 else f"{i}" for i in range(200)]
    rng = np.random.default_rng(3)
    pairs = rng.integers(0, 200, (400, 2))
    text = "src,dst\n" + "\n".join(f"{names[a]},{names[b]}" for a, b in pairs) + "\n"
    p = write(tmp_path / "s.csv", text)
    for block in (TINY, 1 << 20):
        chunks = read_all([p], block_bytes=block)
        assert all(isinstance(c.src, StringColumn) for c in chunks)
        assert cat_ids([c.src for c in chunks]) == [names[a] for a in pairs[:, 0]]
        assert cat_ids([c.dst for c in chunks]) == [names[b] for b in pairs[:, 1]]
    e = ref_edges(40)
    q = write(tmp_path / "i.csv", "\n".join(lines(e)) + "\n")
    chunks = read_all([q], id_type="string", block_bytes=TINY)
    assert cat_ids([c.src for c in chunks]) == [str(v) for v in e[:, 0]]


def test_unicode_and_quoted_string_ids(tmp_path):
    rows = [('"Zürich, CH"', "東京"), ("a b", "ünïcode"), ('"x"', "y")]
    p = write(tmp_path / "u.tsv", "\n".join(f"{a}\t{b}" for a, b in rows) + "\n")
    chunks = read_all([p], id_type="string")
    assert cat_ids([c.src for c in chunks]) == ["Zürich, CH", "a b", "x"]
    assert cat_ids([c.dst for c in chunks]) == ["東京", "ünïcode", "y"]


def test_parquet_string_ids_and_large_string(tmp_path):
    src = [f"n{i}" for i in range(300)]
    dst = [f"m{i % 7}" for i in range(300)]
    pq.write_table(pa.table({"s": pa.array(src, pa.large_string()), "d": pa.array(dst)}),
                   tmp_path / "s.parquet", row_group_size=70)
    chunks = read_all([tmp_path / "s.parquet"], block_bytes=16 * 50)
    assert cat_ids([c.src for c in chunks]) == src and cat_ids([c.dst for c in chunks]) == dst


@given(st.lists(st.text(max_size=6), min_size=1, max_size=40), st.data())
@settings(max_examples=60, deadline=None)
def test_string_column_from_sliced_and_chunked_arrow(values, data):
    arr = pa.array(values, type=data.draw(st.sampled_from([pa.string(), pa.large_string()])))
    lo = data.draw(st.integers(0, len(values)))
    hi = data.draw(st.integers(lo, len(values)))
    cut = data.draw(st.integers(lo, hi))
    chunked = pa.chunked_array([arr.slice(lo, cut - lo), arr.slice(cut, hi - cut)])
    col = string_column_from_arrow(chunked)
    assert col.to_list() == values[lo:hi]
    assert col.offsets.dtype == np.int64 and col.utf8.dtype == np.uint8
    assert string_column_from_arrow(arr.slice(lo, hi - lo)).to_list() == values[lo:hi]


# ---------------------------------------------------------------------------------- auto id type

def test_auto_switches_to_strings_when_first_block_has_strings(tmp_path):
    p = write(tmp_path / "a.csv", "1,2\nfoo,3\n4,5\n")
    chunks = read_all([p])
    assert all(isinstance(c.src, StringColumn) for c in chunks)
    assert cat_ids([c.src for c in chunks]) == ["1", "foo", "4"]


def test_auto_raises_non_integer_ids_in_a_later_block(tmp_path):
    e = np.abs(ref_edges(100))
    body = lines(e)
    body[70] = "bob,alice"
    p = write(tmp_path / "a.csv", "src,dst\n" + "\n".join(body) + "\n")
    with pytest.raises(NonIntegerIds) as info:
        read_all([p], block_bytes=200)
    assert info.value.line == 72 and info.value.path == str(p)
    # a later FILE with strings also restarts
    q = write(tmp_path / "b.csv", "x,y\n")
    r = write(tmp_path / "c.csv", "1,2\n")
    with pytest.raises(NonIntegerIds):
        read_all([r, q], header=False)
    with pytest.raises(InputError, match="not an integer"):
        read_all([p], block_bytes=200, id_type="int")


# ---------------------------------------------------------------------------------- bad inputs

def _body_with(e: np.ndarray, bad_at: int, bad: str, header: str = "# c1\n# c2\nsrc,dst\n"):
    body = lines(e)
    body[bad_at] = bad
    return header + "\n".join(body) + "\n", bad_at + 1 + header.count("\n")


@pytest.mark.parametrize("block", [TINY, 300, 64 << 20])
@pytest.mark.parametrize("bad,what", [("1,2,3", "expected 2 columns"), ("7", "expected 2 columns"),
                                      ("1,x2", "not an integer"), ("1.5,2", "not an integer"),
                                      ("1,", "not an integer"),
                                      ("99999999999999999999,1", "not an integer")])
def test_bad_line_exact_line_number(tmp_path, block, bad, what):
    e = np.abs(ref_edges(120))
    text, line = _body_with(e, 97, bad)
    p = write(tmp_path / "bad.csv", text)
    err = error_of([p], block_bytes=block, id_type="int")
    assert (err.path, err.line) == (str(p), line) and what in str(err), str(err)
    assert f"bad.csv:{line}:" in str(err) and err.hint


def test_bad_line_in_compressed_and_string_mode(tmp_path):
    e = np.abs(ref_edges(120))
    text, line = _body_with(e, 50, "a,b,c")
    p = write(tmp_path / "bad.gz", text, "gzip")
    assert error_of([p], block_bytes=100).line == line
    text, line = _body_with(e, 60, "alice,")
    q = write(tmp_path / "empty_id.csv", text)
    err = error_of([q], id_type="string", block_bytes=100)
    assert err.line == line and "empty" in str(err)


def test_bad_weight(tmp_path):
    p = write(tmp_path / "w.csv", "1,2,0.5\n2,3,abc\n")
    err = error_of([p], weight_col=2)
    assert err.line == 2 and "weight" in str(err)
    q = write(tmp_path / "n.csv", "# c\n1,2,0.5\n\n2,3,nan\n")
    err = error_of([q], weight_col=2)
    assert err.line == 4 and "finite" in str(err)


@pytest.mark.parametrize("text", ["", "\n\n", "# only\n# comments\n", "src,dst\n"])
def test_empty_input(tmp_path, text):
    p = write(tmp_path / "empty.csv", text)
    err = error_of([p])
    assert err.path == str(p) and ("empty" in str(err) or "no edges" in str(err))


def test_missing_file_and_bad_options(tmp_path):
    err = error_of([tmp_path / "nope.csv"])
    assert "not found" in str(err) and err.path.endswith("nope.csv")
    p = write(tmp_path / "e.csv", "src,dst\n1,2\n")
    err = error_of([p], columns=("src", "target"))
    assert "'target' not found" in str(err) and "src, dst" in str(err) and err.line == 1
    assert "does not exist" in str(error_of([p], columns=(0, 5)))
    assert "not found" in str(error_of([p], weight_col="w"))
    with pytest.raises(OptionError):
        read_all([p], columns=(0, 0))
    with pytest.raises(OptionError):
        read_all([p], on_bad_line="ignore")


@pytest.mark.parametrize("codec", ["gzip", "bz2", "zstd"])
def test_truncated_or_corrupt_compressed(tmp_path, codec):
    e = ref_edges(20000, seed=4)
    p = write(tmp_path / "e.z", "\n".join(lines(e)) + "\n", codec)
    data = p.read_bytes()
    p.write_bytes(data[:len(data) // 2])
    err = error_of([p], block_bytes=4096)
    assert err.path == str(p) and "truncated" in str(err)
    corrupt = bytearray(data)
    corrupt[len(data) // 3:len(data) // 3 + 64] = bytes(64)
    p.write_bytes(bytes(corrupt))
    with pytest.raises(InputError):
        read_all([p], block_bytes=4096)


def test_bad_parquet_and_npy(tmp_path):
    pq.write_table(pa.table({"a": [1, 2], "b": [1.5, 2.5]}), tmp_path / "f.parquet")
    assert "expected integer or string" in str(error_of([tmp_path / "f.parquet"]))
    pq.write_table(pa.table({"a": [1, 2], "b": [3, None]}), tmp_path / "n.parquet")
    err = error_of([tmp_path / "n.parquet"])
    assert err.line == 2 and "null" in str(err)
    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "one.parquet")
    assert "2 columns" in str(error_of([tmp_path / "one.parquet"]))
    assert "not found" in str(error_of([tmp_path / "f.parquet"], columns=("a", "zz")))
    (tmp_path / "t.parquet").write_bytes((tmp_path / "f.parquet").read_bytes()[:30])
    assert "parquet" in str(error_of([tmp_path / "t.parquet"]))
    np.save(tmp_path / "s.npy", np.zeros((5, 1), np.int64))
    assert "shape" in str(error_of([tmp_path / "s.npy"]))
    np.save(tmp_path / "d.npy", np.zeros((5, 2), np.float64))
    assert "dtype" in str(error_of([tmp_path / "d.npy"]))
    np.save(tmp_path / "z.npy", np.zeros((0, 2), np.int64))
    assert "no edges" in str(error_of([tmp_path / "z.npy"]))
    (tmp_path / "c.npy").write_bytes((tmp_path / "d.npy").read_bytes()[:40])
    assert ".npy" in str(error_of([tmp_path / "c.npy"]))


# ------------------------------------------------------------------------------------ skip mode

def test_skip_mode_counts_and_keeps_good_rows(tmp_path):
    e = np.abs(ref_edges(200))
    body = lines(e)
    bad_rows = {5: "1,2,3", 77: "x,1", 78: "9", 150: "1.5,2", 199: "3;4"}
    for k, v in bad_rows.items():
        body[k] = v
    p = write(tmp_path / "s.csv", "src,dst\n" + "\n".join(body) + "\n")
    keep = np.array([k not in bad_rows for k in range(200)])
    for block in (TINY, 333, 1 << 20):
        stats = ReadStats()
        chunks = read_all([p], stats, on_bad_line="skip", id_type="int", block_bytes=block)
        np.testing.assert_array_equal(edges_of(chunks), e[keep])
        assert stats.skipped_bad_lines == len(bad_rows) and stats.rows == keep.sum()
        assert stats.skipped_examples[0].startswith(f"{p}:7:")
        assert len(stats.skipped_examples) == 5


# ------------------------------------------------------------------------- randomised reference

def reference_parse(text: str, sep: str) -> list[tuple[int, int]]:
    """Plain-Python twin: skip blank and '#' lines, split, int()."""
    out = []
    for ln in text.split("\n"):
        ln = ln.rstrip("\r")
        if not ln or ln.startswith("#"):
            continue
        a, b = ln.split(sep)
        out.append((int(a), int(b)))
    return out


@given(st.lists(st.tuples(st.integers(-2**63, 2**63 - 1), st.integers(0, 10**9)), min_size=1,
                max_size=60),
       st.lists(st.sampled_from(["", "# comment", "#"]), max_size=10),
       st.sampled_from([",", "\t", " "]), st.sampled_from(["\n", "\r\n"]),
       st.integers(1, 200), st.randoms(use_true_random=False))
@settings(max_examples=80, deadline=None)
def test_random_text_matches_reference(tmp_path_factory, rows, extras, sep, eol, block, rnd):
    body = [f"{a}{sep}{b}" for a, b in rows]
    for x in extras:
        body.insert(rnd.randint(1, len(body)), x)
    text = eol.join(body) + rnd.choice(["", eol])
    p = tmp_path_factory.mktemp("r") / "e.txt"
    p.write_text(text, newline="")
    got = edges_of(read_all([p], block_bytes=block, header=False, comment="#", id_type="int"))
    assert [tuple(r) for r in got.tolist()] == reference_parse(text, sep)
