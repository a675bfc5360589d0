"""Parallel (prange) kernels must never be handed overlapping arrays (gstore/numba_config.py).

numba declares the array arguments of a prange body `noalias`, so `sorted_lookup(keys=col,
out=col)` was undefined behaviour: the CSR build remapped its record columns in place and, in code
JIT-compiled in the process (a clean checkout's first test run; never the copy reloaded from
numba's cache, hence 'flaky'), the key of an odd-sized thread chunk's peeled iteration came out -1.
The edge ('7', '8') of `16,4 / 0x10,5 / 7,8` was then packed as a wrong edge of node 0.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from numba import njit
from numba.core.registry import CPUDispatcher

import gstore
from gstore.numba_config import NJIT_PARALLEL
from gstore.pipeline.generate.sbm import generate_sbm
from gstore.pipeline.ingest import id_remap_kernels as K
from gstore.pipeline.ingest.chunks import EdgeReadOptions
from gstore.pipeline.ingest.id_remap import IdTable, _sorted_table
from gstore.pipeline.ingest.ingest import IngestOptions, ingest

# the hash keys of the ids of `16,4 / 0x10,5 / 7,8` and the (dst, src) records of that file, the
# exact inputs that lost the edge
UNIQ = np.array([-5186066380110251302, -3052983882763646239, 2372680398608394787,
                 7325375078732402580, 7925191839057653031, 8434783899987371682])
RECORDS = np.array([[UNIQ[1], UNIQ[3]], [UNIQ[5], UNIQ[2]], [UNIQ[0], UNIQ[4]]])


def _edges_of(store: Path) -> list[tuple[str, str]]:
    s = gstore.open(store)
    ids = s.node_ids
    ids = ids.to_list() if hasattr(ids, "to_list") else [str(int(x)) for x in ids]
    csr = s.csr()   # the structural check too: a -1 packed into a key made an index >= N
    ip, ix = csr.indptr, csr.indices
    return sorted((ids[int(u)], ids[v]) for v in range(s.num_nodes) for u in ix[ip[v]:ip[v + 1]])


@pytest.fixture(scope="module")
def fresh_sorted_lookup():
    """sorted_lookup JIT-compiled here, never loaded from numba's on-disk cache: what a clean
    checkout runs (the cached copy happened to be right, which made the failure look random)."""
    return njit(**{**NJIT_PARALLEL, "cache": False})(K.sorted_lookup.py_func)


def _reference_lookup(table: IdTable, keys: np.ndarray) -> list[int]:
    sorted_keys = table.uniq.tolist()
    return [sorted_keys.index(k) if k in sorted_keys else -1 for k in keys.tolist()]


@pytest.mark.parametrize("n", [2, 3, 5, 17, 40])
def test_an_in_place_lookup_of_a_strided_column_finds_every_key(monkeypatch, fresh_sorted_lookup, n):
    monkeypatch.setattr(K, "sorted_lookup", fresh_sorted_lookup)
    table = _sorted_table(UNIQ)
    rec = np.stack([UNIQ[np.arange(n) % 6][::-1], np.full(n, 99)], axis=1)
    want = _reference_lookup(table, rec[:, 0])
    col = rec[:, 0]                      # a strided view, remapped in place as csr_build does
    table.lookup(col, col)
    assert rec[:, 0].tolist() == want and rec[:, 1].tolist() == [99] * n


def test_the_exact_records_that_lost_an_edge(monkeypatch, fresh_sorted_lookup):
    monkeypatch.setattr(K, "sorted_lookup", fresh_sorted_lookup)
    table = _sorted_table(UNIQ)
    rec = RECORDS.copy()
    dst, src = rec[:, 0], rec[:, 1]
    table.lookup(dst, dst)
    table.lookup(src, src)
    assert rec.tolist() == [[1, 3], [5, 2], [0, 4]]    # was [[1, 3], [5, 2], [-1, -1]]


def test_a_hex_id_file_keeps_its_last_edge_with_freshly_compiled_kernels(
        tmp_path, monkeypatch, fresh_sorted_lookup):
    monkeypatch.setattr(K, "sorted_lookup", fresh_sorted_lookup)
    f = tmp_path / "e.csv"
    f.write_text("16,4\n0x10,5\n7,8\n")
    ingest([str(f)], tmp_path / "s", IngestOptions())
    assert _edges_of(tmp_path / "s") == [("0x10", "5"), ("16", "4"), ("7", "8")]


# ---- the rule, for every parallel kernel on the ingest and generate paths ----------------------

def _guarded(kernel: CPUDispatcher):
    def call(*args):
        arrays = [(k, a) for k, a in enumerate(args) if isinstance(a, np.ndarray) and a.size]
        for i, (ka, a) in enumerate(arrays):
            for kb, b in arrays[i + 1:]:
                if np.shares_memory(a, b):
                    raise AssertionError(f"{kernel.py_func.__name__}: arguments {ka} and {kb} "
                                         "overlap")
        return kernel(*args)
    return call


@pytest.fixture
def overlap_guard(monkeypatch):
    """Every parallel kernel (module attribute or imported name) checks its arrays."""
    for name, mod in list(sys.modules.items()):
        if not name.startswith("gstore") or mod is None:
            continue
        for attr, value in list(vars(mod).items()):
            if isinstance(value, CPUDispatcher) and value.targetoptions.get("parallel"):
                monkeypatch.setattr(mod, attr, _guarded(value))


@pytest.mark.parametrize("lines, opts", [
    ("16,4\n0x10,5\n7,8\n", IngestOptions()),                                     # string ids
    ("5,1000\n1000,7\n7,5\n", IngestOptions()),                                   # bitmap table
    ("1000000000000000,3\n3,7000000000000000000\n", IngestOptions()),             # sorted table
    ("a,b,0.5\nb,c,1.5\nc,a,2\n", IngestOptions(undirected=True,
                                                read=EdgeReadOptions(weight_col=2))),
])
def test_ingest_never_hands_a_parallel_kernel_overlapping_arrays(tmp_path, overlap_guard, lines,
                                                                  opts):
    f = tmp_path / "e.csv"
    f.write_text(lines)
    report = ingest([str(f)], tmp_path / "s", opts)
    assert report.num_edges == len(lines.splitlines()) * (2 if opts.undirected else 1)


def test_generate_never_hands_a_parallel_kernel_overlapping_arrays(tmp_path, overlap_guard):
    g = generate_sbm(tmp_path / "g", 200, 4, 6, feature_dim=4, block_edges=97, block_rows=61)
    assert (tmp_path / "g" / "nodes.csv").exists() and g is not None
