"""Header detection by shape (pipeline/ingest/header_rules.py), checked by its rules rather than by
examples: a first row drawn from the same id generator as the rows below is never a header; a row
of known column names over any ids is; plain words over shaped ids (`from,to` over `n17,n4`) are.
The decision is always reported (summary, manifest) and --header/--no-header still win."""
from __future__ import annotations

import string

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from gstore.pipeline.ingest.header_rules import KNOWN_NAMES, guess_header
from gstore.pipeline.ingest.text_format import detect_text_format

from ingest_inputs import cat_ids, read_all

WORDS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
         "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter"]


def id_generators():
    """Strategies for one id 'form' each: all ids a file would hold."""
    hexdigits = "0123456789abcdef"
    return st.sampled_from([
        st.integers(-10**12, 10**12).map(str),
        st.integers(0, 10**6).map(lambda i: f"n{i}"),
        st.integers(0, 10**6).map(lambda i: f"user_{i}"),
        st.text(hexdigits, min_size=16, max_size=16).filter(lambda s: any(c.isdigit() for c in s)),
        st.text(string.ascii_uppercase, min_size=3, max_size=3),
        st.sampled_from(WORDS),
        st.sampled_from(WORDS[:2]),              # nearly constant columns (hubs)
        st.integers(0, 3).map(lambda i: f"hub{i}"),
        st.uuids().map(str),
        st.floats(0, 1, allow_nan=False).map(repr),
    ])


@st.composite
def table(draw, min_rows=1, max_rows=40):
    """(rows of fields); every column has its own generator; the first row is drawn like the rest."""
    k = draw(st.integers(2, 3))
    gens = [draw(id_generators()) for _ in range(k)]
    n = draw(st.integers(min_rows, max_rows))
    return [[draw(g) for g in gens] for _ in range(n + 1)]


@given(table())
@settings(max_examples=120, deadline=None)
@example(rows=[["000000000000000a", "0"], ["0000000000000000", "0"]])   # hex ids that look like numbers
@example(rows=[["0x10", "4"], ["3", "5"], ["16", "2"]])
def test_a_row_from_the_same_generator_is_never_a_header(rows):
    assert not guess_header(rows[0], rows[1:]).is_header, rows[:3]


@given(table(), st.data())
@settings(max_examples=60, deadline=None)
def test_a_row_of_known_names_is_a_header(rows, data):
    names = data.draw(st.lists(st.sampled_from(sorted(KNOWN_NAMES)), min_size=len(rows[0]),
                               max_size=len(rows[0]), unique=True))
    below = {t for r in rows[1:] for t in r}
    assume(not below & set(names))      # a name that is also an id below is read as an id
    guess = guess_header(names, rows[1:])
    assert guess.is_header, (names, rows[1:3], guess)


@given(st.lists(st.sampled_from(["follower", "followee", "person", "friend", "who", "whom"]),
                min_size=2, max_size=2, unique=True),
       st.sampled_from(["n{}", "user_{}", "P{:05d}", "{}"]),
       st.lists(st.tuples(st.integers(0, 99999), st.integers(0, 99999)), min_size=1, max_size=60))
@settings(max_examples=60, deadline=None)
def test_plain_words_over_shaped_ids_are_a_header(words, form, pairs):
    rows = [[form.format(a), form.format(b)] for a, b in pairs]
    assert guess_header(words, rows).is_header


def test_shape_rules_on_examples():
    # length: fixed-length codes under longer names
    codes = [["JFK", "LAX"], ["SFO", "ORD"], ["ATL", "DEN"], ["SEA", "BOS"], ["MIA", "PHX"],
             ["IAH", "DFW"], ["LAS", "MSP"], ["DTW", "PHL"]]
    assert guess_header(["origin", "dest"], codes).is_header
    assert not guess_header(["CLT", "EWR"], codes).is_header
    # constant columns (every edge between the same two hubs) say nothing about a first row
    assert not guess_header(["erin", "frank"], [["alice", "bob"]] * 20).is_header
    # an id that appears again below is data, whatever it looks like
    assert not guess_header(["alice", "bob"], [["bob", "carol"]]).is_header
    # names over names: nothing tells them apart (pass --header)
    assert not guess_header(["alice", "bob"], [["carol", "dave"]]).is_header
    # a word over a column of numbers keeps the old rule even when another column is damaged
    assert guess_header(["id", "a", "b"], [["1", "0.5", "1"], ["2", "x", "3"]]).is_header


def test_detection_on_files_and_the_reported_decision(tmp_path):
    body = "".join(f"n{a},n{b}\n" for a, b in np.random.default_rng(0).integers(0, 999, (50, 2)))
    p = tmp_path / "e.csv"
    p.write_text("follower,followee\n" + body)
    fmt = detect_text_format(p, p.read_bytes())
    assert fmt.header and fmt.names == ["follower", "followee"]
    assert fmt.header_note() == "header: detected (follower,followee)"
    chunks = read_all([p])
    assert "follower" not in cat_ids([c.src for c in chunks])      # no phantom node
    q = tmp_path / "d.csv"
    q.write_text("alice,bob\nbob,carol\n")
    fmt = detect_text_format(q, q.read_bytes())
    assert not fmt.header
    assert fmt.header_note() == "first row read as data: 'alice,bob'; pass --header if it is a header"
    fmt = detect_text_format(q, q.read_bytes(), header=True)
    assert fmt.header and fmt.header_note() == "header: given by --header (alice,bob)"
    assert detect_text_format(p, p.read_bytes(), header=False).header_note() == \
        "header: none (--no-header)"


@pytest.mark.parametrize("header,expect_nodes", [(None, 5), ("--header", 5), ("--no-header", 7)])
def test_cli_reports_the_header_decision_and_the_manifest_keeps_it(tmp_path, header, expect_nodes):
    from click.testing import CliRunner

    import gstore
    from gstore.cli import main

    p = tmp_path / "e.csv"
    p.write_text("person,friend\nn17,n4\nn3,n9\nn4,n1\n")
    args = ["ingest", str(p), "-o", str(tmp_path / "s"), "-q"] + ([header] if header else [])
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    g = gstore.open(tmp_path / "s")
    assert g.num_nodes == expect_nodes
    notes = [d["message"] for d in g.manifest.build["decisions"]]
    want = {None: "header: detected (person,friend)", "--header": "header: given by --header",
            "--no-header": "header: none (--no-header)"}[header]
    assert any(n.startswith(want) for n in notes), notes
    assert want in r.output
