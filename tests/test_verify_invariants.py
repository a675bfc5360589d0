"""Structural invariants (gstore/store_invariants.py): every rule, its first bad position, any blocking.

Stores here are *written* wrong through the builder, so their block checksums are valid: only the
structural check stands between them and a kernel.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gstore
from gstore.builder import StoreBuilder
from gstore.errors import OptionError, StoreError
from gstore.manifest import StoreManifest
from gstore.shard_array import write_array
from gstore.store_invariants import Rule, RuleChecker
from reference_invariants import first_violation

INDPTR = np.array([0, 2, 3, 3, 5], dtype=np.int64)
INDICES = np.array([1, 3, 0, 0, 1], dtype=np.int32)


def _write(path, *, indptr=INDPTR, indices=INDICES, labels=None, train=None, parts=None,
           partptr=None, perm=None, num_edges=None):
    m = StoreManifest(num_nodes=4, num_edges=len(indices) if num_edges is None else num_edges,
                      directed=True)
    with StoreBuilder(path) as b:
        b.write_array("indptr", np.asarray(indptr, dtype=np.int64))
        b.write_array("indices", np.asarray(indices, dtype=np.int32))
        if labels is not None:
            b.write_array("labels", np.asarray(labels, dtype=np.int64))
            m.label_names, m.num_classes = ["a", "b"], 2
        if train is not None:
            b.write_array("splits/train", np.asarray(train, dtype=np.int64))
            m.split_sizes["train"] = len(train)
        if parts is not None:
            names = {"parts": "partition/k2/parts", "partptr": "partition/k2/partptr"}
            b.write_array(names["parts"], np.asarray(parts, dtype=np.int32))
            b.write_array(names["partptr"], np.asarray(partptr, dtype=np.int64))
            if perm is not None:
                names["perm"] = "partition/k2/perm"
                b.write_array(names["perm"], np.asarray(perm, dtype=np.int64))
            m.partitions["2"] = {"num_parts": 2, "method": "test", "edge_cut": 0.0, "balance": 1.0,
                                 "arrays": names}
        b.commit(m, check=False)   # damaged on purpose
    return path


GOOD_PARTS = dict(parts=[0, 0, 1, 1], partptr=[0, 2, 4], perm=[0, 1, 2, 3])

CASES = [
    ("indptr-first", dict(indptr=[1, 2, 3, 3, 5]), r"indptr\[0\] = 1, expected 0"),
    ("indptr-decreasing", dict(indptr=[0, 3, 2, 3, 5]), r"indptr\[2\] = 2 < indptr\[1\] = 3"),
    ("indptr-last", dict(indptr=[0, 2, 3, 3, 4]), r"indptr\[4\] = 4, expected 5"),
    ("indptr-rows", dict(indptr=[0, 2, 5]), r"indptr: has 3 rows, the manifest implies 5"),
    ("edges-vs-manifest", dict(num_edges=6), r"indptr\[4\] = 5, expected 6"),
    ("indices-negative", dict(indices=[1, 3, -1, 0, 1]), r"indices\[2\] = -1 is outside \[0, 4\)"),
    ("indices-high", dict(indices=[1, 3, 0, 4, 1]), r"indices\[3\] = 4 is outside \[0, 4\)"),
    ("labels", dict(labels=[0, 1, 2, -1]), r"labels\[2\] = 2 is outside \[-1, 2\)"),
    ("labels-low", dict(labels=[0, -2, 1, -1]), r"labels\[1\] = -2 is outside \[-1, 2\)"),
    ("split", dict(train=[0, 9]), r"splits/train\[1\] = 9 is outside \[0, 4\)"),
    ("parts", dict(GOOD_PARTS, parts=[0, 2, 1, 1]), r"parts\[1\] = 2 is outside \[0, 2\)"),
    ("partptr", dict(GOOD_PARTS, partptr=[0, 3, 2]), r"partptr\[2\] = 2 < partition/k2/partptr\[1\]"),
    ("perm", dict(GOOD_PARTS, perm=[0, 1, 2, 4]), r"perm\[3\] = 4 is outside \[0, 4\)"),
]


@pytest.mark.parametrize("case,kwargs,message", CASES, ids=[c[0] for c in CASES])
def test_each_broken_rule_is_named_with_its_first_bad_position(tmp_path, case, kwargs, message):
    path = _write(tmp_path / "s", **kwargs)
    g = gstore.open(path)                        # cheap open: checksums are fine
    with pytest.raises(StoreError, match=message):
        g.csr()
    with pytest.raises(StoreError, match=message):
        gstore.open(path, verify=True)
    from gstore.verify import verify_store

    report = verify_store(path)
    assert report.problems and {p.kind for p in report.problems} == {"structure"}


def test_good_store_with_everything_passes(tmp_path):
    path = _write(tmp_path / "s", labels=[0, 1, -1, 1], train=[0, 3], **GOOD_PARTS)
    csr = gstore.open(path).csr()
    assert np.array_equal(csr.indptr, INDPTR) and np.array_equal(csr.indices, INDICES)
    assert gstore.open(path, verify=True).partition.num_parts == 2


def test_cluster_sampler_refuses_a_store_with_bad_parts(tmp_path):
    from gstore.pipeline.sampling.cluster import ClusterSampler

    path = _write(tmp_path / "s", **dict(GOOD_PARTS, parts=[0, 5, 1, 1]))
    with pytest.raises(StoreError, match="parts"):
        ClusterSampler.from_store(gstore.open(path), clusters_per_batch=1)


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(["range", "offsets"]),
       values=st.lists(st.integers(-3, 12), min_size=1, max_size=60),
       block_elems=st.integers(1, 17), last=st.integers(0, 12))
def test_block_checker_equals_the_plain_python_reference(tmp_path_factory, kind, values, block_elems, last):
    arr = np.asarray(values, dtype=np.int64)
    if kind == "offsets":
        arr = np.sort(arr) if len(values) % 3 else arr     # mostly valid, sometimes not
    rule = Rule("a", kind, rows=len(arr), lo=0, hi=10, last=last)
    rec = write_array(tmp_path_factory.mktemp("r"), "a", arr)
    checker = RuleChecker(rule, rec)
    raw = arr.view(np.uint8)
    for start in range(0, len(raw), 8 * block_elems):
        checker.feed(raw[start:start + 8 * block_elems])
    found = checker.result()
    want = first_violation(values if kind == "range" else arr.tolist(), kind, lo=0, hi=10, last=last)
    assert (None if found is None else found.position) == want


@pytest.mark.parametrize("bad", ["5", 5.0, True, np.bool_(True), None, [1]])
def test_neighbors_refuses_non_integers_with_a_one_line_error(tmp_path, bad):
    g = gstore.open(_write(tmp_path / "s"))
    with pytest.raises(OptionError, match="node id must be an integer"):
        g.neighbors(bad)


@pytest.mark.parametrize("v", [0, np.int32(0), np.int64(0), np.uint8(0), np.intp(0)])
def test_neighbors_accepts_numpy_integers(tmp_path, v):
    g = gstore.open(_write(tmp_path / "s"))
    assert g.neighbors(v).tolist() == [1, 3]
    assert g.neighbors(np.int16(3)).tolist() == [0, 1]


@pytest.mark.parametrize("v", [-1, 4, np.int64(10**12)])
def test_neighbors_out_of_range(tmp_path, v):
    g = gstore.open(_write(tmp_path / "s"))
    with pytest.raises(OptionError, match=r"out of range \[0, 4\)"):
        g.neighbors(v)
