"""Arrow arrays -> the readers' id columns: int64 numpy arrays and StringColumn (offsets + utf8),
built from the arrow buffers without per-value Python work."""
from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gstore.errors import InputError
from gstore.pipeline.ingest.chunks import StringColumn

_EMPTY_U8 = np.zeros(0, dtype=np.uint8)


def _string_chunk_parts(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets int64 (n+1,) starting at 0, utf8 uint8) of one string/large_string/binary chunk."""
    n = len(arr)
    _, off_buf, data_buf = arr.buffers()[:3]
    off_type = np.int64 if pa.types.is_large_string(arr.type) or pa.types.is_large_binary(
        arr.type) else np.int32
    if off_buf is None:
        return np.zeros(n + 1, dtype=np.int64), _EMPTY_U8
    offs = np.frombuffer(off_buf, dtype=off_type)[arr.offset:arr.offset + n + 1]
    lo, hi = int(offs[0]), int(offs[-1])
    utf8 = _EMPTY_U8 if data_buf is None or hi == lo else np.frombuffer(data_buf, np.uint8)[lo:hi]
    return offs.astype(np.int64) - lo, utf8


def string_column_from_arrow(col: pa.Array | pa.ChunkedArray) -> StringColumn:
    """StringColumn from an arrow string-like column (string, large_string, binary, or a chunked
    array of those). Nulls must have been rejected by the caller (they read as '')."""
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    if not chunks:
        return StringColumn(np.zeros(1, dtype=np.int64), _EMPTY_U8)
    if not (pa.types.is_string(chunks[0].type) or pa.types.is_large_string(chunks[0].type)
            or pa.types.is_binary(chunks[0].type) or pa.types.is_large_binary(chunks[0].type)):
        chunks = [c.cast(pa.string()) for c in chunks]
    if len(chunks) == 1:
        offsets, utf8 = _string_chunk_parts(chunks[0])
        return StringColumn(offsets, utf8)
    parts = [_string_chunk_parts(c) for c in chunks]
    n = sum(len(p[0]) - 1 for p in parts)
    offsets = np.empty(n + 1, dtype=np.int64)
    offsets[0] = 0
    pos, base = 0, 0
    for offs, data in parts:
        m = len(offs) - 1
        offsets[pos + 1:pos + m + 1] = offs[1:] + base
        pos += m
        base += len(data)
    utf8 = np.concatenate([p[1] for p in parts]) if base else _EMPTY_U8
    return StringColumn(offsets, utf8)


def int_ids_from_arrow(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """int64 (n,) numpy array of an integer arrow column (no nulls)."""
    if isinstance(col, pa.ChunkedArray):
        if col.num_chunks == 1:
            col = col.chunk(0)
        else:
            return np.concatenate([int_ids_from_arrow(c) for c in col.chunks]) if col.num_chunks \
                else np.zeros(0, dtype=np.int64)
    if col.type != pa.int64():
        col = col.cast(pa.int64())
    return col.to_numpy(zero_copy_only=False)


def float32_from_arrow(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """float32 (n,) numpy array of a numeric arrow column (no nulls)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if col.type != pa.float32():
        col = col.cast(pa.float32())
    return col.to_numpy(zero_copy_only=False)


def ints_to_string_column(values: np.ndarray) -> StringColumn:
    """Decimal StringColumn of an int array (id_type='string' over integer inputs)."""
    return string_column_from_arrow(pc.cast(pa.array(values), pa.string()))


def open_parquet(path: str) -> pq.ParquetFile:
    """Open a parquet input, turning arrow's failure into an InputError naming the file."""
    try:
        # an arrow file opened from bytes: a str path must be strict UTF-8 (b'e\xff.parquet' is not)
        return pq.ParquetFile(pa.OSFile(os.fsencode(path), "rb"))
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"cannot read parquet file: {e}", path=path,
                         hint="the file looks truncated or corrupt") from None
