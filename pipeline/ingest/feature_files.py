"""Node feature files (`--features`), streamed as float32 FeatureChunks.

- .npy (N, F) or (N,) of any numeric dtype: row-aligned with the node table's rows (ids=None), read
  through a memory map `rows_per_chunk` rows at a time.
- CSV/TSV/blank-separated text (compressed or not) and parquet: keyed by an id column (`id_col`,
  else a header named id/node/..., else column 0); every other column is a feature (parquet may
  instead hold one list / fixed_size_list column of numbers).

NaN/inf: iter_feature_chunks rejects them by default (check_values=True, exact line in the
message); `check_finite(chunk)` is the same test for callers that read with check_values=False.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gstore.errors import InputError, OptionError
from gstore.pipeline.ingest.arrow_columns import open_parquet
from gstore.pipeline.ingest.chunks import IdColumn, IdType
from gstore.pipeline.ingest.id_typing import IdMode, arrow_ids, parse_id_block
from gstore.pipeline.ingest.npy_blocks import NpyArray, open_npy, read_rows
from gstore.pipeline.ingest.text_blocks import ColumnSpec, iter_text_blocks, line_of_row
from gstore.pipeline.ingest.text_format import (TextFormat, detect_text_format, find_id_column,
                                                read_sample, resolve_column, sniff_kind)

@dataclass
class FeatureChunk:
    """ids: int64 (n,) / StringColumn for keyed files, None for row-aligned .npy. row_start:
    0-based row of the chunk's first row within the file. values: float32 (n, F). first_line:
    1-based line of the first row (row_start + 1 for npy/parquet)."""

    ids: IdColumn | None
    row_start: int
    values: np.ndarray
    path: str
    first_line: int

    def __len__(self) -> int:
        return len(self.values)


@dataclass
class FeatureInfo:
    """num_rows: rows in the file (None for text: unknown without a full pass). dim: F.
    keyed: rows carry node ids (text/parquet) rather than following node-table order (.npy)."""

    num_rows: int | None
    dim: int
    keyed: bool


def check_finite(chunk: FeatureChunk) -> int | None:
    """1-based line (first_line + row: exact for npy/parquet, and for text without blank or
    comment lines inside the chunk) of the first row holding NaN/inf, or None if all finite."""
    ok = np.isfinite(chunk.values).all(axis=1)
    if ok.all():
        return None
    return chunk.first_line + int(np.argmin(ok))


def _open_npy(path: str) -> NpyArray:
    """The header only: rows are read with plain reads (npy_blocks.py), never through the map."""
    arr = open_npy(path, "save features with numpy.save as an (N, F) array")
    if len(arr.shape) not in (1, 2) or arr.dtype.kind not in "fiub":
        raise InputError(f".npy features have shape {arr.shape} and dtype {arr.dtype}, expected "
                         "a numeric (N, F) array", path=path)
    return arr


def _text_layout(path: str, compression: str | None,
                 id_col: str | int | None) -> tuple[TextFormat, int, list[int], bytes]:
    sample = read_sample(path, compression)
    if not sample.strip():
        raise InputError("feature file has no rows", path=path, hint="the file is empty")
    named = isinstance(id_col, str) and not id_col.strip().isdigit()
    fmt = detect_text_format(path, sample, header_required=named)
    id_idx = resolve_column(find_id_column(fmt.names, id_col), fmt, fmt.names, fmt.num_columns,
                            path, "id")
    value_idx = [i for i in range(fmt.num_columns) if i != id_idx]
    if not value_idx:
        raise InputError("feature file has an id column but no feature columns", path=path,
                         line=fmt.data_line, hint="expected: id, f0, f1, ...")
    return fmt, id_idx, value_idx, sample


def _parquet_layout(path: str, id_col: str | int | None) -> tuple[pq.ParquetFile, int, list[int],
                                                                   int]:
    pf = open_parquet(path)
    names = pf.schema_arrow.names
    id_idx = resolve_column(find_id_column(names, id_col), None, names, len(names), path, "id")
    value_idx = [i for i in range(len(names)) if i != id_idx]
    types = [pf.schema_arrow.field(i).type for i in value_idx]
    if len(types) == 1 and (pa.types.is_list(types[0]) or pa.types.is_fixed_size_list(types[0])
                            or pa.types.is_large_list(types[0])):
        if pa.types.is_fixed_size_list(types[0]):
            dim = types[0].list_size
        else:
            first = next(pf.iter_batches(batch_size=1, columns=[names[value_idx[0]]]), None)
            dim = 0 if first is None or not first.num_rows else len(first.column(0)[0])
        return pf, id_idx, value_idx, dim
    for i, t in zip(value_idx, types):
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
            raise InputError(f"feature column {names[i]!r} has type {t}, expected a number",
                             path=path, hint="keep only the id column and numeric columns")
    if not value_idx:
        raise InputError("feature file has an id column but no feature columns", path=path)
    return pf, id_idx, value_idx, len(value_idx)


def feature_info(path: str | Path, id_col: str | int | None = None) -> FeatureInfo:
    """Shape facts of a feature file without reading it all."""
    path = str(path)
    kind = sniff_kind(path)
    if kind.container == "npy":
        arr = _open_npy(path)
        return FeatureInfo(arr.shape[0], 1 if len(arr.shape) == 1 else arr.shape[1], keyed=False)
    if kind.container == "parquet":
        pf, _, _, dim = _parquet_layout(path, id_col)
        return FeatureInfo(pf.metadata.num_rows, dim, keyed=True)
    _, _, value_idx, _ = _text_layout(path, kind.compression, id_col)
    return FeatureInfo(None, len(value_idx), keyed=True)


def iter_feature_chunks(path: str | Path, id_type: IdType, rows_per_chunk: int,
                        id_col: str | int | None = None, check_values: bool = True
                        ) -> Iterator[FeatureChunk]:
    """Stream a feature file as float32 chunks of about `rows_per_chunk` rows (exact for npy and
    parquet, approximate for text). Raises InputError on bad shapes/dtypes/values (file:line) and
    NonIntegerIds in id_type='auto' when a non-integer id follows integer chunks."""
    if rows_per_chunk < 1:
        raise OptionError(f"rows_per_chunk must be positive, got {rows_per_chunk}")
    path = str(path)
    kind = sniff_kind(path)
    if kind.container == "npy":
        chunks = _iter_npy(path, rows_per_chunk)
    elif kind.container == "parquet":
        chunks = _iter_parquet(path, id_type, rows_per_chunk, id_col)
    else:
        chunks = _iter_text(path, kind.compression, id_type, rows_per_chunk, id_col)
    rows = 0
    for chunk in chunks:
        if check_values and kind.container != "text":
            bad = check_finite(chunk)
            if bad is not None:
                raise InputError("feature value is NaN or infinite", path=path, line=bad,
                                 hint="line numbers are 1-based rows for npy/parquet")
        rows += len(chunk)
        yield chunk
    if rows == 0:
        raise InputError("feature file has no rows", path=path, hint="the file is empty")


def _iter_npy(path: str, rows_per_chunk: int) -> Iterator[FeatureChunk]:
    arr = _open_npy(path)
    with open(path, "rb") as fh:
        for start in range(0, arr.shape[0], rows_per_chunk):
            count = min(rows_per_chunk, arr.shape[0] - start)
            block = read_rows(fh, arr, start, count).astype(np.float32)
            if block.ndim == 1:
                block = block.reshape(-1, 1)
            yield FeatureChunk(None, start, np.ascontiguousarray(block), path, start + 1)


def _iter_text(path: str, compression: str | None, id_type: IdType, rows_per_chunk: int,
               id_col: str | int | None) -> Iterator[FeatureChunk]:
    fmt, id_idx, value_idx, sample = _text_layout(path, compression, id_col)
    line_bytes = max(1, len(sample) // max(1, sample.count(b"\n")))
    block_bytes = max(1, rows_per_chunk * line_bytes)
    mode = IdMode.for_type(id_type)
    row = 0

    def specs() -> list[ColumnSpec]:
        return [ColumnSpec(id_idx, mode.id_kind, "node id")] + [
            ColumnSpec(i, "float", f"feature column {i}") for i in value_idx]

    for block in iter_text_blocks(path, compression, fmt, block_bytes):
        table = parse_id_block(block, fmt, specs, path, mode)
        n = table.num_rows
        if n == 0:
            continue
        id_arrow = table.column(f"f{id_idx}")
        ids = mode.ids(id_arrow)
        values = np.empty((n, len(value_idx)), dtype=np.float32)
        for j, i in enumerate(value_idx):
            values[:, j] = table.column(f"f{i}").to_numpy()
        ok = np.isfinite(values).all(axis=1)
        if not ok.all():
            raise InputError("feature value is NaN or infinite", path=path,
                             line=line_of_row(block, fmt, int(np.argmin(ok))),
                             hint="replace missing features by a number")
        yield FeatureChunk(ids, row, values, path, block.first_line)
        row += n


def _iter_parquet(path: str, id_type: IdType, rows_per_chunk: int,
                  id_col: str | int | None) -> Iterator[FeatureChunk]:
    pf, id_idx, value_idx, dim = _parquet_layout(path, id_col)
    names = pf.schema_arrow.names
    id_t = pf.schema_arrow.field(id_idx).type
    if not (pa.types.is_integer(id_t) or pa.types.is_string(id_t)
            or pa.types.is_large_string(id_t)):
        raise InputError(f"id column {names[id_idx]!r} has type {id_t}, expected integer or "
                         "string", path=path)
    if id_type == "int" and not pa.types.is_integer(id_t):
        raise InputError(f"id column {names[id_idx]!r} holds strings but ids are integers",
                         path=path, hint="use --id-type string")
    strings = id_type == "string" or not pa.types.is_integer(id_t)
    row = 0
    for batch in pf.iter_batches(batch_size=rows_per_chunk,
                                 columns=[names[id_idx]] + [names[i] for i in value_idx]):
        n = batch.num_rows
        for k in range(batch.num_columns):
            if batch.column(k).null_count:
                bad = int(np.argmax(batch.column(k).is_null().to_numpy(zero_copy_only=False)))
                raise InputError(f"column {batch.schema.names[k]!r} is null", path=path,
                                 line=row + bad + 1, hint="line numbers are 1-based rows")
        id_arr = batch.column(0)
        ids = arrow_ids(id_arr, strings)
        values = np.empty((n, dim), dtype=np.float32)
        vt = batch.column(1).type
        if len(value_idx) == 1 and (pa.types.is_list(vt) or pa.types.is_fixed_size_list(vt)
                                    or pa.types.is_large_list(vt)):
            lists = batch.column(1)
            lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False)
            if (lengths != dim).any():
                bad = int(np.argmax(lengths != dim))
                raise InputError(f"feature list has length {lengths[bad]}, expected {dim}",
                                 path=path, line=row + bad + 1)
            flat = pc.list_flatten(lists).cast(pa.float32()).to_numpy(zero_copy_only=False)
            values[:] = flat.reshape(n, dim)
        else:
            for j in range(dim):
                values[:, j] = batch.column(j + 1).cast(pa.float32()).to_numpy(
                    zero_copy_only=False)
        yield FeatureChunk(ids, row, values, path, row + 1)
        row += n
