"""Node tables (`--nodes`): an id column plus optional `label` and `split` columns, from CSV/TSV/
blank-separated text (compressed or not) or parquet, streamed as NodeChunks.

Label representation (masked): `labels` is an object array of raw label strings with None where
missing (text files, parquet string columns) or an int64 array (parquet integer columns);
`label_missing` (bool, True = no label) is always given alongside. Splits are normalised to
'train' | 'val' | 'test' | '' ('' = no split).

Feature files live in feature_files.py and are re-exported here (FeatureChunk, FeatureInfo,
feature_info, iter_feature_chunks, check_finite).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gstore.errors import InputError, OptionError
from gstore.pipeline.ingest.arrow_columns import open_parquet
from gstore.pipeline.ingest.chunks import IdColumn, IdType, InputNote
from gstore.pipeline.ingest.feature_files import (FeatureChunk, FeatureInfo, check_finite,
                                                  feature_info, iter_feature_chunks)
from gstore.pipeline.ingest.id_typing import IdMode, arrow_ids, parse_id_block
from gstore.pipeline.ingest.text_blocks import ColumnSpec, iter_text_blocks, line_of_row
from gstore.pipeline.ingest.text_format import (detect_text_format, find_id_column, read_sample,
                                                resolve_column, sniff_kind)

__all__ = ["NodeChunk", "iter_node_chunks", "FeatureChunk", "FeatureInfo", "feature_info",
           "iter_feature_chunks", "check_finite", "find_id_column"]

_SPLIT_ALIASES = {"": "", "train": "train", "training": "train", "val": "val", "valid": "val",
                  "validation": "val", "dev": "val", "test": "test", "testing": "test"}


@dataclass
class NodeChunk:
    """A block of node-table rows.

    ids: int64 (n,) or StringColumn. labels: object (n,) raw strings with None where missing, or
    int64 (n,) (parquet integer labels); None without a label column. label_missing: bool (n,),
    True where the row has no label (None iff labels is None). splits: object (n,) of 'train' |
    'val' | 'test' | '' or None without a split column. first_line: 1-based line (row + 1 for
    parquet) of the chunk's first row.
    """

    ids: IdColumn
    labels: np.ndarray | None
    label_missing: np.ndarray | None
    splits: np.ndarray | None
    path: str
    first_line: int

    def __len__(self) -> int:
        return len(self.ids)


def _label_split_columns(names: list[str] | None, num_columns: int, id_idx: int,
                         label_col: str | int | None, split_col: str | int | None, path: str,
                         fmt=None) -> tuple[int | None, int | None]:
    lowered = [n.lower() for n in names] if names is not None else None

    def pick(wanted: str | int | None, default_name: str, default_pos: int) -> int | None:
        if wanted is not None:
            return resolve_column(wanted, fmt, names, num_columns, path, default_name)
        if lowered is not None:
            return lowered.index(default_name) if default_name in lowered else None
        # headerless: id, label, split by position
        return default_pos if default_pos < num_columns and default_pos != id_idx else None

    label = pick(label_col, "label", 1)
    split = pick(split_col, "split", 2)
    used = [c for c in (id_idx, label, split) if c is not None]
    if len(set(used)) != len(used):
        raise OptionError("id, label and split must be different columns", path=path)
    return label, split


def iter_node_chunks(path: str | Path, id_type: IdType, id_col: str | int | None = None, *,
                     label_col: str | int | None = None, split_col: str | int | None = None,
                     block_bytes: int = 64 << 20) -> Iterator[NodeChunk]:
    """Stream a node table. Columns: the id column (`id_col`, else a header named id/node/...,
    else column 0), `label` and `split` by header name (headerless: positions 1 and 2).

    Raises InputError naming file and line for bad ids, unknown split values, missing files or
    columns, and empty tables; NonIntegerIds in id_type='auto' after integer chunks were emitted.
    """
    path = str(path)
    kind = sniff_kind(path)
    if kind.container == "npy":
        raise InputError("a node table must be CSV/TSV or parquet, not .npy", path=path,
                         hint="write an id column plus optional label/split columns")
    chunks = (_iter_parquet_nodes(path, id_type, id_col, label_col, split_col, block_bytes)
              if kind.container == "parquet" else
              _iter_text_nodes(path, kind.compression, id_type, id_col, label_col, split_col,
                               block_bytes))
    rows = 0
    for chunk in chunks:
        if len(chunk):
            rows += len(chunk)
            yield chunk
    if rows == 0:
        raise InputError("node table has no rows", path=path, hint="the file is empty")


def table_header_note(path: str | Path, node_table: bool) -> InputNote | None:
    """The header decision of a --nodes/--labels (node_table) or feature text table, as its
    reader makes it (parquet/npy: None), for the summary and the manifest."""
    path = str(path)
    kind = sniff_kind(path)
    if kind.container != "text":
        return None
    sample = read_sample(path, kind.compression)
    if not sample.strip():
        return None
    fmt = detect_text_format(path, sample, min_columns=1 if node_table else 2)
    return InputNote(path, "header", fmt.header_note(), fmt.data_line - 1 if fmt.header else None)


def _iter_text_nodes(path: str, compression: str | None, id_type: IdType,
                     id_col: str | int | None, label_col: str | int | None,
                     split_col: str | int | None, block_bytes: int) -> Iterator[NodeChunk]:
    sample = read_sample(path, compression)
    if not sample.strip():
        raise InputError("node table has no rows", path=path, hint="the file is empty")
    named = [c for c in (id_col, label_col, split_col)
             if isinstance(c, str) and not c.strip().isdigit()]
    fmt = detect_text_format(path, sample, header_required=bool(named), min_columns=1)
    id_idx = resolve_column(find_id_column(fmt.names, id_col), fmt, fmt.names, fmt.num_columns,
                            path, "id")
    label_idx, split_idx = _label_split_columns(fmt.names, fmt.num_columns, id_idx, label_col,
                                                split_col, path, fmt)
    mode = IdMode.for_type(id_type)

    def specs() -> list[ColumnSpec]:
        out = [ColumnSpec(id_idx, mode.id_kind, "node id")]
        out += [ColumnSpec(i, "text", w) for i, w in ((label_idx, "label"), (split_idx, "split"))
                if i is not None]
        return out

    for block in iter_text_blocks(path, compression, fmt, block_bytes):
        table = parse_id_block(block, fmt, specs, path, mode)
        if table.num_rows == 0:
            continue
        id_arrow = table.column(f"f{id_idx}")
        ids = mode.ids(id_arrow)
        labels = missing = splits = None
        if label_idx is not None:
            labels, missing = _text_labels(table.column(f"f{label_idx}"))
        if split_idx is not None:
            splits = _normalise_splits(table.column(f"f{split_idx}"), path,
                                       lambda row, b=block: line_of_row(b, fmt, row))
        yield NodeChunk(ids, labels, missing, splits, path, block.first_line)


def _text_labels(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    trimmed = pc.utf8_trim_whitespace(col)
    missing = pc.equal(pc.binary_length(trimmed), 0).to_numpy(zero_copy_only=False)
    values = trimmed.to_numpy(zero_copy_only=False).astype(object)
    values[missing] = None
    return values, missing


def _normalise_splits(col: pa.ChunkedArray | pa.Array, path: str, line_of) -> np.ndarray:
    if col.null_count:
        col = pc.fill_null(col, "")
    norm = pc.utf8_lower(pc.utf8_trim_whitespace(col))
    known = pa.array(list(_SPLIT_ALIASES))
    ok = pc.is_in(norm, value_set=known).to_numpy(zero_copy_only=False)
    if not ok.all():
        row = int(np.argmin(ok))
        raise InputError(f"unknown split {norm[row].as_py()!r}", path=path, line=line_of(row),
                         hint="split values must be train, val, test or empty")
    values = norm.to_numpy(zero_copy_only=False).astype(object)
    for alias, canon in _SPLIT_ALIASES.items():
        if alias != canon:
            values[values == alias] = canon
    return values


def _iter_parquet_nodes(path: str, id_type: IdType, id_col: str | int | None,
                        label_col: str | int | None, split_col: str | int | None,
                        block_bytes: int) -> Iterator[NodeChunk]:
    pf = open_parquet(path)
    schema = pf.schema_arrow
    names = schema.names
    id_idx = resolve_column(find_id_column(names, id_col), None, names, len(names), path, "id")
    label_idx, split_idx = _label_split_columns(names, len(names), id_idx, label_col, split_col,
                                                path)
    id_t = schema.field(id_idx).type
    if not (pa.types.is_integer(id_t) or pa.types.is_string(id_t)
            or pa.types.is_large_string(id_t)):
        raise InputError(f"id column {names[id_idx]!r} has type {id_t}, expected integer or "
                         "string", path=path)
    strings = id_type == "string" or (id_type == "auto" and not pa.types.is_integer(id_t))
    if id_type == "int" and not pa.types.is_integer(id_t):
        raise InputError(f"id column {names[id_idx]!r} holds strings but ids are integers",
                         path=path, hint="use --id-type string")
    cols = [names[i] for i in (id_idx, label_idx, split_idx) if i is not None]
    row = 0
    for batch in pf.iter_batches(batch_size=max(1, block_bytes // 32), columns=cols):
        id_arr = batch.column(0)
        if id_arr.null_count:
            bad = int(np.argmax(id_arr.is_null().to_numpy(zero_copy_only=False)))
            raise InputError("node id is null", path=path, line=row + bad + 1,
                             hint="line numbers are 1-based row numbers for parquet")
        ids = arrow_ids(id_arr, strings)
        k = 1
        labels = missing = splits = None
        if label_idx is not None:
            lab = batch.column(k)
            k += 1
            missing = lab.is_null().to_numpy(zero_copy_only=False)
            if pa.types.is_integer(lab.type):
                labels = pc.fill_null(lab, 0).cast(pa.int64()).to_numpy(zero_copy_only=False)
            else:
                labels, empty = _text_labels(pc.fill_null(lab.cast(pa.string()), ""))
                missing = missing | empty
        if split_idx is not None:
            splits = _normalise_splits(batch.column(k).cast(pa.string()), path,
                                       lambda r, base=row: base + r + 1)
        yield NodeChunk(ids, labels, missing, splits, path, row + 1)
        row += batch.num_rows

