"""Shared input factories for the ingest reader tests: reference edge arrays and the files
written from them."""
from __future__ import annotations

import bz2
import gzip
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from gstore.errors import InputError
from gstore.pipeline.ingest.chunks import EdgeReadOptions, ReadStats, StringColumn
from gstore.pipeline.ingest.edge_reader import iter_edge_chunks

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
