"""Node tables (id, label, split) and feature files (npy / CSV / parquet) against reference arrays,
including chunk boundaries and bad inputs with exact line numbers."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gstore.errors import InputError
from gstore.pipeline.ingest.chunks import NonIntegerIds, StringColumn
from gstore.pipeline.ingest.node_tables import (FeatureChunk, check_finite, feature_info,
                                                iter_feature_chunks, iter_node_chunks)

SPLITS = ["train", "val", "test", ""]


def node_rows(n: int = 90, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = rng.choice(10**9, size=n, replace=False).astype(np.int64)
    labels = [None if k % 7 == 3 else f"class_{k % 4}" for k in range(n)]
    splits = [SPLITS[k % 4] for k in range(n)]
    return ids, labels, splits


def node_csv(ids, labels, splits, sep=",", header="id,label,split") -> str:
    rows = [f"{i}{sep}{lab or ''}{sep}{s}" for i, lab, s in zip(ids, labels, splits)]
    return (header.replace(",", sep) + "\n" if header else "") + "\n".join(rows) + "\n"


def collect_nodes(chunks):
    ids, labels, missing, splits = [], [], [], []
    for c in chunks:
        ids.extend(c.ids.to_list() if isinstance(c.ids, StringColumn) else c.ids.tolist())
        labels.extend(c.labels.tolist())
        missing.extend(c.label_missing.tolist())
        splits.extend(c.splits.tolist())
    return ids, labels, missing, splits


@pytest.mark.parametrize("block", [29, 1 << 20])
@pytest.mark.parametrize("sep", [",", "\t"])
def test_node_csv_matches_reference(tmp_path, block, sep):
    ids, labels, splits = node_rows()
    p = tmp_path / "nodes.csv"
    p.write_text(node_csv(ids, labels, splits, sep))
    chunks = list(iter_node_chunks(p, "int", block_bytes=block))
    got_ids, got_labels, missing, got_splits = collect_nodes(chunks)
    assert got_ids == ids.tolist()
    assert got_labels == labels and missing == [lab is None for lab in labels]
    assert got_splits == splits
    assert chunks[0].first_line == 2


def test_node_table_columns_and_aliases(tmp_path):
    p = tmp_path / "n.csv.gz"
    text = "split,name,cls\nTRAIN,alice,1\n valid ,bob,\ntesting,carol,2\n,dave,3\n"
    p.write_bytes(gzip.compress(text.encode()))
    chunks = list(iter_node_chunks(p, "string", label_col="cls", split_col="split"))
    ids, labels, missing, splits = collect_nodes(chunks)
    assert ids == ["alice", "bob", "carol", "dave"]      # 'name' is an id-like header
    assert labels == ["1", None, "2", "3"] and missing == [False, True, False, False]
    assert splits == ["train", "val", "test", ""]
    # headerless: id, label, split by position; auto detects string ids
    q = tmp_path / "h.tsv"
    q.write_text("a\tx\ttrain\nb\ty\ttest\n")
    ids, labels, _, splits = collect_nodes(iter_node_chunks(q, "auto"))
    assert ids == ["a", "b"] and labels == ["x", "y"] and splits == ["train", "test"]


def test_node_table_without_label_or_split(tmp_path):
    p = tmp_path / "ids.csv"
    p.write_text("node_id\n5\n7\n")
    (c,) = list(iter_node_chunks(p, "int"))
    assert c.ids.tolist() == [5, 7] and c.labels is None and c.label_missing is None
    assert c.splits is None


def test_node_table_errors(tmp_path):
    p = tmp_path / "n.csv"
    p.write_text("id,label,split\n1,a,train\n2,b,holdout\n")
    with pytest.raises(InputError) as info:
        list(iter_node_chunks(p, "int"))
    assert info.value.line == 3 and "holdout" in str(info.value)
    p.write_text("id,label,split\n1,a,train\nx,b,test\n")
    with pytest.raises(InputError) as info:
        list(iter_node_chunks(p, "int"))
    assert info.value.line == 3 and "not an integer" in str(info.value)
    p.write_text("id,label\n" + "".join(f"{k},a\n" for k in range(50)) + "z,b\n")
    with pytest.raises(NonIntegerIds) as nie:
        list(iter_node_chunks(p, "auto", block_bytes=40))
    assert nie.value.line == 52
    p.write_text("id,label\n")
    with pytest.raises(InputError, match="no rows"):
        list(iter_node_chunks(p, "int"))
    with pytest.raises(InputError, match="not found"):
        list(iter_node_chunks(tmp_path / "missing.csv", "int"))
    p.write_text("id,label\n1,a\n")
    with pytest.raises(InputError, match="'split' not found"):
        list(iter_node_chunks(p, "int", split_col="split"))


def test_node_parquet(tmp_path):
    ids, _, splits = node_rows(200)
    labels = pa.array([None if k % 5 == 0 else k % 3 for k in range(200)], pa.int32())
    pq.write_table(pa.table({"node": ids, "label": labels, "split": splits}),
                   tmp_path / "n.parquet", row_group_size=33)
    chunks = list(iter_node_chunks(tmp_path / "n.parquet", "int", block_bytes=32 * 50))
    assert np.concatenate([c.ids for c in chunks]).tolist() == ids.tolist()
    lab = np.concatenate([c.labels for c in chunks])
    miss = np.concatenate([c.label_missing for c in chunks])
    assert lab.dtype == np.int64 and miss.tolist() == [k % 5 == 0 for k in range(200)]
    assert lab[~miss].tolist() == [k % 3 for k in range(200) if k % 5]
    assert [s for c in chunks for s in c.splits] == splits
    assert [c.first_line for c in chunks][:2] == [1, 51]
    pq.write_table(pa.table({"id": pa.array([1, None, 3])}), tmp_path / "bad.parquet")
    with pytest.raises(InputError) as info:
        list(iter_node_chunks(tmp_path / "bad.parquet", "int"))
    assert info.value.line == 2


# ----------------------------------------------------------------------------------- features

def test_npy_features_row_aligned(tmp_path):
    x = np.random.default_rng(0).normal(size=(103, 5))
    np.save(tmp_path / "f.npy", x)
    info = feature_info(tmp_path / "f.npy")
    assert (info.num_rows, info.dim, info.keyed) == (103, 5, False)
    chunks = list(iter_feature_chunks(tmp_path / "f.npy", "int", rows_per_chunk=20))
    assert [c.row_start for c in chunks] == list(range(0, 103, 20))
    assert all(c.ids is None and c.values.dtype == np.float32 for c in chunks)
    np.testing.assert_array_equal(np.concatenate([c.values for c in chunks]),
                                  x.astype(np.float32))
    np.save(tmp_path / "v.npy", np.arange(4, dtype=np.int8))
    (c,) = list(iter_feature_chunks(tmp_path / "v.npy", "int", 10))
    assert c.values.shape == (4, 1)


def test_text_features_keyed(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 3)).astype(np.float32)
    ids = rng.permutation(1000)[:60]
    p = tmp_path / "f.csv"
    p.write_text("f0,node,f1,f2\n" + "".join(
        f"{a!r},{i},{b!r},{c!r}\n" for i, (a, b, c) in zip(ids, x.tolist())))
    info = feature_info(p)
    assert (info.num_rows, info.dim, info.keyed) == (None, 3, True)
    chunks = list(iter_feature_chunks(p, "int", rows_per_chunk=7))
    assert len(chunks) > 3
    np.testing.assert_array_equal(np.concatenate([c.ids for c in chunks]), ids)
    np.testing.assert_array_equal(np.concatenate([c.values for c in chunks]), x)
    assert [c.row_start for c in chunks] == np.cumsum([0] + [len(c) for c in chunks[:-1]]).tolist()


def test_parquet_features_columns_and_list(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 4)).astype(np.float32)
    ids = [f"n{k}" for k in range(50)]
    pq.write_table(pa.table({"id": ids, **{f"x{j}": x[:, j] for j in range(4)}}),
                   tmp_path / "c.parquet", row_group_size=9)
    pq.write_table(pa.table({"id": ids, "emb": pa.FixedSizeListArray.from_arrays(
        pa.array(x.ravel()), 4)}), tmp_path / "l.parquet")
    pq.write_table(pa.table({"id": ids, "emb": pa.array(x.tolist())}), tmp_path / "v.parquet")
    for name in ("c.parquet", "l.parquet", "v.parquet"):
        info = feature_info(tmp_path / name)
        assert (info.num_rows, info.dim, info.keyed) == (50, 4, True)
        chunks = list(iter_feature_chunks(tmp_path / name, "auto", rows_per_chunk=16))
        assert [s for c in chunks for s in c.ids.to_list()] == ids
        np.testing.assert_array_equal(np.concatenate([c.values for c in chunks]), x)


def test_feature_errors(tmp_path):
    x = np.ones((30, 2), np.float32)
    x[17, 1] = np.nan
    np.save(tmp_path / "n.npy", x)
    with pytest.raises(InputError) as info:
        list(iter_feature_chunks(tmp_path / "n.npy", "int", 8))
    assert info.value.line == 18
    chunks = list(iter_feature_chunks(tmp_path / "n.npy", "int", 8, check_values=False))
    assert [check_finite(c) for c in chunks] == [None, None, 18, None]
    p = tmp_path / "f.csv"
    p.write_text("id,a,b\n1,0.5,1\n\n2,inf,3\n")
    with pytest.raises(InputError) as info:
        list(iter_feature_chunks(p, "int", 100))
    assert info.value.line == 4
    p.write_text("id,a,b\n1,0.5,1\n2,x,3\n")
    with pytest.raises(InputError) as info:
        list(iter_feature_chunks(p, "int", 100))
    assert info.value.line == 3 and "not a number" in str(info.value)
    p.write_text("id,a,b\n1,0.5,1\n2,3\n")
    with pytest.raises(InputError) as info:
        list(iter_feature_chunks(p, "int", 100))
    assert info.value.line == 3 and "columns" in str(info.value)
    np.save(tmp_path / "s.npy", np.array(["a", "b"]))
    with pytest.raises(InputError, match="numeric"):
        feature_info(tmp_path / "s.npy")
    np.save(tmp_path / "3d.npy", np.zeros((2, 2, 2)))
    with pytest.raises(InputError, match="shape"):
        list(iter_feature_chunks(tmp_path / "3d.npy", "int", 10))
    pq.write_table(pa.table({"id": [1], "s": ["a"]}), tmp_path / "s.parquet")
    with pytest.raises(InputError, match="expected a number"):
        feature_info(tmp_path / "s.parquet")
    assert check_finite(FeatureChunk(None, 0, np.zeros((3, 2), np.float32), "x", 1)) is None


def test_cora_inputs_if_present():
    root = Path(__file__).resolve().parents[2] / "shared" / "data" / "cora"
    if not root.exists():
        pytest.skip("shared cora data not available")
    _, labels, missing, splits = collect_nodes(iter_node_chunks(root / "nodes.csv", "int"))
    assert len(labels) == 2708 and not any(missing)
    assert {s for s in splits} <= set(SPLITS)
    info = feature_info(root / "features.npy")
    assert (info.num_rows, info.dim) == (2708, 1433)
