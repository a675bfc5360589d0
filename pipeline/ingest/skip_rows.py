"""Vectorised `--on-bad-line skip` for blocks that arrow rejects: rows with the wrong column count
are dropped by arrow's invalid_row_handler, id/number columns are parsed as strings and validated
with arrow regex kernels, bad rows are filtered out and the rest cast. No per-line Python work, so
dirty files with many bad lines still parse at arrow speed.

Used once the skip examples (exact file:line) are collected; until then, and whenever this path
cannot decide (e.g. an int64 overflow), text_blocks falls back to the exact Python scan.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from gstore.pipeline.ingest.chunks import ReadStats
from gstore.pipeline.ingest.text_format import TextFormat

# must accept exactly what the reference scan in text_blocks accepts
INT_PATTERN = r"^[ \t]*-?[0-9]+[ \t]*$"
FLOAT_PATTERN = (r"^[ \t]*[-+]?((\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[nN][aA][nN]|[iI][nN][fF]"
                 r"([iI][nN][iI][tT][yY])?)[ \t]*$")
_TARGET = {"int": pa.int64(), "float": pa.float32(), "str": pa.string(), "text": pa.string()}


def has_hex_prefix(data: bytes | memoryview) -> bool:
    """True when the block holds '0x' or '0X': arrow's int64 parse reads '0x10' as 16, so such a
    block's int columns must be validated as text first."""
    if isinstance(data, memoryview):   # views start at offset 0 of their bytearray (memchr)
        return data.obj.find(b"0x", 0, data.nbytes) >= 0 or data.obj.find(b"0X", 0, data.nbytes) >= 0
    return b"0x" in data or b"0X" in data


def _read(data: bytes | memoryview, fmt: TextFormat, specs: list, types: list[pa.DataType],
          on_invalid) -> pa.Table:
    names = [f"f{i}" for i in range(fmt.num_columns)]
    return pcsv.read_csv(
        pa.BufferReader(pa.py_buffer(data)),
        read_options=pcsv.ReadOptions(column_names=names, use_threads=True, block_size=1 << 20),
        parse_options=pcsv.ParseOptions(delimiter=fmt.delimiter, quote_char='"',
                                        ignore_empty_lines=True, invalid_row_handler=on_invalid),
        convert_options=pcsv.ConvertOptions(
            include_columns=[names[s.index] for s in specs],
            column_types={names[s.index]: t for s, t in zip(specs, types)},
            null_values=[], strings_can_be_null=False, quoted_strings_can_be_null=False,
            check_utf8=True))


def parse_block_skipping(data: bytes | memoryview, fmt: TextFormat, specs: list,
                         stats: ReadStats | None) -> pa.Table | None:
    """Parse prepared block text (comments stripped, blanks collapsed), dropping bad rows and
    counting them in stats. Returns None when the exact path must decide instead."""
    dropped = [0]

    def on_invalid(row: pcsv.InvalidRow) -> str:
        dropped[0] += 1
        return "skip"

    # 1. only wrong column counts (the usual damage): typed parse at full speed (not when an int
    # column may hold a hex literal, which the typed parse would accept)
    try:
        if any(s.kind == "int" for s in specs) and has_hex_prefix(data):
            raise ValueError("hex literal: validate as text")
        table = _read(data, fmt, specs, [_TARGET[s.kind] for s in specs], on_invalid)
        ok = np.ones(table.num_rows, dtype=bool)
        for spec, col in zip(specs, table.columns):
            if spec.kind == "str":
                ok &= pc.greater(pc.binary_length(col), 0).to_numpy(zero_copy_only=False)
        if not ok.all():
            table = table.filter(pa.array(ok))
        if stats is not None:
            stats.skipped_bad_lines += dropped[0] + int((~ok).sum())
        return table
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError):
        dropped[0] = 0
    # 2. unparsable values: read as strings, validate with regex kernels, filter, cast
    try:
        table = _read(data, fmt, specs, [pa.string()] * len(specs), on_invalid)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError):
        return None    # e.g. invalid UTF-8: the exact path names the line
    ok = np.ones(table.num_rows, dtype=bool)
    for spec, col in zip(specs, table.columns):
        if spec.kind == "int":
            ok &= pc.match_substring_regex(col, INT_PATTERN).to_numpy(zero_copy_only=False)
        elif spec.kind == "float":
            ok &= pc.match_substring_regex(col, FLOAT_PATTERN).to_numpy(zero_copy_only=False)
        elif spec.kind == "str":
            ok &= pc.greater(pc.binary_length(col), 0).to_numpy(zero_copy_only=False)
    if not ok.all():
        table = table.filter(pa.array(ok))
    try:
        cols = [col if spec.kind in ("str", "text") else
                pc.cast(pc.utf8_trim_whitespace(col), _TARGET[spec.kind])
                for spec, col in zip(specs, table.columns)]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None    # e.g. an id above 2^63-1
    if stats is not None:
        stats.skipped_bad_lines += dropped[0] + int((~ok).sum())
    return pa.table(dict(zip(table.column_names, cols)))
