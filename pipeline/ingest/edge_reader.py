"""Streaming edge-list reader: text (CSV/TSV/blank-separated, SNAP/Matrix Market comments, optional
header, gzip/bz2/zstd by magic bytes), parquet and .npy (E, 2) or (2, E) int arrays, one or more
files.

`iter_edge_chunks` yields EdgeChunk blocks (never a whole file); see chunks.py for the contract and
docs/ingest-inputs.md for detection rules and options.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from gstore.errors import InputError, OptionError
from gstore.pipeline.ingest.arrow_columns import (float32_from_arrow, int_ids_from_arrow,
                                                  ints_to_string_column, open_parquet)
from gstore.pipeline.ingest.chunks import (EdgeChunk, EdgeReadOptions, IdColumn, NonIntegerIds,
                                           ReadStats, StringColumn)
from gstore.pipeline.ingest.id_typing import IdMode, arrow_ids, parse_id_block
from gstore.pipeline.ingest.npy_blocks import NpyArray, open_npy, read_columns
from gstore.pipeline.ingest.text_blocks import ColumnSpec, iter_text_blocks, line_of_row
from gstore.pipeline.ingest.text_format import (FileKind, detect_text_format, read_sample,
                                                resolve_column, sniff_kind)

log = logging.getLogger(__name__)


def total_input_bytes(paths: list[str | Path]) -> int:
    """Sum of on-disk sizes of the inputs (the total for progress driven by EdgeChunk.bytes_done)."""
    total = 0
    for p in paths:
        try:
            total += os.path.getsize(p)
        except FileNotFoundError:
            raise InputError("file not found", path=p, hint="check the path") from None
    return total


def _check_options(options: EdgeReadOptions) -> None:
    if options.id_type not in ("auto", "int", "string"):
        raise OptionError(f"id_type must be auto, int or string, got {options.id_type!r}")
    if options.on_bad_line not in ("error", "skip"):
        raise OptionError(f"on_bad_line must be 'error' or 'skip', got {options.on_bad_line!r}")
    if options.block_bytes < 1:
        raise OptionError(f"block_bytes must be positive, got {options.block_bytes}")
    if options.columns is not None and len(options.columns) != 2:
        raise OptionError("--columns takes exactly two columns: SRC,DST")


def iter_edge_chunks(paths: list[str | Path], options: EdgeReadOptions,
                     stats: ReadStats | None = None) -> Iterator[EdgeChunk]:
    """Stream the edges of all `paths` (read in order, same options) as EdgeChunks.

    Raises InputError (file, line, hint) on bad input, OptionError on bad options, and
    NonIntegerIds in id_type='auto' when a non-integer id follows emitted integer chunks.
    Every file must hold at least one edge.
    """
    _check_options(options)
    if not paths:
        raise OptionError("no edge files given")
    kinds = [sniff_kind(p) for p in paths]      # fail on a missing file before any work
    mode = IdMode.for_type(options.id_type)
    for path, kind in zip(paths, kinds):
        path = str(path)
        if kind.container == "parquet":
            chunks = _iter_parquet(path, options, mode)
        elif kind.container == "npy":
            chunks = _iter_npy(path, options, mode, stats)
        else:
            chunks = _iter_text(path, kind, options, mode, stats)
        rows = 0
        for chunk in chunks:
            if len(chunk) == 0:
                continue
            rows += len(chunk)
            if stats is not None:
                stats.rows += len(chunk)
            if not isinstance(chunk.src, StringColumn):
                mode.emitted_int = True
            yield chunk
        if rows == 0:
            raise InputError("no edges found (empty input)", path=path,
                             hint="the file is empty, holds only comments/header, or every line "
                                  "was skipped")


def _columns_need_header(options: EdgeReadOptions) -> bool:
    specs = list(options.columns or ()) + ([options.weight_col] if options.weight_col is not None
                                           else [])
    return any(isinstance(c, str) and not c.strip().isdigit() for c in specs)


def _resolve_edge_columns(options: EdgeReadOptions, names: list[str] | None, num_columns: int,
                          path: str, fmt=None) -> tuple[int, int, int | None]:
    cols = options.columns or (0, 1)
    if num_columns < 2:
        raise InputError(f"edge lines need at least 2 columns, found {num_columns}", path=path,
                         line=None if fmt is None else fmt.data_line,
                         hint="pass --delimiter or --columns")
    src = resolve_column(cols[0], fmt, names, num_columns, path, "source")
    dst = resolve_column(cols[1], fmt, names, num_columns, path, "target")
    weight = None
    if options.weight_col is not None:
        weight = resolve_column(options.weight_col, fmt, names, num_columns, path, "weight")
    if src == dst or weight in (src, dst):
        raise OptionError("source, target and weight must be different columns",
                          hint="check --columns and --weight-col")
    return src, dst, weight


def _iter_text(path: str, kind: FileKind, options: EdgeReadOptions, mode: IdMode,
               stats: ReadStats | None) -> Iterator[EdgeChunk]:
    sample = read_sample(path, kind.compression)
    if not sample.strip():
        raise InputError("no edges found (empty input)", path=path, hint="the file is empty")
    fmt = detect_text_format(path, sample, delimiter=options.delimiter, comment=options.comment,
                             header=options.header, header_required=_columns_need_header(options))
    src_i, dst_i, w_i = _resolve_edge_columns(options, fmt.names, fmt.num_columns, path, fmt)
    if stats is not None:
        stats.note(path, "header", fmt.header_note(), fmt.data_line - 1 if fmt.header else None)
    log.info("%s: delimiter=%r comment=%r header=%s (%s) columns=%d", path, fmt.delimiter,
             fmt.comment, fmt.header, fmt.header_reason or fmt.header_source, fmt.num_columns)

    def specs() -> list[ColumnSpec]:
        k = mode.id_kind
        out = [ColumnSpec(src_i, k, "source id"), ColumnSpec(dst_i, k, "target id")]
        if w_i is not None:
            out.append(ColumnSpec(w_i, "float", "weight"))
        return out

    for block in iter_text_blocks(path, kind.compression, fmt, options.block_bytes):
        table = parse_id_block(block, fmt, specs, path, mode, options.on_bad_line, stats)
        if table.num_rows == 0:
            continue
        src, dst = mode.ids(table.column(f"f{src_i}")), mode.ids(table.column(f"f{dst_i}"))
        weight = None
        if w_i is not None:
            weight = float32_from_arrow(table.column(f"f{w_i}"))
            _check_weights(weight, path, lambda row: line_of_row(block, fmt, row))
        yield EdgeChunk(src, dst, weight, path, block.first_line, block.bytes_done)


def _check_weights(weight: np.ndarray, path: str, line_of) -> None:
    ok = np.isfinite(weight)
    if not ok.all():
        row = int(np.argmin(ok))
        raise InputError(f"weight {weight[row]} is not finite", path=path, line=line_of(row),
                         hint="weights must be finite numbers")


# --------------------------------------------------------------------------------------- parquet

def _iter_parquet(path: str, options: EdgeReadOptions, mode: IdMode) -> Iterator[EdgeChunk]:
    pf = open_parquet(path)
    names = pf.schema_arrow.names
    src_i, dst_i, w_i = _resolve_edge_columns(options, names, len(names), path)
    fields = [pf.schema_arrow.field(i) for i in (src_i, dst_i)]
    for f in fields:
        if not (pa.types.is_integer(f.type) or pa.types.is_string(f.type)
                or pa.types.is_large_string(f.type)):
            raise InputError(f"id column {f.name!r} has type {f.type}, expected integer or string",
                             path=path, hint="store node ids as int64 or string")
    if w_i is not None:
        wt = pf.schema_arrow.field(w_i).type
        if not (pa.types.is_integer(wt) or pa.types.is_floating(wt)):
            raise InputError(f"weight column {names[w_i]!r} has type {wt}, expected a number",
                             path=path)
    is_string = any(not pa.types.is_integer(f.type) for f in fields)
    if is_string and mode.auto and not mode.strings:
        if mode.emitted_int:
            raise NonIntegerIds(path, 1)
        mode.strings = True
    cols = [names[src_i], names[dst_i]] + ([names[w_i]] if w_i is not None else [])
    total_rows = max(pf.metadata.num_rows, 1)
    size = os.path.getsize(path)
    row = 0
    batch_rows = max(1, options.block_bytes // 16)
    try:
        for batch in pf.iter_batches(batch_size=batch_rows, columns=cols):
            for k, name in enumerate(cols):
                col = batch.column(k)
                if col.null_count:
                    bad = row + int(np.argmax(col.is_null().to_numpy(zero_copy_only=False)))
                    raise InputError(f"column {name!r} is null", path=path, line=bad + 1,
                                     hint="line numbers are 1-based row numbers for parquet")
            src = _parquet_ids(batch.column(0), mode, path, row, names[src_i])
            dst = _parquet_ids(batch.column(1), mode, path, row, names[dst_i])
            weight = None
            if w_i is not None:
                weight = float32_from_arrow(batch.column(2))
                _check_weights(weight, path, lambda r, base=row: base + r + 1)
            row += batch.num_rows
            yield EdgeChunk(src, dst, weight, path, row - batch.num_rows + 1,
                            int(size * row / total_rows))
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"cannot read parquet file: {e}", path=path,
                         hint="the file looks truncated or corrupt") from None


def _parquet_ids(col: pa.Array, mode: IdMode, path: str, row0: int, name: str) -> IdColumn:
    if mode.strings:
        return arrow_ids(col, True)
    if pa.types.is_integer(col.type):
        if pa.types.is_uint64(col.type) and len(col) and col.to_numpy().max() > 2**63 - 1:
            raise InputError(f"column {name!r} holds ids above 2^63-1", path=path,
                             hint="use --id-type string")
        return int_ids_from_arrow(col)
    try:   # string column under id_type='int'
        return int_ids_from_arrow(col.cast(pa.int64()))
    except pa.ArrowInvalid:
        values = col.to_pylist()
        for k, v in enumerate(values):
            try:
                int(v)
            except ValueError:
                raise InputError(f"{name} {v!r} is not an integer node id", path=path,
                                 line=row0 + k + 1, hint="use --id-type string") from None
        raise


# ------------------------------------------------------------------------------------------- npy

_NPY_HINT = "save edges with numpy.save as an (E, 2) integer array"


def _open_npy(path: str) -> NpyArray:
    return open_npy(path, _NPY_HINT)


def npy_layout(path: str, options: EdgeReadOptions) -> tuple[NpyArray, bool]:
    """(the (E, k) edge table of a .npy, whether the file holds its transpose). Only the header is
    read. (E, 2): edges by row. (2, E) with E != 2: PyG's edge_index, transposed. (E, k > 2):
    needs --columns. (2, 2): ambiguous, refused. Raises InputError with the fix."""
    arr = _open_npy(path)
    shape = arr.shape
    if len(shape) != 2 or (shape[1] < 2 and shape[0] != 2):
        raise InputError(f".npy edge array has shape {shape}, expected (E, 2) or (2, E)", path=path,
                         hint="stack sources and targets as columns: np.stack([src, dst], 1)")
    if arr.dtype.kind not in "iu":
        raise InputError(f".npy edge array has dtype {arr.dtype}, expected an integer type",
                         path=path, hint="cast with arr.astype(np.int64)")
    for c in list(options.columns or ()) + [options.weight_col]:
        if isinstance(c, str) and not c.strip().isdigit():
            raise InputError(f"column {c!r}: .npy columns have no names", path=path,
                             hint="give 0-based positions in --columns/--weight-col")
    named = options.columns is not None
    if shape == (2, 2) and not named:
        raise InputError(".npy edge array has shape (2, 2): 2 edges as rows or 2 edges as columns "
                         "(PyG edge_index)?", path=path,
                         hint="pass --columns 0,1 to read rows as edges, or save arr.T for columns")
    transposed = shape[0] == 2 and shape[1] != 2
    table = arr.transposed() if transposed else arr
    k = table.shape[1]
    if k > 2 and not named:
        raise InputError(f".npy edge array has shape {shape}: {k} columns, which two are the "
                         "edges?", path=path,
                         hint="pass --columns SRC,DST (0-based; --weight-col W for weights), or "
                              "save a (E, 2) array")
    return table, transposed


def _iter_npy(path: str, options: EdgeReadOptions, mode: IdMode,
              stats: ReadStats | None) -> Iterator[EdgeChunk]:
    table, transposed = npy_layout(path, options)
    num_edges, num_cols = table.shape
    src_i, dst_i, w_i = _resolve_edge_columns(options, None, num_cols, path)
    if transposed:
        log.info("%s: .npy of shape (2, %d) read as (2, E), transposed", path, num_edges)
        if stats is not None:
            stats.note(path, "layout", f"shape (2, {num_edges}): read as (2, E), transposed "
                       "(row 0 = sources, row 1 = targets)")
    item = table.dtype.itemsize
    cols = [src_i, dst_i] + ([w_i] if w_i is not None else [])
    # bounded plain reads, never the memory map (npy_blocks.py): a block is block_bytes of the
    # columns actually read
    per_row = item * (len(cols) if table.fortran_order else num_cols)
    step = max(1, options.block_bytes // per_row)
    payload = num_edges * num_cols * item
    with open(path, "rb") as fh:
        for start in range(0, num_edges, step):
            count = min(step, num_edges - start)
            block = read_columns(fh, table, start, count, cols)
            if table.dtype == np.uint64 and any(len(b) and b.max() > 2**63 - 1 for b in block[:2]):
                raise InputError("ids above 2^63-1 in a uint64 array", path=path, line=start + 1)
            src = block[0].astype(np.int64)
            dst = block[1].astype(np.int64)
            if mode.strings:
                src, dst = ints_to_string_column(src), ints_to_string_column(dst)
            weight = None if w_i is None else block[2].astype(np.float32)
            done = table.data_offset + payload * (start + count) // max(num_edges, 1)
            yield EdgeChunk(src, dst, weight, path, start + 1, done)
