"""Edge-list readers: every input format against numpy reference arrays (also across block
boundaries), option overrides, string ids, weights and the auto -> string id switch.
Bad inputs and skip mode: tests/test_ingest_readers_errors.py; node tables and features:
tests/test_ingest_node_tables.py."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gstore.errors import InputError
from gstore.pipeline.ingest.arrow_columns import string_column_from_arrow
from gstore.pipeline.ingest.chunks import EdgeReadOptions, NonIntegerIds, StringColumn
from gstore.pipeline.ingest.edge_reader import iter_edge_chunks, total_input_bytes
from gstore.pipeline.ingest.text_format import detect_text_format

from ingest_inputs import TINY, cat_ids, edges_of, error_of, lines, read_all, ref_edges, write


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
    assert not detect_text_format("x", b"node1,node2\nnode3,node4\n").header   # ids, not names
    assert detect_text_format("x", b"source_node;target_node\nalice;bob\n").header
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


def test_long_comment_preamble_and_long_lines(tmp_path):
    e = ref_edges(40)
    pre = "".join(f"# comment line {k} " + "x" * 80 + "\n" for k in range(2000))   # > 64 KiB
    p = write(tmp_path / "e.txt.gz", pre + "\n".join(lines(e, "\t")) + "\n", "gzip")
    chunks = read_all([p], block_bytes=TINY)
    np.testing.assert_array_equal(edges_of(chunks), e)
    assert chunks[0].first_line == 2001
    names = ["n" * 300 + str(k) for k in range(30)]          # lines longer than a block
    q = write(tmp_path / "long.csv", "\n".join(f"{names[k]},{names[-k]}" for k in range(30)))
    chunks = read_all([q], block_bytes=50)
    assert cat_ids([c.src for c in chunks]) == names


def test_abandoned_reader_stops_its_thread(tmp_path):
    import threading
    e = ref_edges(2000)
    p = write(tmp_path / "e.csv", "\n".join(lines(e)) + "\n")
    gen = iter_edge_chunks([str(p)], EdgeReadOptions(block_bytes=64))
    first = next(gen)
    assert len(first) > 0
    gen.close()
    assert not [t for t in threading.enumerate() if t.name == "gstore-read" and t.is_alive()]
