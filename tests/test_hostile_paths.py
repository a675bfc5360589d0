"""File names that are not valid UTF-8 (legal on Linux: a name is bytes) must work like any other
(found by a hostile test: an edge file named b'e\\xff.csv' raised UnicodeEncodeError from arrow)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gstore
from gstore.pipeline.ingest.ingest import IngestOptions, ingest

ODD = os.fsdecode(b"e\xff\xfe")          # what Python makes of such a name (surrogate escapes)


def _edges_of(store) -> list[tuple[int, int]]:
    s = gstore.open(store)
    ids, ip, ix = np.asarray(s.node_ids), s.indptr, s.indices
    return sorted((int(ids[u]), int(ids[v])) for v in range(s.num_nodes) for u in ix[ip[v]:ip[v + 1]])


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_input_and_output_names_that_are_not_utf8(tmp_path, suffix):
    path = tmp_path / (ODD + suffix)
    if suffix == ".parquet":
        with open(path, "wb") as fh:        # arrow's own path handling cannot name it either
            pq.write_table(pa.table({"src": [0, 1, 2], "dst": [1, 2, 0]}), fh)
    elif suffix == ".csv.gz":
        import gzip
        path.write_bytes(gzip.compress(b"0,1\n1,2\n2,0\n"))
    else:
        path.write_bytes(b"0,1\n1,2\n2,0\n")
    out = tmp_path / (ODD + ".gstore")
    ingest([str(path)], out, IngestOptions())
    assert _edges_of(out) == [(0, 1), (1, 2), (2, 0)]
